"""Round-14 review m3 and m4 (value tests from the reviewer's cases, tests/data/review14).

m3: myasthenia gravis (SNOMED CT 91637004, ICD-10-CM G70.0), granulomatosis with polyangiitis (195353004, M31.3) and
pemphigus vulgaris (65380005, L10.0) are recognised indications. No guideline mg/kg figure was confirmed in the
guidelines' own text, so each is recognised WITHOUT a range of its own (the liver-transplant model): no "indication
not recognised; check the start dose by hand", no start regimen, and the general maximum (the Imuran label's
maintenance span, 3 mg/kg/day) still applies.
m4: co-trimoxazole with mercaptopurine in acute lymphoblastic leukaemia is standard Pneumocystis prophylaxis (ECIL-5
2016): an info note (check the CBC) at a new start of either drug, not the label's warning; elsewhere the warning.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from rules.common import condition_indication
from rules.knowledge_base import load
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review14"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _set_dose(req: dict, mg: float) -> dict:
    req = copy.deepcopy(req)
    entry = req["context"]["draftOrders"]["entry"][0]["resource"]
    entry["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg
    return req


def _set_condition(req: dict, system: str, code: str) -> dict:
    req = copy.deepcopy(req)
    req["prefetch"]["conditions"]["entry"][0]["resource"]["code"] = {"coding": [{"system": system, "code": code}]}
    return req


INDICATIONS = [("p23_myasthenia", "myasthenia_gravis", "G70.01"),
               ("p24_vasculitis_gpa", "gpa", "M31.31"),
               ("p25_derm_pemphigus", "pemphigus_vulgaris", "L10.0")]


@pytest.mark.parametrize("case,key,icd", INDICATIONS)
def test_usual_start_is_not_unrecognised(case, key, icd):
    # 175 mg (2.5 mg/kg) / 150 mg (2.1 mg/kg) at 70 kg, TPMT and NUDT15 normal: no card at all (reviewer: info at most),
    # never "indication not recognised; check the start dose by hand". Round-15 M2: a new start takes the general
    # start regimen (as an unknown indication does): an info note naming the label's start, nothing more
    cards = case_cards(_case(case))
    assert all(c["indicator"] == "info" for c in cards), [c["summary"] for c in cards]
    assert all("not recognised" not in c["summary"] for c in cards), [c["summary"] for c in cards]
    assert all("start at 75 mg/day" in c["summary"] for c in cards), [c["summary"] for c in cards]


@pytest.mark.parametrize("case,key,icd", INDICATIONS)
def test_recognised_by_snomed_and_icd10(case, key, icd):
    from fhir_mappers.patient import condition_facts
    req = _case(case)
    assert condition_indication(condition_facts([e["resource"] for e in req["prefetch"]["conditions"]["entry"]])) == key
    by_icd = _set_condition(req, "http://hl7.org/fhir/sid/icd-10-cm", icd)
    assert condition_indication(condition_facts([e["resource"] for e in by_icd["prefetch"]["conditions"]["entry"]])) == key
    # round-15 M2: a new start above the general start gets the info start note (as an unknown indication), nothing more
    assert [c["source"]["topic"]["code"] for c in case_cards(by_icd)] in ([], ["dose-new-start"])


@pytest.mark.parametrize("case,key,icd", INDICATIONS)
def test_no_range_of_its_own_general_maximum_applies(case, key, icd):
    spec = load().dosing.indications[key]
    assert spec.max_mg_per_kg is None and spec.source and "icd10cm_2026" in spec.sources
    # 250 mg at 70 kg = 3.6 mg/kg/day: above the general 3 mg/kg/day (not let through); round-15 M2: a new start is
    # brought to the general start regimen (about 1 mg/kg = 75 mg), as an unknown indication, not to the 200 mg maximum
    cards = case_cards(_set_dose(_case(case), 250))
    above = next(c for c in cards if c["source"]["topic"]["code"] == "dose-above-range")
    assert above["indicator"] == "warning"
    assert spec.name in above["summary"] and "start at 75 mg/day" in above["summary"]
    assert "not recognised" not in " ".join(c["summary"] for c in cards)


def test_cotrimoxazole_in_all_is_info():
    cards = case_cards(_case("i12_cotrimoxazole_draft_mp_all"))
    assert _topics(cards) == ["interaction-cotrimoxazole"]
    card = cards[0]
    assert card["indicator"] == "info"
    assert "monitor CBC" in card["summary"]
    assert "standard throughout acute lymphoblastic leukaemia therapy (ECIL-5 2016)" in card["detail"]
    assert "check the CBC" in card["detail"]
    assert any("ECIL-5" in link["label"] for link in card["links"])


def test_cotrimoxazole_outside_all_stays_warning():
    # the same request with myasthenia gravis in place of ALL (and with no condition at all): the label's warning
    req = _case("i12_cotrimoxazole_draft_mp_all")
    for changed in (_set_condition(req, "http://snomed.info/sct", "91637004"),
                    {**req, "prefetch": {k: v for k, v in req["prefetch"].items() if k != "conditions"}}):
        cards = [c for c in case_cards(changed) if c["source"]["topic"]["code"] == "interaction-cotrimoxazole"]
        assert [c["indicator"] for c in cards] == ["warning"]
        assert "ECIL-5" not in cards[0]["detail"]


def test_cotrimoxazole_in_aml_stays_warning():
    # ECIL-5 names ALL, not AML, as a main indication of PCP prophylaxis: AML keeps the warning
    req = _set_condition(_case("i12_cotrimoxazole_draft_mp_all"), "http://hl7.org/fhir/sid/icd-10-cm", "C92.00")
    cards = [c for c in case_cards(req) if c["source"]["topic"]["code"] == "interaction-cotrimoxazole"]
    assert [c["indicator"] for c in cards] == ["warning"]
