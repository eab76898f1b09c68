"""Round-14 black-box review, H1, H3 and m5 (cases in tests/data/review14, written by the reviewer).

H1: a new start ordered above the indication's maximum was cut to the maintenance maximum (RA 250 mg at 70 kg ->
175 mg; 91 years, 38 kg, 100 mg -> 75 mg) while the same patient at 150 mg was told "start at 75 mg/day". The
ceiling of a new start with a start regimen is now the label's starting dose, whichever card is shown.

H3: allopurinol newly ordered beside an active mercaptopurine regimen given three times a week: the one-quarter to
one-third was taken of the daily average (1.71 mg/day) and printed per dose (0.43-0.57 mg per dose). It is now taken
per dose on the same schedule (4 mg per dose -> 1-1.33 mg per dose), and the poor-metabolizer card of an order that
already follows CPIC's regimen is not told to reduce for the genotype.

m5: in dialysis the start card gave the full label start while the renal card said "use lower doses": the start card
now says the start should be lower in renal impairment, citing the label, with no figure of its own.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from rules.doseplan import combine, per_dose
from rules.findings import DoseLimit
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review14"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _card(cards: list[dict], rule_id: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule_id]
    return card


def _rules(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _recommended(card: dict) -> str | None:
    m = re.search(r"\*\*Recommended dose for this \w+ order: ([^*]+)\*\*", card["detail"])
    return m.group(1) if m else None


def _updates(cards: list[dict]) -> list[dict]:
    return [a["resource"] for c in cards for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]


def _with_draft_dose(request: dict, mg: float) -> dict:
    """The same request with the azathioprine draft written as ``mg`` once daily."""
    req = copy.deepcopy(request)
    draft = req["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"] = [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg",
                                                                     "system": "http://unitsofmeasure.org", "code": "mg"}}]}]
    return req


# ------------------------------------------------------------------------------------------------- H1

def test_d08_ra_new_start_above_the_maximum_is_brought_to_the_start_dose_not_the_maximum() -> None:
    cards = case_cards(_case("d08_dose_range"))
    card = _card(cards, "dose-above-range")
    assert card["indicator"] == "warning"
    assert card["summary"].endswith("above 2.5 for rheumatoid arthritis: new start: start at 75 mg/day and titrate")
    assert _recommended(card) == "75 mg once daily"
    assert "exact range up to 75 mg/day, from the label's starting dose for a new start" in card["detail"]
    assert "This is a new start" in card["detail"] and "titrate after 6-8 weeks" in card["detail"]
    assert "175 mg once daily" not in json.dumps(cards)  # the maintenance maximum is never the suggestion
    (update,) = _updates(cards)
    assert update["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 75
    assert "dose-new-start" not in _rules(cards)  # one card, one figure


def test_d08_and_its_150_mg_control_name_the_same_start_figure() -> None:
    control = _card(case_cards(_case("d14_new_start_ra_150_control")), "dose-new-start")
    assert control["summary"] == "Azathioprine new start at 150 mg/day: start at 75 mg/day and titrate after 6-8 weeks"
    above = _card(case_cards(_case("d08_dose_range")), "dose-above-range")
    assert "start at 75 mg/day" in above["summary"]
    # the same patient at 150 mg written as a fixed dose: the start card, the same figure
    same = case_cards(_with_draft_dose(_case("d08_dose_range"), 150))
    assert _card(same, "dose-new-start")["summary"] == control["summary"]


@pytest.mark.parametrize("mg", [50, 75])
def test_an_ra_start_at_or_under_the_start_dose_is_not_cut(mg: int) -> None:
    cards = case_cards(_with_draft_dose(_case("d08_dose_range"), mg))
    assert "dose-above-range" not in _rules(cards) and "dose-new-start" not in _rules(cards)
    assert not _updates(cards)


def test_d08_following_the_suggestion_ends_the_advice() -> None:
    request = _case("d08_dose_range")
    (update,) = _updates(case_cards(request))
    request["context"]["draftOrders"]["entry"][0]["resource"] = update
    again = case_cards(request)
    assert not _updates(again)
    assert "dose-above-range" not in _rules(again) and "dose-new-start" not in _rules(again)


def test_p16_frail_91_year_old_gets_the_start_dose_on_every_card() -> None:
    cards = case_cards(_case("p16_age91_38kg"))
    card = _card(cards, "dose-above-range")
    assert card["summary"].endswith("new start: start at 50 mg/day and titrate")
    elderly = _card(cards, "elderly")
    assert "start azathioprine at the low end of the range" in elderly["summary"]
    # every card about the order names one dose: the start dose (was 75 mg, 2 mg/kg, on both)
    assert _recommended(card) == _recommended(elderly) == "50 mg once daily"
    assert "75 mg once daily" not in json.dumps(cards)
    (update,) = _updates(cards)
    assert update["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 50


def test_ibd_new_start_above_the_maximum_is_still_cut_to_the_maximum() -> None:
    """Not affected: IBD starts at the target dose (BSG 2019), so its maximum stays the ceiling."""
    cards = case_cards(_case("d12_new_start_ibd_300"))
    card = _card(cards, "dose-above-range")
    assert "new start" not in card["summary"] and "reduce to" in card["summary"]
    assert "the maximum for the indication" in card["detail"]


def test_with_allopurinol_the_start_gives_way_to_the_fraction_of_the_usual_dose() -> None:
    """One order, one answer: with another dose limit (allopurinol's fraction) the start is not the ceiling, as for a
    start under the maximum (dose-new-start gives way), so the answer does not depend on how far above it the order was."""
    limits = [DoseLimit("dose-above-range", high_mg=175, start_mg=75), DoseLimit("interaction-xanthine-oxidase",
                                                                                 factor_low=0.25, factor_high=1 / 3)]
    low, high, _ = combine(limits, 140.0, 250.0)
    assert low is not None
    assert (round(low, 2), round(high, 2)) == (35.0, 46.67)  # a quarter to a third of 140 mg, as before


# ------------------------------------------------------------------------------------------------- H3

def test_the_fraction_of_a_three_times_weekly_dose_is_taken_per_dose() -> None:
    pm = DoseLimit("pgx-poor-metabolizer", high_mg=7.21, days_per_week=3, accept_high_mg=9.6)
    allo = DoseLimit("interaction-xanthine-oxidase", factor_low=0.25, factor_high=1 / 3, current_mg=12 / 7,
                     current_not_reduced=True)
    low, high, days = combine([pm, allo], 72.1, 12 / 7)
    assert low is not None
    assert days == 3 and round(low, 2) == 1.0 and round(high, 2) == 1.33
    assert per_dose(12 / 7, 3) == pytest.approx(4.0) and per_dose(50, None) == 50


def test_i21_allopurinol_beside_active_tiw_mercaptopurine_is_cut_per_dose() -> None:
    cards = case_cards(_case("i21_allo_draft_tpmt_pm_active_all"))
    xo = _card(cards, "interaction-xanthine-oxidase")
    pm = _card(cards, "pgx-poor-metabolizer")
    assert xo["indicator"] == "critical"
    assert xo["summary"].endswith("reduce the active mercaptopurine order to 1 mg 3x/week (suspension)")
    assert "here of the 4 mg per dose three times a week the patient takes" in xo["detail"]
    for card in (xo, pm):  # one order, one dose
        assert _recommended(card) == "1 mg (0.05 mL of the 20 mg/mL oral suspension) three times a week"
        assert "exact range 1-1.33 mg per dose" in card["detail"]
    assert "0.57" not in json.dumps(cards) and "0.43" not in json.dumps(cards)
    # the active 4 mg per dose is under CPIC's one tenth (7.21 mg per dose): not told to reduce for the genotype
    assert pm["indicator"] == "info"
    assert "regimen already followed; with allopurinol: 1 mg 3x/week" in pm["summary"]
    assert "already follows this regimen" in pm["detail"] and "4 mg per dose on 3 days a week" in pm["detail"]


def test_i23_control_mercaptopurine_draft_with_allopurinol_active_keeps_its_dose() -> None:
    cards = case_cards(_case("i23_mp_draft_tiw_pm_allo_active"))
    xo = _card(cards, "interaction-xanthine-oxidase")
    pm = _card(cards, "pgx-poor-metabolizer")
    for card in (xo, pm):
        assert _recommended(card) == "2 mg (0.1 mL of the 20 mg/mL oral suspension) three times a week"
        assert "exact range 1.8-2.4 mg per dose" in card["detail"]
    assert xo["indicator"] == "critical" and pm["indicator"] == "info"
    # the one-click update sits on the card that asks for the cut (allopurinol), not on the note that it follows CPIC
    assert xo.get("suggestions") and not pm.get("suggestions")
    (update,) = _updates(cards)
    assert update["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == pytest.approx(0.1)


def test_an_active_order_above_cpics_regimen_still_gets_the_critical_poor_metabolizer_card() -> None:
    """The same child on 10 mg of mercaptopurine every day (above one tenth three times a week): the genotype card
    still asks for the reduction, and the fraction is taken of CPIC's one tenth per dose (1.8-2.4 mg per dose)."""
    request = _case("i21_allo_draft_tpmt_pm_active_all")
    active = request["prefetch"]["medications"]["entry"][0]["resource"]
    active["dosageInstruction"] = [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": {"value": 0.5, "unit": "mL",
                                                                      "system": "http://unitsofmeasure.org", "code": "mL"}}]}]
    cards = case_cards(request)
    pm = _card(cards, "pgx-poor-metabolizer")
    assert pm["indicator"] == "critical" and "drastically reduced dose" in pm["summary"]
    assert "exact range 1.8-2.4 mg per dose" in pm["detail"]


# ------------------------------------------------------------------------------------------------- m5

def test_p21_dialysis_start_card_says_lower_in_renal_impairment_without_a_figure() -> None:
    cards = case_cards(_case("p21_egfr_lt15_dialysis_umol"))
    start = _card(cards, "dose-new-start")
    renal = _card(cards, "renal-impairment")
    assert "use lower doses" in renal["summary"]
    assert start["summary"] == ("Azathioprine new start at 100 mg/day: start at most 75 mg/day, lower in renal "
                                "impairment, and titrate after 6-8 weeks")
    assert "are usually given lower doses" in start["detail"]
    assert "The label gives no figure for how much lower" in start["detail"]
    assert "renal dysfunction: lower doses" in start["detail"]  # the label is cited on the card
    figures = set(re.findall(r"(\d+(?:\.\d+)?) mg/day", start["detail"].split("**Sources**")[0]))
    assert figures <= {"75", "70", "100"}, figures  # no invented renal figure


def test_an_unknown_indication_new_start_above_the_general_maximum_is_brought_to_the_general_start() -> None:
    """The class, not the case: no indication on record (general start about 1 mg/kg/day, not below 50 mg; maximum
    3 mg/kg/day): 250 mg at 70 kg is brought to 75 mg, not to 210 mg."""
    request = _case("d08_dose_range")
    request["prefetch"]["conditions"]["entry"] = []
    cards = case_cards(request)
    card = _card(cards, "dose-above-range")
    assert "new start: start at 75 mg/day" in card["summary"]
    assert "210" not in (_recommended(card) or "")
    (update,) = _updates(cards)
    assert update["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 75
