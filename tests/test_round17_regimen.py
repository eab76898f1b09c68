"""Round-17 review H3, M8: a suggested regimen is one the ordered product can give.

H3: a TPMT poor metabolizer in leukaemia (CPIC 2018 Table 2: one tenth of the dose, three times a week) on a
"mercaptopurine 50 MG Oral Tablet" draft was offered an update writing 7 mg (0.35 mL of the oral suspension) onto the
50 mg tablet product. Any regimen the draft's product cannot give (the oral suspension's dose on tablets, on any
schedule; a dose no whole or half tablet of its strength gives) is named on the card, never offered as an update.
M8: a regimen for a draft of 75 mg tablets is built in whole and half tablets of 75 mg (37.5/75 mg), not in the 25 mg
steps of the 50 mg tablet (50 mg = 2/3 of a 75 mg tablet); every card about the order quotes that one regimen.
Cases from the reviewer (tests/data/review17/), evaluated on 2026-12-07.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

from hooks.dose_suggestion import shape
from rules.doseplan import practical_regimen, tablet_step
from rules.findings import Regimen
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review17"
DAY = date(2026, 12, 7)


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _draft(req: dict) -> dict:
    return req["context"]["draftOrders"]["entry"][0]["resource"]


def _updates(cards: list[dict]) -> list[dict]:
    return [a for c in cards for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]


def _doses(update: dict) -> list[dict]:
    return [dr["doseQuantity"] for d in update["resource"]["dosageInstruction"] for dr in d["doseAndRate"]]


# ------------------------------------------------------------------ H3

def test_h3_tpmt_pm_leukaemia_three_times_weekly_suspension_is_not_written_onto_tablets():
    cards = case_cards(_case("d17_all_tpmt_pm_mp"), DAY)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-poor-metabolizer"]
    assert "7 mg 3x/week (suspension)" in card["summary"]
    assert "7 mg (0.35 mL of the 20 mg/mL oral suspension) three times a week" in card["detail"]
    assert "The ordered 50 mg tablets cannot give this dose: order the oral suspension instead" in card["detail"]
    assert _updates(cards) == []  # was: doseQuantity 7 mg on "mercaptopurine 50 MG Oral Tablet"


def test_h3_nudt15_pm_daily_suspension_path_unchanged_and_says_why():
    cards = case_cards(_case("c91_all_nudt15_pm_mp"), DAY)
    assert _updates(cards) == []
    assert any("9 mg (0.45 mL of the 20 mg/mL oral suspension) once daily" in c["detail"] for c in cards)
    assert any("cannot give this dose: order the oral suspension" in c["detail"] for c in cards)


def test_h3_suspension_product_written_in_ml_keeps_its_one_click_update():
    req = _case("d17_all_tpmt_pm_mp")
    draft = _draft(req)
    draft["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1536484",
                                                      "display": "mercaptopurine 20 MG/ML Oral Suspension"}],
                                          "text": "mercaptopurine 20 MG/ML Oral Suspension"}
    draft["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 2.5, "unit": "mL", "code": "mL",
                                                                      "system": "http://unitsofmeasure.org"}}]
    cards = case_cards(req, DAY)
    (update,) = _updates(cards)
    (q,) = _doses(update)
    assert q["code"] == "mL" and q["value"] == 0.35
    assert update["resource"]["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 3
    assert not any("cannot give this dose" in c["detail"] for c in cards)


def test_h3_class_any_schedule_of_the_suspension_on_a_tablet_draft_is_another_product():
    draft = _draft(_case("d17_all_tpmt_pm_mp"))
    for regimen in (Regimen(7, days_per_week=3, form="suspension", ml=0.35),
                    Regimen(9, form="suspension", ml=0.45)):
        assert shape(regimen, draft, "mercaptopurine").other_product, regimen
    assert not shape(Regimen(25), draft, "mercaptopurine").other_product  # half a 50 mg tablet
    # a mg dose the tablets cannot give, on any schedule (7 mg of a 50 mg tablet three times a week)
    assert shape(Regimen(7, days_per_week=3), draft, "mercaptopurine").other_product
    assert shape(Regimen(60, alt_mg=40), draft, "mercaptopurine").other_product


# ------------------------------------------------------------------ M8

def test_m8_75_mg_tablets_get_whole_and_half_75_mg_tablets():
    cards = case_cards(_case("d31_aza_75mg_tablet_tabs"), DAY)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert "reduce to 75/37.5 mg alternate days (range 42-70 mg/day)" in card["summary"], card["summary"]
    assert "reduce to 50 mg" not in card["summary"]
    (update,) = _updates(cards)
    assert update["resource"]["medicationCodeableConcept"]["text"] == "azathioprine 75 MG Oral Tablet"
    # the order was written in tablets and stays so: 1 tablet and half a tablet on alternate days
    assert [(q["value"], q["unit"]) for q in _doses(update)] == [(1, "tablet"), (0.5, "tablet")]
    # one dose per order: every card that quotes a recommended regimen for it quotes the same one
    plans = {c["detail"].split("**Recommended dose for this azathioprine order: ")[1].split("**")[0]
             for c in cards if "**Recommended dose for this azathioprine order" in c["detail"]}
    assert plans == {"75 mg and 37.5 mg on alternate days (average 56.2 mg/day)"}


def test_m8_100_mg_tablets_get_half_a_tablet():
    req = _case("d31_aza_75mg_tablet_tabs")
    draft = _draft(req)
    draft["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "359228", "display": "azathioprine 100 MG Oral Tablet"}],
                                          "text": "azathioprine 100 MG Oral Tablet"}
    cards = case_cards(req, DAY)
    (update,) = _updates(cards)
    assert [(q["value"], q["unit"]) for q in _doses(update)] == [(0.5, "tablet")]
    assert "50 mg" in update["description"]


def test_m8_75_mg_tablets_written_in_mg_stay_in_mg_of_whole_and_half_tablets():
    req = _case("d31_aza_75mg_tablet_tabs")
    _draft(req)["dosageInstruction"][0]["doseAndRate"] = [
        {"doseQuantity": {"value": 150, "unit": "mg", "code": "mg", "system": "http://unitsofmeasure.org"}}]
    (update,) = _updates(case_cards(req, DAY))
    assert [(q["value"], q["unit"]) for q in _doses(update)] == [(75, "mg"), (37.5, "mg")]


def test_m8_class_tablet_step_of_the_ordered_strength():
    assert tablet_step("azathioprine", None) == 25
    assert tablet_step("azathioprine", 50) == 25
    assert tablet_step("azathioprine", 25) == 25
    assert tablet_step("azathioprine", 75) == 37.5
    assert tablet_step("azathioprine", 100) == 50
    assert tablet_step("thioguanine", 40) == 20
    # no whole or half 100 mg tablet inside 42-45 mg/day: none (the plan then names another strength, no update)
    assert practical_regimen("azathioprine", 42, 45, unit_mg=100) is None
    r = practical_regimen("azathioprine", 42, 70, unit_mg=75)
    assert r is not None and (r.per_dose_mg, r.alt_mg) == (75, 37.5)


def test_m8_a_dose_no_tablet_of_the_strength_gives_is_not_an_update():
    req = _case("d31_aza_75mg_tablet_tabs")
    draft = copy.deepcopy(_draft(req))
    assert shape(Regimen(50), draft, "azathioprine").other_product  # 2/3 of a 75 mg tablet
    assert not shape(Regimen(75), draft, "azathioprine").other_product
    assert not shape(Regimen(75, alt_mg=37.5), draft, "azathioprine").other_product


def test_m8_no_whole_or_half_tablet_of_the_strength_fits_names_another_and_offers_no_update():
    from rules.catalogue import indicator_of, priority_of
    from rules.doseplan import plan_doses
    from rules.findings import ChangeDose, DoseLimit, Finding

    def plan(products):
        f = Finding("pgx-reduce-dose", "MedicationRequest/mr-aza", drug="azathioprine",
                    dose=DoseLimit("pgx-reduce-dose", high_mg=40, low_mg=30))
        p = plan_doses([f], {"MedicationRequest/mr-aza": 150}, indicator_of, priority_of, products=products)
        return p["MedicationRequest/mr-aza"], f.actions

    p, actions = plan({"MedicationRequest/mr-aza": (100.0, None)})  # 100 mg tablets: 50 mg steps, none in 30-40
    # the 25 mg steps of the drug's other strengths: 50/25 mg on alternate days (25 mg is a quarter of 100 mg)
    assert p.regimen is not None and (p.regimen.per_dose_mg, p.regimen.alt_mg) == (50, 25)
    assert p.values()["other_product"] is True and p.values()["product_mg"] == 100
    (action,) = [a for a in actions if isinstance(a, ChangeDose)]
    assert action.other_product  # hooks.cards offers no update for it
    p, actions = plan({"MedicationRequest/mr-aza": (50.0, None)})  # 50 mg tablets give it: an update as before
    assert "other_product" not in p.values()
    assert not [a for a in actions if isinstance(a, ChangeDose)][0].other_product
