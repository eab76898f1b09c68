"""Round-18 review H4, M1, M2, M3 (cases from the reviewer, tests/data/review18/, evaluated on 2026-12-07).

H4: the duplicate-thiopurine card leaves the choice of which thiopurine to stop to the prescriber, so it does not
supersede the dose/TPMT findings of the order that may be kept.
M2: a draft naming the other thiopurine's order it replaces (priorPrescription) is a switch: an info note, no
critical duplicate card, no "cancel" of the order switched to.
M1: mercaptopurine in IBD gets the same IM new-start band as azathioprine (CPIC 30-80 % capped by DPWG 2025's 50 %);
not in leukaemia (DPWG: a normal start may be considered there; CPIC's band stands).
M3: a kidney-transplant IM new start without a weight uses the transplant's 3 mg/kg/day x the 50 kg reference adult.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review18"
DAY = date(2026, 12, 7)


def _cards(name: str) -> list[dict]:
    return case_cards(json.loads((CASES / f"{name}.json").read_text(encoding="utf-8")), DAY)


def _by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def _labels(card: dict) -> list[str]:
    return [s["label"] for s in card.get("suggestions", [])]


# ------------------------------------------------------------------ H4
def test_duplicate_card_keeps_the_im_dose_finding_and_offers_both_orders():
    cards = _by_rule(_cards("r11b_aza_im_while_mp_active_nolink"))
    dup = cards["duplicate-thiopurine"]
    assert dup["indicator"] == "critical"
    assert set(_labels(dup)) == {"Cancel the azathioprine order", "Cancel the mercaptopurine order"}
    assert not any(s.get("isRecommended") for s in dup["suggestions"])  # the prescriber chooses
    pgx = cards["pgx-reduce-dose"]  # kept: if the mercaptopurine is the one stopped, the azathioprine is reduced
    assert "TPMT intermediate metabolizer: reduce to 50 mg/day (range 42-70 mg/day)" in pgx["summary"]
    assert "Change to azathioprine 50 mg once daily" in _labels(pgx)


# ------------------------------------------------------------------ M2
def test_documented_switch_is_no_duplicate_and_keeps_the_pgx_card():
    cards = _by_rule(_cards("r11_switch_mp_to_aza_prior_points_mp"))
    assert "duplicate-thiopurine" not in cards
    note = cards["thiopurine-switch"]
    assert note["indicator"] == "info" and "mercaptopurine" in note["summary"]
    assert _labels(note) == ["End the mercaptopurine order this order replaces"]
    assert note["suggestions"][0]["actions"][0] == {"type": "delete", "description": _labels(note)[0],
                                                    "resourceId": "MedicationRequest/mp-old"}
    assert "conversion" in note["detail"] and "0.55" not in note["detail"]  # no unsourced conversion factor
    assert "TPMT intermediate metabolizer: reduce to" in cards["pgx-reduce-dose"]["summary"]


def test_documented_switch_in_a_normal_metabolizer_is_an_info_note_only():
    cards = _by_rule(_cards("r11d_switch_mp_active_to_aza_prior_nm"))
    assert "duplicate-thiopurine" not in cards
    assert cards["thiopurine-switch"]["indicator"] == "info"
    assert not any("Cancel the azathioprine" in label for c in cards.values() for label in _labels(c))


# ------------------------------------------------------------------ M1
@pytest.mark.parametrize("name, summary, rule", [
    ("p13_mp_susp_ml_crohn_tpmt_im", "reduce to 52 mg/day (suspension) (range 32-52 mg/day)", "pgx-reduce-dose"),
    ("p15_mp50tab_crohn70_tpmt_im_100", "reduce to 50 mg/day (range 32-52 mg/day)", "pgx-reduce-dose"),
    ("i09_mp_crohn70_tpmt_im_75", "reduce to 50 mg/day (range 32-52 mg/day)", "pgx-reduce-dose"),
    ("p16_mp_susp_crohn70_tpmt_im_50mg_mL", "dose within the reduced range", "pgx-dose-in-reduced-range"),
    ("i01_crohn70_tpmt_im_150", "reduce to 50 mg/day (range 42-70 mg/day)", "pgx-reduce-dose"),
])
def test_ibd_im_new_start_one_band_for_every_thiopurine(name, summary, rule):
    card = _by_rule(_cards(name))[rule]
    assert summary in card["summary"]
    if rule == "pgx-reduce-dose":
        assert "this service suggests the more conservative 30-50 %" in card["detail"]
        assert "This is a new start" in card["detail"]


def test_mercaptopurine_in_leukaemia_keeps_the_cpic_band():
    card = _by_rule(_cards("p05_mp_susp_ml_all_tpmt_im"))["pgx-reduce-dose"]
    assert "(range 24-63 mg/day)" in card["summary"] and "more conservative" not in card["detail"]


# ------------------------------------------------------------------ M3
@pytest.mark.parametrize("name, summary, basis", [
    ("i12_ktx_noweight_tpmt_im_150", "reduce to 75 mg/day (range 45-75 mg/day)", "3 mg/kg/day × 50 kg = 150 mg/day"),
    ("i02_ktx70_tpmt_im_150", "reduce to 100 mg/day (range 63-105 mg/day)", "3.0 mg/kg/day × 70 kg = 210 mg/day"),
])
def test_transplant_im_start_uses_the_transplant_dose_with_or_without_a_weight(name, summary, basis):
    cards = _by_rule(_cards(name))
    card = cards["pgx-reduce-dose"]
    assert summary in card["summary"] and basis in card["detail"]
    if "weight-missing" in cards:
        assert "75 mg once daily" in cards["weight-missing"]["detail"]


def test_a_stop_that_leaves_the_choice_supersedes_no_dose_advice():
    from rules.evaluate import drop_superseded, leaves_the_choice
    from rules.findings import CancelOrder, DoseLimit, Finding

    ref = "MedicationRequest/aza"
    dose = Finding("pgx-reduce-dose", ref, {}, dose=DoseLimit("pgx-reduce-dose", high_mg=70, low_mg=42), drug="azathioprine")
    choice = Finding("duplicate-thiopurine", ref, {}, [CancelOrder(ref, "azathioprine", recommended=False),
                                                       CancelOrder("MedicationRequest/mp", "mercaptopurine",
                                                                   label="cancel_other", recommended=False)],
                     stops_order=True, drug="azathioprine")
    only = Finding("hypersensitivity", ref, {}, [CancelOrder(ref, "azathioprine")], stops_order=True, drug="azathioprine")
    assert leaves_the_choice(choice) and not leaves_the_choice(only)
    assert [f.rule_id for f in drop_superseded([choice, dose])] == ["duplicate-thiopurine", "pgx-reduce-dose"]
    assert [f.rule_id for f in drop_superseded([only, dose])] == ["hypersensitivity"]


def test_other_thiopurine_stopped_in_the_same_call_is_no_duplicate():
    request = json.loads((CASES / "r11b_aza_im_while_mp_active_nolink.json").read_text(encoding="utf-8"))
    (mp,) = [e for e in request["prefetch"]["medications"]["entry"] if e["resource"]["id"] == "mp-old"]
    request["context"]["draftOrders"]["entry"].append({**mp, "resource": {**mp["resource"], "status": "stopped"}})
    cards = _by_rule(case_cards(request, DAY))
    assert "duplicate-thiopurine" not in cards and "thiopurine-switch" not in cards


# ------------------------------------------------------------------ m1: a merged card's suggestion, labelled by its rule
def test_a_merged_info_card_labels_each_suggestion_by_the_rule_that_asked_for_it(caplog):
    """Round-18 m1 (i05: AIH, TPMT IM, 50 mg): the AIH start check's bilirubin test sits under a merged info card led
    by the PGx note; its label is the AIH rule's ("Order total bilirubin"), never the fallback "Order the test",
    and no label fails."""
    cards = _cards("i05_aih90_tpmt_im_50")
    merged = [c for c in cards if "mergedRuleIds" in c["extension"]["azathioprine-cds"]]
    assert merged, [c["summary"] for c in cards]
    labels = [s["label"] for c in merged for s in c.get("suggestions", [])]
    assert "Order total bilirubin" in labels and "Order the test" not in labels
    assert "suggestion label failed" not in caplog.text
