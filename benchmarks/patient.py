"""A realistic thiopurine patient for the benchmarks, as an EHR would send it.

Shapes and codes follow ``tests/builders.py`` (LOINC codes from
``fhir_mappers/codes.toml``), but the resources carry what real EHR resources
carry besides (meta, identifiers, categories, reference ranges,
interpretations, performers), so that body sizes are realistic.

``realistic()`` is scenario (a): a 46-year-old woman with Crohn's disease,
TPMT *1/*3A (intermediate metabolizer), NUDT15 *1/*1, allopurinol among her
10 active MedicationRequests, 5 active Conditions, a penicillin allergy and
62 Observations (3 weights, 3 pharmacogenomic results, 1 pregnancy status,
55 CBC / liver / kidney results). The draft order is azathioprine 150 mg/day, so the service
answers with real cards. ``large()`` is scenario (c): the same patient with
about 500 Observations (years of monitoring). ``other_order(realistic())`` is the
other-order scenario (o): the same patient and the same full prefetch, but the draft is
amlodipine 5 mg once daily, a drug that no rule concerns (no thiopurine, no interacting
medicine, no live vaccine): the order-sign call an EHR sends for every other order.

Self-contained (standard library only) so that the benchmark does not break
when the test builders change.
"""
from __future__ import annotations

import copy
import json
import random
import uuid
from typing import Any
from datetime import date, timedelta

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
HGNC = {"TPMT": "HGNC:12014", "NUDT15": "HGNC:23063"}
PID = "bench-pt-1"
SERVICE = "thiopurine-order-sign"

# analyte: (LOINC, display, unit, typical value, spread, low, high)
CBC = [
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*9/L", 6.1, 1.2, 4.0, 11.0),
    ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*9/L", 3.9, 0.9, 2.0, 7.5),
    ("731-0", "Lymphocytes [#/volume] in Blood by Automated count", "10*9/L", 1.6, 0.4, 1.0, 4.0),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*9/L", 265, 40, 150, 400),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", 128, 8, 120, 160),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 89, 3, 80, 100),
]
LIVER = [
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 24, 6, 7, 35),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 22, 5, 8, 33),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 78, 12, 30, 120),
    ("1975-2", "Bilirubin.total [Moles/volume] in Serum or Plasma", "umol/L", 9, 3, 3, 21),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/L", 41, 3, 35, 50),
]
RENAL = [
    ("2160-0", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", 72, 8, 45, 90),
    ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)",
     "mL/min/{1.73_m2}", 92, 6, 60, 200),
]

# 10 active MedicationRequests: (RxNorm, display, daily mg, tablets per day)
ACTIVE_MEDS = [
    ("519", "allopurinol 300 MG Oral Tablet", 300, 1),
    ("52582", "mesalamine 1200 MG Delayed Release Oral Tablet", 2400, 2),
    ("8640", "prednisone 10 MG Oral Tablet", 10, 1),
    ("4511", "folic acid 1 MG Oral Tablet", 1, 1),
    ("7646", "omeprazole 20 MG Delayed Release Oral Capsule", 20, 1),
    ("29046", "lisinopril 10 MG Oral Tablet", 10, 1),
    ("83367", "atorvastatin 20 MG Oral Tablet", 20, 1),
    ("6809", "metformin hydrochloride 500 MG Oral Tablet", 1000, 2),
    ("2418", "calcium carbonate 500 MG Oral Tablet", 1000, 2),
    ("161", "acetaminophen 500 MG Oral Tablet", 2000, 4),
]

CONDITIONS = [
    ("34000006", "Crohn's disease", "K50.90"),
    ("38341003", "Hypertensive disorder", "I10"),
    ("90560007", "Gout", "M10.9"),
    ("44054006", "Diabetes mellitus type 2", "E11.9"),
    ("312894000", "Osteopenia", "M85.80"),
]


class _Gen:
    def __init__(self, today: date, seed: int) -> None:
        self.today = today
        self.rng = random.Random(seed)
        self.n = 0

    def ago(self, days: int, hour: int = 8) -> str:
        d = self.today - timedelta(days=days)
        return f"{d.isoformat()}T{hour:02d}:{self.rng.randrange(60):02d}:00+01:00"

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:04d}"

    # ------------------------------------------------------------------ resources
    def patient(self) -> dict:
        return {
            "resourceType": "Patient", "id": PID,
            "meta": {"versionId": "7", "lastUpdated": self.ago(30)},
            "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                            "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345678"}],
            "active": True,
            "name": [{"use": "official", "family": "Example", "given": ["Alex", "Maria"]}],
            "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home"}],
            "gender": "female", "birthDate": f"{self.today.year - 46}-05-01",
            "address": [{"use": "home", "line": ["1 Example Street"], "city": "Springfield", "postalCode": "12345", "country": "US"}],
        }

    def _obs(self, loinc: str, display: str, when: str, category: str) -> dict:
        return {
            "resourceType": "Observation", "id": self.next_id("obs"),
            "meta": {"versionId": "1", "lastUpdated": when},
            "identifier": [{"system": "urn:oid:1.2.3.4.5.6", "value": uuid.UUID(int=self.rng.getrandbits(128)).hex}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PID}"},
            "effectiveDateTime": when, "issued": when.replace("T08", "T11"),
            "performer": [{"reference": "Organization/lab-1", "display": "Central Laboratory"}],
        }

    def lab(self, spec: tuple, days_ago: int) -> dict:
        loinc, display, unit, typical, spread, low, high = spec
        value = round(max(0.1, self.rng.gauss(typical, spread)), 1)
        obs = self._obs(loinc, display, self.ago(days_ago), "laboratory")
        obs["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        obs["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                              "code": "L" if value < low else "H" if value > high else "N"}]}]
        obs["referenceRange"] = [{"low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                                  "high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}]
        return obs

    def weight(self, kg: float, days_ago: int) -> dict:
        obs = self._obs("29463-7", "Body weight", self.ago(days_ago), "vital-signs")
        obs["valueQuantity"] = {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"}
        return obs

    def genotype(self, gene: str, diplotype: str) -> dict:
        obs = self._obs("84413-4", "Genotype display name", self.ago(400), "laboratory")
        obs["valueCodeableConcept"] = {"text": f"{gene} {diplotype}"}
        obs["component"] = [{"code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
                             "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org", "code": HGNC[gene], "display": gene}]}}]
        return obs

    def tpmt_phenotype(self) -> dict:
        obs = self._obs("79713-4", "TPMT gene product metabolic activity interpretation", self.ago(400), "laboratory")
        obs["valueCodeableConcept"] = {"coding": [{"system": LOINC, "code": "LA10317-8", "display": "Intermediate metabolizer"}]}
        return obs

    def pregnancy(self) -> dict:
        obs = self._obs("82810-3", "Pregnancy status", self.ago(20), "social-history")
        obs["valueCodeableConcept"] = {"coding": [{"system": LOINC, "code": "LA26683-5", "display": "Not pregnant"}]}
        return obs

    def med_request(self, rxnorm: str, display: str, daily_mg: float, per_day: int, *, id: str, status: str,
                    authored_days_ago: int) -> dict:
        per_dose = daily_mg / per_day
        return {
            "resourceType": "MedicationRequest", "id": id,
            "meta": {"versionId": "1", "lastUpdated": self.ago(authored_days_ago)},
            "identifier": [{"system": "urn:oid:1.2.3.4.5.7", "value": id}],
            "status": status, "intent": "order",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "outpatient"}]}],
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PID}"},
            "authoredOn": (self.today - timedelta(days=authored_days_ago)).isoformat(),
            "requester": {"reference": "Practitioner/dr-1", "display": "Dr. Example"},
            "dosageInstruction": [{
                "sequence": 1, "text": f"{per_dose:g} mg by mouth {per_day} times daily",
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
                "doseAndRate": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type", "code": "ordered"}]},
                                 "doseQuantity": {"value": per_dose, "unit": "mg", "system": UCUM, "code": "mg"}}],
            }],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 30 * per_day, "unit": "tablet"},
                                "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}},
        }

    def allergy(self, snomed: str, display: str, days_ago: int) -> dict:
        return {
            "resourceType": "AllergyIntolerance", "id": self.next_id("allergy"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
            "type": "allergy", "category": ["medication"], "criticality": "low",
            "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}], "text": display},
            "patient": {"reference": f"Patient/{PID}"},
            "recordedDate": (self.today - timedelta(days=days_ago)).isoformat(),
            "reaction": [{"manifestation": [{"coding": [{"system": SNOMED, "code": "271807003", "display": "Eruption of skin"}]}]}],
        }

    def condition(self, snomed: str, display: str, icd: str, onset_days: int) -> dict:
        return {
            "resourceType": "Condition", "id": self.next_id("cond"),
            "meta": {"versionId": "1", "lastUpdated": self.ago(onset_days)},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}, {"system": ICD10, "code": icd}], "text": display},
            "subject": {"reference": f"Patient/{PID}"},
            "onsetDateTime": (self.today - timedelta(days=onset_days)).isoformat(),
            "recordedDate": (self.today - timedelta(days=onset_days)).isoformat(),
        }


def searchset(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:bench:{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                      for r in resources]}


def patient_data(*, lab_rounds: int = 6, today: date | None = None, seed: int = 1) -> dict[str, list[dict] | dict]:
    """The record, by prefetch key. ``lab_rounds`` = how many CBC draws (liver half as often, kidney a third)."""
    g = _Gen(today or date.today(), seed)
    weights = [g.weight(kg, d) for kg, d in ((70.0, 14), (71.2, 120), (72.5, 300))]
    pgx = [g.genotype("TPMT", "*1/*3A"), g.genotype("NUDT15", "*1/*1"), g.tpmt_phenotype()]
    labs = []
    for i in range(lab_rounds):
        days = 7 + 30 * i
        labs += [g.lab(spec, days) for spec in CBC]
        if i % 2 == 0:
            labs += [g.lab(spec, days) for spec in LIVER]
        if i % 3 == 0:
            labs += [g.lab(spec, days) for spec in RENAL]
    meds = [g.med_request(rx, disp, mg, n, id=f"mr-active-{i}", status="active", authored_days_ago=60 + 10 * i)
            for i, (rx, disp, mg, n) in enumerate(ACTIVE_MEDS)]
    conditions = [g.condition(s, d, icd, 400 + 100 * i) for i, (s, d, icd) in enumerate(CONDITIONS)]
    allergies = [g.allergy("764146007", "Penicillin", 3000)]
    draft = g.med_request("197388", "azathioprine 50 MG Oral Tablet", 150, 3, id="mr-aza-draft", status="draft",
                          authored_days_ago=0)
    return {"patient": g.patient(), "weight": weights, "pgx": pgx, "labs": labs, "pregnancy": [g.pregnancy()],
            "medications": meds, "conditions": conditions, "allergies": allergies, "draft": draft}


# the other order: a common new prescription that no knowledge table names (checked by
# tests/test_bench_report.py against rules/knowledge/ and fhir_mappers/codes.toml)
OTHER_ORDER = ("197361", "amlodipine 5 MG Oral Tablet", 5, 1)


def other_order(data: dict, *, today: date | None = None, seed: int = 2) -> dict:
    """``data`` with its draft order replaced by ``OTHER_ORDER`` (same record, same prefetch)."""
    g = _Gen(today or date.today(), seed)
    rx, display, mg, per_day = OTHER_ORDER
    draft = g.med_request(rx, display, mg, per_day, id="mr-other-draft", status="draft", authored_days_ago=0)
    return {**data, "draft": draft}


def observation_count(data: dict) -> int:
    return sum(len(data[k]) for k in ("weight", "pgx", "labs", "pregnancy"))


def realistic(**kw) -> dict:
    """≈ 60 Observations (62), 10 MedicationRequests, 5 Conditions."""
    return patient_data(lab_rounds=6, **kw)


def large(**kw) -> dict:
    """≈ 500 Observations (7 + 508 labs over about 4.5 years)."""
    return patient_data(lab_rounds=55, **kw)


GROUPS = ("medications", "weight", "pgx", "labs", "pregnancy", "conditions", "allergies")


def hook_request(data: dict, *, prefetch: bool = True, fhir_server: str | None = None, token: str | None = None,
                 keys: list[str] | None = None) -> dict:
    """An order-sign request for ``data``: full prefetch, or none (the service fetches from ``fhir_server``).

    ``keys``: the prefetch keys the service asks for (from its discovery document); a key this
    generator has no data group for is sent as an empty searchset, as an EHR with no such data would."""
    req: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": PID,
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": copy.deepcopy(data["draft"])}]}},
    }
    if prefetch:
        req["prefetch"] = {"patient": data["patient"], **{k: searchset(data[k]) for k in GROUPS}}
        for key in keys or ():
            req["prefetch"].setdefault(key, searchset([]))
    if fhir_server:
        req["fhirServer"] = fhir_server
    if token:
        req["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "cds-service"}
    return req


def transaction(data: dict) -> dict:
    """A FHIR transaction Bundle that stores the record (PUT, fixed ids) on a FHIR server."""
    resources = [data["patient"]] + [r for k in GROUPS for r in data[k]]
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


if __name__ == "__main__":  # pragma: no cover - a look at the sizes
    for name, d in (("realistic", realistic()), ("large", large())):
        body = json.dumps(hook_request(d))
        print(f"{name}: {observation_count(d)} Observations, {len(d['medications'])} MedicationRequests, "
              f"{len(d['conditions'])} Conditions, request body {len(body) / 1024:.0f} KiB")
