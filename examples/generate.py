"""Writes the example requests in this folder (synthetic patients, dated 2026-11-23).

    .venv/bin/python examples/generate.py
    .venv/bin/azathioprine-cds check --today 2026-11-23 examples/<name>.json
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests import builders as b  # noqa: E402

b.TODAY = date(2026, 11, 23)
AUTHORED = "2026-11-23"


def aza(mg, **kw):
    return b.med_request(daily_mg=mg, authored=AUTHORED, **kw)


def labs(**override):
    values = {"6690-2": 6.1, "751-8": 3.8, "731-0": 1.6, "777-3": 250, "787-2": 90, "1742-6": 22, "1920-8": 25, "62238-1": 95}
    values.update(override)
    units = {"787-2": "fL", "1742-6": "U/L", "1920-8": "U/L", "62238-1": "mL/min/{1.73_m2}"}
    return [b.lab(code, v, units.get(code, "10*9/L"), when="2026-11-20", id=f"lab-{code}") for code, v in values.items()]


RA = [{"resourceType": "Condition", "id": "ra", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "69896004", "display": "Rheumatoid arthritis"}]}, "subject": {"reference": "Patient/pt-1"}}]
PT = b.patient(birth_date="1975-04-12")
WT = [b.weight(72, when="2026-11-20")]


def pre(**kw):
    base = dict(pgx=b.normal_pgx(), weights=WT, labs=labs(), conditions=RA, pt=PT)
    base.update(kw)
    return b.prefetch(**base)


def active(rx, display, id, mg=None, authored="2026-01-10"):
    return b.med_request(rx, display, id=id, status="active", daily_mg=mg, authored=authored)


def condition(snomed, display, id="cond"):
    return {"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/pt-1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed, "display": display}]}}


def height(cm, when="2026-11-20"):
    return {"resourceType": "Observation", "id": "ht-1", "status": "final", "subject": {"reference": "Patient/pt-1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": cm, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}


LN = [condition("68815009", "Lupus nephritis", "ln")]
ALL = [condition("91857003", "Acute lymphoblastic leukemia", "all")]
TPMT_IM = [b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*1")]
TPMT_PM = [b.genotype_ig("TPMT", "*3A/*3A"), b.genotype_ig("NUDT15", "*1/*1")]
ALLO = active("519", "allopurinol 100 MG Oral Tablet", "allo", 300)
AZA_OLD = active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 150)
CHILD = b.patient(birth_date="2017-03-02")


def mp(mg):
    return b.med_request("197931", "mercaptopurine 50 MG Oral Tablet", id="mr-mp", daily_mg=mg, authored=AUTHORED)


EXAMPLES = {
    "normal-patient": ("RA, TPMT/NUDT15 normal, new start 50 mg/day, recent CBC: no cards",
                       b.hook_request(orders=[aza(50)], pre=pre())),
    "tpmt-poor-metabolizer": ("TPMT *3A/*3A", b.hook_request(orders=[aza(100)], pre=pre(pgx=[b.genotype_ig("TPMT", "*3A/*3A"), b.genotype_ig("NUDT15", "*1/*1")]))),
    "tpmt-intermediate-metabolizer": ("TPMT *1/*3A, 150 mg/day", b.hook_request(orders=[aza(150)], pre=pre(pgx=[b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*1")]))),
    "missing-pgx-test": ("no TPMT/NUDT15 result", b.hook_request(orders=[aza(50)], pre=pre(pgx=[]))),
    "dose-above-range": ("RA, 250 mg/day at 72 kg = 3.5 mg/kg/day", b.hook_request(orders=[aza(250)], pre=pre(meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 150)]))),
    "allopurinol-with-azathioprine": ("allopurinol ordered while azathioprine 150 mg/day is active",
                                      b.hook_request(orders=[b.med_request("519", "allopurinol 100 MG Oral Tablet", id="allo", daily_mg=100, authored=AUTHORED)],
                                                     pre=pre(meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 150)]))),
    "tpmt-intermediate-and-allopurinol": ("TPMT IM and allopurinol active: one combined dose",
                                          b.hook_request(orders=[aza(150)], pre=pre(pgx=[b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*1")],
                                                                                    meds=[active("519", "allopurinol 100 MG Oral Tablet", "allo", 100)]))),
    "warfarin-with-azathioprine": ("azathioprine ordered while warfarin is active",
                                   b.hook_request(orders=[aza(50)], pre=pre(meds=[active("855350", "Warfarin Sodium 5 MG Oral Tablet", "warf", 5)]))),
    "live-vaccine-on-azathioprine": ("Zostavax ordered while azathioprine is active", b.hook_request(
        orders=[{"resourceType": "MedicationRequest", "id": "zos", "status": "draft", "intent": "order", "subject": {"reference": "Patient/pt-1"},
                 "medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "121", "display": "zoster vaccine, live"}]}}],
        pre=pre(meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 100)]))),
    "severe-neutropenia": ("neutrophils 0.8 x10^9/L", b.hook_request(orders=[aza(100)], pre=pre(labs=labs(**{"751-8": 0.8}),
                                                                                                  meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 100)]))),
    "cbc-overdue": ("established therapy, last CBC 5 months ago", b.hook_request(orders=[aza(100)], pre=pre(
        labs=[b.lab("6690-2", 6.0, "10*9/L", when="2026-06-20", id="wbc-old"),
              b.lab("777-3", 240, "10*9/L", when="2026-06-20", id="plt-old")], meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 100)]))),
    "pregnant-patient": ("pregnancy status: pregnant", b.hook_request(orders=[aza(100)], pre=pre(
        meds=[active("197388", "azathioprine 50 MG Oral Tablet", "aza-old", 100)],
        status=[{"resourceType": "Observation", "id": "preg", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
                 "subject": {"reference": "Patient/pt-1"}, "effectiveDateTime": "2026-11-01",
                 "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006", "display": "Pregnant"}]}}]))),
    # the headline case: one dose on every card, a suggestion to accept
    "lupus-nephritis-tpmt-im-allopurinol": ("lupus nephritis, TPMT IM, on allopurinol, azathioprine 150 mg/day, 75 kg",
                                            b.hook_request(orders=[aza(150)], pre=pre(pgx=TPMT_IM, conditions=LN, weights=[b.weight(75, when="2026-11-20")],
                                                                                      meds=[ALLO]))),
    "combined-dose-below-tablet-step": ("TPMT IM + allopurinol at 50 kg: 7.5-16.7 mg/day, below one 25 mg tablet a day",
                                        b.hook_request(orders=[aza(100)], pre=pre(pgx=TPMT_IM, conditions=LN, weights=[b.weight(50, when="2026-11-20")],
                                                                                  meds=[ALLO]))),
    "febuxostat-new-order": ("febuxostat ordered while azathioprine is active: cancel the febuxostat order",
                             b.hook_request(orders=[b.med_request("73689", "febuxostat 40 MG Oral Tablet", id="febu", daily_mg=40, authored=AUTHORED)],
                                            pre=pre(meds=[AZA_OLD]))),
    "missing-weight-high-dose": ("no body weight, azathioprine 200 mg/day for RA: the dose may be too high",
                                 b.hook_request(orders=[aza(200)], pre=pre(weights=[], meds=[AZA_OLD]))),
    "oncology-mercaptopurine-poor-metabolizer": ("ALL maintenance, child 30 kg / 135 cm, TPMT poor metabolizer: CPIC malignancy dose",
                                                 b.hook_request(orders=[mp(75)], pre=pre(pgx=TPMT_PM, conditions=ALL, pt=CHILD,
                                                                                         weights=[b.weight(30, when="2026-11-20")], heights=[height(135)]))),
    "oncology-mercaptopurine-no-height": ("ALL maintenance, no height on record: body surface area unknown",
                                          b.hook_request(orders=[mp(100)], pre=pre(conditions=ALL, pt=CHILD, weights=[b.weight(30, when="2026-11-20")]))),
    "elderly-without-weight": ("age 78, no recent weight, 50 mg/day: two notes merged into one info card, none dropped",
                               b.hook_request(orders=[aza(50)], pre=pre(weights=[], pt=b.patient(birth_date="1948-02-01")))),
    "azathioprine-after-live-vaccine": ("azathioprine start 12 days after a varicella vaccine", b.hook_request(
        orders=[aza(50)], pre=pre(immunizations=[{"resourceType": "Immunization", "id": "var", "status": "completed", "patient": {"reference": "Patient/pt-1"},
                                                  "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "21", "display": "varicella"}]},
                                                  "occurrenceDateTime": "2026-11-11"}]))),
}


def main() -> None:
    for name, (note, request) in EXAMPLES.items():
        request["hookInstance"] = f"example-{name}"
        (HERE / f"{name}.json").write_text(json.dumps(request, indent=2) + "\n")
        print(f"{name}.json: {note}")


if __name__ == "__main__":
    main()
