"""Round-19 review M1, M2, m1, m2, m4, m10: mercaptopurine and the population cards.

M1: in inflammatory bowel disease the pregnancy and breastfeeding cards follow the IBD guidelines (ECCO 2015, AGA 2019),
one message for azathioprine and mercaptopurine (``populations.toml [pregnancy.ibd]``, ``[breastfeeding.ibd]``); ACR
2020 stays for rheumatic disease. M2: the renal lowest start of mercaptopurine in ALL is the dose to give, between its
per-m2 and per-kg forms, never rounded under both. m1: the NUDT15 poor metabolizer's own malignancy regimen. m2: the
general start is not called the label's start for granulomatosis with polyangiitis. m4: the elderly card on established
therapy. m10: the label's ALL starting dosage is cited only where that figure is used.
Cases from the reviewer (tests/data/review19/), evaluated on 2026-12-08; variants built from them.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)
ALL_DOSING = "FDA label section 2: ALL maintenance"


def _load(name: str) -> dict:
    return json.loads(next(CASES.glob(f"{name}-*.json")).read_text(encoding="utf-8"))


def _cards(request: dict | str) -> list[dict]:
    return case_cards(_load(request) if isinstance(request, str) else request, DAY)


def _rule(cards: list[dict], rule: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule]
    return card


def _updates(cards: list[dict]) -> list[str]:
    return [s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")]


def _order(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def _with_drug(request: dict, drug: str) -> dict:
    """The same request with the draft (and any active order of the old drug) written as ``drug`` 50 mg tablets."""
    request = copy.deepcopy(request)
    code = {"azathioprine": "197388", "mercaptopurine": "197931"}[drug]
    med = {"text": f"{drug} 50 MG Oral Tablet", "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                            "code": code, "display": f"{drug} 50 MG Oral Tablet"}]}
    _order(request)["medicationCodeableConcept"] = copy.deepcopy(med)
    for entry in (request["prefetch"].get("medications") or {}).get("entry", []):
        if entry["resource"].get("resourceType") == "MedicationRequest":
            entry["resource"]["medicationCodeableConcept"] = copy.deepcopy(med)
    return request


def _with_condition(request: dict, code: str, display: str) -> dict:
    request = copy.deepcopy(request)
    request["prefetch"]["conditions"]["entry"] = [{"resource": {
        "resourceType": "Condition", "id": "ind",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display},
        "subject": {"reference": "Patient/pt"}}}]
    return request


CROHNS = ("34000006", "Crohn's disease")
RA = ("69896004", "Rheumatoid arthritis")


# ------------------------------------------------------------ M1: IBD pregnancy, one message for both thiopurines

@pytest.mark.parametrize("drug", ["mercaptopurine", "azathioprine"])
def test_m1_established_thiopurine_in_ibd_pregnancy_is_continued_by_the_ibd_guidelines(drug):
    card = _rule(_cards(_with_drug(_load("r19-16"), drug)), "pregnancy")  # Crohn's, renewal, pregnant
    assert card["indicator"] == "info"
    assert f"Pregnant patient on {drug} (IBD)" in card["summary"] and "continuing" in card["summary"]
    assert "ACR" not in card["summary"] + card["detail"]
    assert card["source"]["label"].startswith("Second ECCO consensus")
    detail = card["detail"]
    assert "van der Woude" in detail and "Mahadevan" in detail
    assert "azathioprine is the one" not in detail and "treat azathioprine and mercaptopurine alike" in detail
    assert "can cause fetal harm" in detail  # the label's statement is kept
    assert not _updates([card])


def test_m1_both_drugs_get_the_same_ibd_pregnancy_message():
    mp = _rule(_cards(_with_drug(_load("r19-16"), "mercaptopurine")), "pregnancy")
    aza = _rule(_cards(_with_drug(_load("r19-16"), "azathioprine")), "pregnancy")
    assert mp["indicator"] == aza["indicator"]
    assert mp["summary"].replace("mercaptopurine", "X") == aza["summary"].replace("azathioprine", "X")


def test_m1_new_mercaptopurine_start_in_ibd_with_a_future_positive_hcg():
    card = _rule(_cards("r19-18"), "pregnancy")  # Crohn's, new start, hCG dated after today
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("DATED 2027-01-15 (AFTER TODAY), verify")
    assert "new mercaptopurine start (IBD)" in card["summary"] and "fetal harm" in card["summary"]
    assert "azathioprine is the one" not in card["detail"] and "ACR" not in card["detail"]
    assert "Second European Evidenced-Based Consensus" in card["detail"]


def test_m1_new_azathioprine_start_in_ibd_pregnancy_is_worded_as_mercaptopurine():
    card = _rule(_cards(_with_drug(_load("r19-18"), "azathioprine")), "pregnancy")
    assert card["indicator"] == "warning" and "new azathioprine start (IBD)" in card["summary"]


def test_m1_rheumatic_disease_keeps_acr_2020():
    card = _rule(_cards("r19-77"), "pregnancy")  # rheumatoid arthritis, azathioprine
    assert card["indicator"] == "info" and card["source"]["label"].startswith("ACR guideline")
    mp = _rule(_cards(_with_drug(_load("r19-77"), "mercaptopurine")), "pregnancy")
    assert mp["indicator"] == "warning" and "ACR 2020 names azathioprine" in mp["summary"]


@pytest.mark.parametrize("drug", ["mercaptopurine", "azathioprine"])
def test_m1_breastfeeding_in_ibd_follows_the_ibd_guidelines(drug):
    request = _with_drug(_with_condition(_load("r19-17"), *CROHNS), drug)  # breastfeeding status yes
    card = _rule(_cards(request), "breastfeeding")
    assert card["indicator"] == "info"
    assert "Breastfeeding (IBD): ECCO/AGA consider" in card["summary"] and "ACR" not in card["detail"]
    assert card["source"]["label"].startswith("Second ECCO consensus")


def test_m1_breastfeeding_outside_ibd_is_unchanged():
    card = _rule(_cards("r19-17"), "breastfeeding")  # SLE, azathioprine
    assert card["indicator"] == "info" and "ACR 2020 considers azathioprine compatible" in card["summary"]
    mp = _rule(_cards(_with_drug(_load("r19-17"), "mercaptopurine")), "breastfeeding")
    assert mp["indicator"] == "warning"


# ------------------------------------------------------------ M2: the renal lowest start of mercaptopurine in ALL

def _mp_all(mg: float = 125, weight: float = 70, height: float | None = 175, suspension: bool = False) -> dict:
    request = copy.deepcopy(_load("r19-28"))  # ALL, eGFR 42, new start, 50 mg tablets
    order = _order(request)
    if suspension:
        order["medicationCodeableConcept"] = {"text": "mercaptopurine 20 MG/ML Oral Suspension", "coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1312587",
             "display": "mercaptopurine 20 MG/ML Oral Suspension"}]}
        order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
            "value": mg / 20, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}
    else:
        order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg
    request["prefetch"]["weight"]["entry"][0]["resource"]["valueQuantity"]["value"] = weight
    if height is None:
        request["prefetch"]["height"]["entry"] = []
    else:
        request["prefetch"]["height"]["entry"][0]["resource"]["valueQuantity"]["value"] = height
    return request


def test_m2_all_egfr42_new_start_is_given_the_lowest_start_not_cut_under_it():
    card = _rule(_cards("r19-28"), "renal-impairment")  # 70 kg, 1.84 m2: 92.2 mg (50 mg/m2) - 105 mg (1.5 mg/kg)
    assert "give 100 mg/day" in card["summary"] and "92-105 mg" in card["summary"]
    assert "75 mg" not in card["summary"]
    assert _updates([card]) == ["Change to mercaptopurine 100 mg once daily"]
    assert "92.2 mg/day for 1.84 m²" in card["detail"] and "1.5 mg/kg/day, 105 mg/day for 70 kg" in card["detail"]


def test_m2_the_suspension_is_measured_to_the_per_m2_figure():
    card = _rule(_cards(_mp_all(suspension=True)), "renal-impairment")
    assert _updates([card]) == ["Change to mercaptopurine 92 mg (4.6 mL) once daily"]


@pytest.mark.parametrize("mg", [87.5, 100, 110])
def test_m2_an_order_at_or_near_the_lowest_start_is_not_cut(mg):
    card = _rule(_cards(_mp_all(mg)), "renal-impairment")
    assert not _updates([card]) and "new start within the label's lowest starting dose" in card["summary"]


def test_m2_following_the_suggestion_converges():
    assert not _updates(_cards(_mp_all(100)))
    assert not _updates(_cards(_mp_all(92, suspension=True)))


def test_m2_weight_only_uses_the_per_kg_form():
    card = _rule(_cards(_mp_all(weight=70, height=None)), "renal-impairment")  # 1.5 mg/kg = 105 mg
    assert _updates([card]) == ["Change to mercaptopurine 100 mg once daily"]
    assert "1.5 mg/kg" in card["summary"]


def test_m2_a_child_is_not_cut_far_under_the_lowest_start():
    # 20 kg, 110 cm (0.78 m2): 30 mg (1.5 mg/kg) - 39 mg (50 mg/m2); before: 25 mg/day
    card = _rule(_cards(_mp_all(60, weight=20, height=110)), "renal-impairment")
    (update,) = _updates([card])
    assert "average 37.5 mg/day" in update


def test_m2_the_lowest_start_as_a_floor_gives_way_to_a_tighter_band():
    from rules.doseplan import combine
    from rules.findings import DoseLimit
    renal = DoseLimit("renal-impairment", high_mg=105, low_mg=92.2, aim_low=True)
    band = DoseLimit("pgx-reduce-dose", high_mg=56, low_mg=41)
    low, high, _ = combine([renal, band], None)
    assert (low, high) == (41, 56)  # the band's own floor holds; the moot renal floor does not erase it


def test_m2_azathioprine_renal_start_is_unchanged():
    cards = _cards("r19-19")  # 93 years, eGFR 28 from creatinine, azathioprine new start (no label figure)
    card = _rule(cards, "renal-impairment")
    assert card["indicator"] == "warning" and "use lower doses" in card["summary"]
    assert any("start at most 50 mg/day, lower in renal impairment" in c["detail"] for c in cards)


# ------------------------------------------------------------ m1: NUDT15 poor metabolizer's own regimen

def test_m1_nudt15_poor_metabolizer_card_names_its_own_malignancy_regimen():
    card = _rule(_cards("r19-22"), "pgx-poor-metabolizer")  # Crohn's, NUDT15 *3/*3, azathioprine
    detail = card["detail"]
    assert "mercaptopurine 10 mg/m²/day" in detail and "daily" in detail
    assert "(10-fold lower, three times weekly)" not in detail and "(TPMT" not in detail
    assert "Table 3 (NUDT15)" in detail  # its source is listed


# ------------------------------------------------------------ m2: the general start is not the label's GPA start

def test_m2_gpa_start_is_the_services_general_start():
    detail = _rule(_cards("r19-34"), "pgx-reduce-dose")["detail"]
    assert "label's starting dose for granulomatosis" not in detail
    assert "this service's general starting dose, 75 mg/day" in detail and "rheumatoid arthritis start" in detail


# ------------------------------------------------------------ m4: the elderly card on established therapy

@pytest.mark.parametrize("name", ["r19-29", "r19-35"])
def test_m4_elderly_card_on_a_renewal_does_not_speak_of_a_start(name):
    card = _rule(_cards(name), "elderly")
    assert "start" not in card["summary"].lower() and "review the dose" in card["summary"]
    assert "This is established therapy" in card["detail"]


def test_m4_elderly_card_on_a_new_start_keeps_the_start_advice():
    cards = _cards("r19-19")  # 93 years, new start (the elderly card merged with the start card)
    assert any("start azathioprine at the low end of the range" in c["detail"] for c in cards)


# ------------------------------------------------------------ m10: the ALL starting dosage only where it is used

@pytest.mark.parametrize("name", ["r19-05", "r19-16", "r19-29"])
def test_m10_mercaptopurine_outside_all_does_not_cite_the_all_starting_dosage(name):
    for card in _cards(name):
        assert ALL_DOSING not in card["detail"], (name, card["summary"])


def test_m10_all_dose_cards_still_cite_it():
    no_height = _cards(_mp_all(125, height=None))
    assert any(ALL_DOSING in c["detail"] for c in no_height)
