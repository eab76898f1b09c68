"""Who the example patients are, for ``make demo`` and the SMART app's browser test: a (fictional)
name for each example's Patient and a readable text for each Condition, so that an EHR or the CDS
Hooks sandbox shows "Maria Okafor" instead of "Unknown" and a "Treating" choice that is not blank
(the sandbox shows ``Condition.code.text``). The example requests themselves (``examples/*.json``)
are not changed: the service reads neither names nor texts.

The headline patient also gets an earlier record (blood counts and liver tests over the past
months, older weights), so that the app's trend charts have a history to draw. Older results never
change a card: the rules read the newest result of each test.
"""
from __future__ import annotations

import copy
from typing import Any

# example name -> (given, family); every name is made up
PEOPLE: dict[str, tuple[str, str]] = {
    "normal-patient": ("Helen", "Baptiste"),
    "tpmt-poor-metabolizer": ("Grace", "Lindqvist"),
    "tpmt-intermediate-metabolizer": ("Amina", "Rahman"),
    "missing-pgx-test": ("Carla", "Mendes"),
    "dose-above-range": ("Ruth", "Abernathy"),
    "allopurinol-with-azathioprine": ("Joan", "Whitfield"),
    "tpmt-intermediate-and-allopurinol": ("Priya", "Nair"),
    "warfarin-with-azathioprine": ("Edith", "Kowalski"),
    "live-vaccine-on-azathioprine": ("Margaret", "Osei"),
    "severe-neutropenia": ("Lena", "Hoffmann"),
    "cbc-overdue": ("Sofia", "Castellano"),
    "pregnant-patient": ("Hannah", "Brooks"),
    "lupus-nephritis-tpmt-im-allopurinol": ("Maria", "Okafor"),
    "combined-dose-below-tablet-step": ("Yuki", "Tanaka"),
    "febuxostat-new-order": ("Irene", "Dubois"),
    "missing-weight-high-dose": ("Nadia", "Petrova"),
    "oncology-mercaptopurine-poor-metabolizer": ("Lily", "Adeyemi"),
    "oncology-mercaptopurine-no-height": ("Emma", "Santos"),
    "elderly-without-weight": ("Dorothy", "Fairbanks"),
    "azathioprine-after-live-vaccine": ("Clara", "Jensen"),
}

HEADLINE = "lupus-nephritis-tpmt-im-allopurinol"
# (date, LOINC, value, unit) of the headline patient's earlier results: counts and ALT before and
# after azathioprine was started
_HISTORY = [(day, code, value, unit) for day, values in {
    "2026-05-12": {"6690-2": 7.4, "751-8": 4.9, "731-0": 2.1, "777-3": 301, "1742-6": 18},
    "2026-07-14": {"6690-2": 6.8, "751-8": 4.2, "731-0": 1.9, "777-3": 276, "1742-6": 24},
    "2026-09-15": {"6690-2": 6.3, "751-8": 3.9, "731-0": 1.7, "777-3": 262, "1742-6": 27},
}.items() for code, (value, unit) in {c: (v, "U/L" if c == "1742-6" else "10*9/L") for c, v in values.items()}.items()]
_WEIGHTS = [("2026-05-12", 78.0), ("2026-09-15", 76.5)]


def name_of(example: str) -> dict | None:
    person = PEOPLE.get(example)
    if person is None:
        return None
    given, family = person
    return {"use": "official", "text": f"{given} {family}", "family": family, "given": [given]}


def storied(example: str, resource: dict) -> dict:
    """The resource with the example's story: the Patient named, a Condition's code given a text."""
    out = copy.deepcopy(resource)
    if out.get("resourceType") == "Patient" and not out.get("name") and (name := name_of(example)):
        out["name"] = [name]
    if out.get("resourceType") == "Condition" and isinstance(out.get("code"), dict) and not out["code"].get("text"):
        coding = out["code"].get("coding") or [{}]
        if coding[0].get("display"):
            out["code"]["text"] = coding[0]["display"]
    return out


def history(example: str, patient_ref: str) -> list[dict]:
    """Earlier results of the example's patient (only the headline patient has any)."""
    if example != HEADLINE:
        return []
    out: list[dict[str, Any]] = []
    for day, code, value, unit in _HISTORY:
        out.append({"resourceType": "Observation", "id": f"hist-{code}-{day}", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": patient_ref}, "effectiveDateTime": day,
                    "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    for day, kg in _WEIGHTS:
        out.append({"resourceType": "Observation", "id": f"hist-weight-{day}", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
                    "subject": {"reference": patient_ref}, "effectiveDateTime": day,
                    "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    return out
