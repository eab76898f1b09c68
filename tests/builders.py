"""Small builders for FHIR R4 test resources and CDS Hooks requests."""
from __future__ import annotations

from typing import Any

import copy
import uuid
from datetime import date, timedelta

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
TODAY = date.today()
PID = "pt-1"


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def patient(pid: str = PID, birth_date: str = "1980-05-01", gender: str = "female") -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth_date, "gender": gender}


def dosage(value: float, unit: str = "mg", code: str | None = "mg", frequency: float = 1, period: float = 1,
           period_unit: str = "d", system: str | None = UCUM) -> dict:
    q = {"value": value, "unit": unit}
    if code is not None:
        q["code"] = code
    if system is not None:
        q["system"] = system
    return {"timing": {"repeat": {"frequency": frequency, "period": period, "periodUnit": period_unit}},
            "doseAndRate": [{"doseQuantity": q}]}


def med_request(rxnorm: str = "197388", display: str = "azathioprine 50 MG Oral Tablet", *, id: str = "mr-aza",
                daily_mg: float | None = 50, dosages: list[dict] | None = None, status: str = "draft",
                authored: str | None = None, pid: str = PID, reason: list[dict] | None = None) -> dict:
    r: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": authored or TODAY.isoformat(),
    }
    if dosages is not None:
        r["dosageInstruction"] = dosages
    elif daily_mg is not None:
        r["dosageInstruction"] = [dosage(daily_mg)]
    if reason:
        r["reasonCode"] = reason
    return r


def weight(kg: float, *, unit: str = "kg", code: str | None = "kg", when: str | None = None, id: str = "wt-1") -> dict:
    q = {"value": kg, "unit": unit, "system": UCUM}
    if code is not None:
        q["code"] = code
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": when or days_ago(3), "valueQuantity": q}


def lab(loinc: str, value: float, unit: str, *, when: str | None = None, id: str | None = None) -> dict:
    return {"resourceType": "Observation", "id": id or f"lab-{uuid.uuid4().hex[:8]}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": loinc}]}, "subject": {"reference": f"Patient/{PID}"},
            "effectiveDateTime": when or days_ago(10), "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


HGNC = {"TPMT": "HGNC:12014", "NUDT15": "HGNC:23063"}


def genotype_ig(gene: str, diplotype: str, *, id: str | None = None, when: str = "2025-01-10") -> dict:
    """Genomics Reporting IG style: LOINC 84413-4 + gene-studied component, value as text."""
    return {"resourceType": "Observation", "id": id or f"geno-{gene.lower()}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "84413-4", "display": "Genotype display name"}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"text": f"{gene} {diplotype}"},
            "component": [{"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
                           "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org", "code": HGNC[gene], "display": gene}]}}]}


def genotype_core(gene: str, diplotype: str, *, id: str | None = None) -> dict:
    """FHIR R4 core example style: SNOMED 363779003 + geneticsGene extension + valueString."""
    return {"resourceType": "Observation", "id": id or f"core-{gene.lower()}", "status": "final",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene",
                           "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org",
                                                                "code": HGNC[gene].split(":")[1], "display": gene}]}}],
            "code": {"coding": [{"system": SNOMED, "code": "363779003", "display": "Genotype determination"}]},
            "subject": {"reference": f"Patient/{PID}"}, "issued": "2024-04-03T15:30:10+01:00", "valueString": diplotype}


PHENOTYPE_LA = {"Normal": "LA25391-6", "Intermediate": "LA10317-8", "Poor": "LA9657-3"}


def phenotype_tpmt(kind: str, *, id: str = "pheno-tpmt") -> dict:
    """pgx-cds-data style: LOINC 79713-4 with a LOINC answer."""
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "79713-4"}]}, "subject": {"reference": f"Patient/{PID}"},
            "effectiveDateTime": "2024-06-01",
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": PHENOTYPE_LA[kind], "display": f"{kind} metabolizer"}]}}


def normal_labs(days: int = 3) -> list[dict]:
    """A normal CBC and liver panel ``days`` ago."""
    when = days_ago(days)
    return [lab("6690-2", 6.0, "10*9/L", when=when, id="wbc"), lab("751-8", 3.5, "10*9/L", when=when, id="anc"),
            lab("731-0", 1.5, "10*9/L", when=when, id="lym"), lab("777-3", 250, "10*9/L", when=when, id="plt"),
            lab("718-7", 13.5, "g/dL", when=when, id="hb"), lab("787-2", 90, "fL", when=when, id="mcv"),
            lab("1742-6", 25, "U/L", when=when, id="alt"), lab("1920-8", 22, "U/L", when=when, id="ast"),
            lab("62238-1", 90, "mL/min/{1.73_m2}", when=when, id="egfr")]


def normal_pgx() -> list[dict]:
    return [genotype_ig("TPMT", "*1/*1"), genotype_ig("NUDT15", "*1/*1")]


def prefetch(*, pgx: list[dict] | None = None, weights: list[dict] | None = None, meds: list[dict] | None = None,
             labs: list[dict] | None = None, conditions: list[dict] | None = None, pt: dict | None = None,
             allergies: list[dict] | None = None, status: list[dict] | None = None,
             immunizations: list[dict] | None = None, past_meds: list[dict] | None = None,
             heights: list[dict] | None = None, lab_results: list[dict] | None = None) -> dict:
    return {
        "patient": pt or patient(),
        "medications": bundle(*(meds or [])),
        "weight": bundle(*(weights if weights is not None else [weight(70)])),
        "height": bundle(*(heights or [])),
        "pgx": bundle(*(pgx if pgx is not None else normal_pgx())),
        "labs": bundle(*(labs if labs is not None else normal_labs())),
        "lab_results": bundle(*(lab_results or [])),  # results read by name (6-TGN, 6-MMP): category=laboratory
        "pregnancy": bundle(*(status or [])),
        "conditions": bundle(*(conditions or [])),
        "allergies": bundle(*(allergies or [])),
        "immunizations": bundle(*(immunizations or [])),
        "past_medications": bundle(*(past_meds or [])),
    }


def hook_request(hook: str = "order-sign", *, orders: list[dict] | None = None, pre: dict | None = None,
                 selections: list[str] | None = None, fhir_server: str | None = None, token: str | None = None) -> dict:
    orders = orders if orders is not None else [med_request()]
    ctx: dict[str, Any] = {"userId": "Practitioner/dr-1", "patientId": PID}
    draft = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": copy.deepcopy(o)} for o in orders]}
    if hook == "medication-prescribe":
        ctx["medications"] = draft
    else:
        ctx["draftOrders"] = draft
    if hook == "order-select":
        ctx["selections"] = selections if selections is not None else [f"MedicationRequest/{o['id']}" for o in orders[:1]]
    req = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": ctx}
    if pre is not None:
        req["prefetch"] = pre
    if fhir_server:
        req["fhirServer"] = fhir_server
    if token:
        req["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "cds-service"}
    return req


SERVICE = {"order-sign": "thiopurine-order-sign", "order-select": "thiopurine-order-select",
           "medication-prescribe": "thiopurine-medication-prescribe"}
