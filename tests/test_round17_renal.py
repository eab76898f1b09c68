"""Round-17 review H2, m3, M3, M2, m8: the renal cut-off and advice per drug from its label; established therapy is
reviewed, not started; one start figure per order (no weight: the label's lower figure; a plan's dose wins); a
per-kg start beyond the label's absolute figures.

Cases from the reviewer (tests/data/review17/), evaluated on 2026-12-07; ``s17_d06_with_allopurinol`` is d06 with
the allopurinol draft of the reviewer's c50 added (the class of M2: a plan lower than the label's start).
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review17"
DAY = date(2026, 12, 7)


def _load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict | str) -> list[dict]:
    return case_cards(_load(request) if isinstance(request, str) else request, DAY)


def _by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


def _order(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def _set_dose(request: dict, mg: float) -> dict:
    request = copy.deepcopy(request)
    _order(request)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg
    return request


# ------------------------------------------------------------ H2: mercaptopurine's own cut-off (label: CLcr < 50)

def test_h2_all_adult_mercaptopurine_egfr40_new_start_gets_the_lowest_starting_dose():
    cards = _by_rule(_cards("d05_all_adult_mp_egfr40"))  # 1.84 m2, 137.5 mg/day = 75 mg/m2, eGFR 40
    card = cards["renal-impairment"]
    assert card["indicator"] == "warning"
    # round-19 M2: the lowest start in both of the label's forms (50 mg/m2 = 92.2 mg, 1.5 mg/kg = 105 mg at 70 kg)
    assert "eGFR 40" in card["summary"] and "new start" in card["summary"] and "92-105 mg" in card["summary"]
    detail = card["detail"]
    assert "below 50 mL/min" in detail and "lowest recommended starting dose" in detail
    assert "50 mg/m²/day" in detail and "92.2 mg/day for 1.84 m²" in detail
    assert "8.6 Renal Impairment" in detail
    (update,) = _updates([card])
    # between the two forms of the lowest start (round-19 M2: 100 mg, never rounded under both to 75 mg)
    assert 92.2 - 0.01 <= float(update.split("mercaptopurine ")[1].split(" mg")[0]) <= 105 + 0.01
    assert "Start at the low end of the range" not in detail


def test_h2_mercaptopurine_within_the_lowest_start_is_not_cut():
    cards = _by_rule(_cards(_set_dose(_load("d05_all_adult_mp_egfr40"), 87.5)))  # 47.6 mg/m2
    card = cards["renal-impairment"]
    assert not _updates([card])
    assert "this order is within it" in card["detail"]


def test_h2_mercaptopurine_ibd_egfr40_gets_the_label_advice_without_a_figure():
    cards = _by_rule(_cards("c19_egfr40_mp"))  # ulcerative colitis, 60 kg, 75 mg new start
    card = cards["renal-impairment"]
    assert card["indicator"] == "warning"
    assert "lowest starting dose" in card["summary"]
    assert "below 50 mL/min" in card["detail"] and "none is given for this indication" in card["detail"]
    assert not _updates([card])


def test_h2_established_mercaptopurine_egfr40_is_reviewed_not_cut():
    request = _load("d05_all_adult_mp_egfr40")
    old = copy.deepcopy(_order(request))
    old.update(id="mp-old", status="active", authoredOn="2025-06-01")
    request["prefetch"]["medications"]["entry"].append({"resource": old})
    _order(request)["priorPrescription"] = {"reference": "MedicationRequest/mp-old"}
    card = _by_rule(_cards(request))["renal-impairment"]
    assert "review the dose" in card["summary"]
    assert "established therapy" in card["detail"] and not _updates([card])


def test_h2_azathioprine_keeps_its_label_cut_off():
    assert "renal-impairment" not in _by_rule(_cards("c20_egfr40_aza"))  # Imuran: no eGFR figure; 30 kept


def test_h2_the_cut_off_is_per_drug_knowledge():
    from rules.knowledge_base import load
    from rules.populations import renal_cutoff
    assert renal_cutoff("mercaptopurine") == 50
    assert renal_cutoff("azathioprine") == renal_cutoff("thioguanine") == load().populations.renal.egfr_below == 30
    assert load().populations.renal.drugs["mercaptopurine"].source == "fda_mercaptopurine_renal"


# ------------------------------------------------------------ m3: established therapy is not told to start

def test_m3_renal_card_on_a_renewal_reviews_the_dose_and_cbc():
    for name in ("c17_egfr12_aza_renewal", "c18_dialysis_aza"):
        card = _by_rule(_cards(name))["renal-impairment"]
        assert "Start at the low end" not in card["detail"], name
        assert "review the dose" in card["summary"], name
        assert "established therapy" in card["detail"] and "CBC" in card["detail"], name


# ------------------------------------------------------------ M3: no weight -> the label's lower figure

def test_m3_no_weight_normal_metabolizer_starts_at_the_label_lower_figure():
    for name in ("d06_nm_no_weight_ra_150", "c42_future_weight"):
        cards = _by_rule(_cards(name))
        start = cards["dose-new-start"]
        assert "start at 50 mg/day" in start["summary"], name
        assert "upper figure" not in start["detail"] and "100 mg/day" not in start["summary"]
        assert "start at 50 mg/day" in cards["weight-missing"]["detail"], name
        assert "start at 100" not in cards["weight-missing"]["detail"]


def test_m3_the_elderly_rule_is_unchanged():
    cards = _cards("c14_old87_no_weight")
    assert any("start at 50 mg/day" in c["detail"] and "an older patient" in c["detail"] for c in cards)


# ------------------------------------------------------------ M2: one start figure on an order: the plan's

def test_m2_im_no_weight_weight_card_names_the_planned_dose():
    cards = _by_rule(_cards("d07_im_no_weight_ra_150"))
    detail = cards["weight-missing"]["detail"]
    assert "start at 100" not in detail
    assert "start at 50 mg/day" in detail and "Recommended dose for this azathioprine order: 50 mg" in detail


def test_m2_class_a_plan_below_the_start_is_the_figure_the_weight_card_names():
    cards = _by_rule(_cards("s17_d06_with_allopurinol"))  # allopurinol's 1/4-1/3 of the 50 mg start
    detail = cards["weight-missing"]["detail"]
    assert "start at 50 mg/day" not in detail and "start at 100 mg/day" not in detail
    assert "the dose recommended below for this order" in detail
    planned = detail.split("**Recommended dose for this azathioprine order: ")[1].split("**")[0]
    assert f"start at {planned.split(' (')[0]}" in detail


# ------------------------------------------------------------ m8: a per-kg start above the label's 50-100 mg

def test_m8_heavy_patient_start_is_the_label_upper_figure_and_says_why():
    start = _by_rule(_cards("c32_nm_heavy_ra_200"))["dose-new-start"]  # 120 kg
    assert "start at 100 mg/day" in start["summary"]
    assert "125" not in start["summary"]
    assert "120 kg = 120 mg is above the label's absolute figures, 50 to 100 mg" in start["detail"]
