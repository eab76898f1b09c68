"""Round-15 review M1, M2, M4: a new start's dose is one figure, whatever was ordered above the start.

Cases from the reviewer (tests/data/review15/), evaluated on 2026-12-07.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review15"
DAY = date(2026, 12, 7)


def _cards(prefix: str) -> list[dict]:
    path = next(CASES.glob(f"{prefix}_*.json"))
    return case_cards(json.loads(path.read_text(encoding="utf-8")), DAY)


def _updates(cards: list[dict]) -> list[str]:
    return [s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")]


# M1: RA, 70 kg, new start (label start about 1 mg/kg = 75 mg): allopurinol's 1/4-1/3 of 75 mg, whatever the order
@pytest.mark.parametrize("case", ["a07", "a08", "a18"])
def test_allopurinol_new_start_fraction_of_the_label_start(case):
    cards = _cards(case)
    assert set(_updates(cards)) == {"Change to azathioprine 25 mg once daily"}
    assert all("25 mg/day" in c["summary"] for c in cards if c["indicator"] != "info"), [c["summary"] for c in cards]


# M1 is scoped to allopurinol's fraction: CPIC's TPMT intermediate band is a fraction of the NORMAL dose ("30-80 % of
# normal dose if normal starting dose is 2-3 mg/kg/day", e.g. 0.6-2.4 mg/kg/day), never of the RA label's 1 mg/kg start
# (30-50 % of 75 mg would be 0.3-0.5 mg/kg/day, under CPIC's own floor): a15/a16 stay within CPIC's band; round-16 M1:
# of the patient's normal dose, never of the dose ordered (a15 got 75 mg of its 150 mg), so both get one answer
@pytest.mark.parametrize("case,figure", [("a15", "50 mg/day (range 42-70 mg/day)"), ("a16", "50 mg/day (range 42-70 mg/day)")])
def test_tpmt_im_new_start_band_stays_of_the_normal_dose(case, figure):
    cards = _cards(case)
    assert any(figure in c["summary"] for c in cards), [c["summary"] for c in cards]
    assert not any("23-37.5" in c["summary"] for c in cards)


def test_allopurinol_new_start_same_answer_for_150_and_250():
    assert _updates(_cards("a07")) == _updates(_cards("a08"))
    assert all("25 mg/day" in c["summary"] for c in _cards("a07") if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase")


# M2: a recognised indication without a range of its own takes the general start (as the unknown indication, a02)
@pytest.mark.parametrize("case", ["e01", "e05", "e06", "a02"])
def test_recognised_without_range_starts_like_unknown(case):
    cards = _cards(case)
    assert _updates(cards) == ["Change to azathioprine 50 mg once daily"]
    assert any("start at 50 mg/day" in c["summary"] for c in cards)
    assert not any("175" in c["summary"] for c in cards)


# kept: IBD (no start titration), a recent transplant and a renewal are brought to the maximum as before
@pytest.mark.parametrize("case,figure", [("a04", "175"), ("a05", "300"), ("a06", "175")])
def test_no_start_regimen_keeps_the_maximum(case, figure):
    assert _updates(_cards(case)) == [f"Change to azathioprine {figure} mg once daily"]


def test_order_at_the_start_gets_no_card():
    assert _cards("a11") == []


# M4: 92 years, no weight: the low end of the label's start (50 mg), never "the label's upper figure"
def test_elderly_without_weight_starts_at_the_low_end():
    cards = _cards("a14")
    text = " ".join(c["summary"] + c.get("detail", "") for c in cards)
    assert "start at 50 mg/day" in text
    assert "upper figure" not in text and "start at 100 mg/day" not in text.lower()


def test_elderly_without_weight_weight_card_names_the_same_start():
    (weight_card,) = [c for c in _cards("a14") if c["source"]["topic"]["code"] == "weight-missing"]
    assert "start at 50 mg/day" in weight_card["detail"]
    assert "not a dose to give" in weight_card["detail"]  # the 125 mg/day reference maximum is a check only


# m3: an ALL start is cut to the nearest measurable volume inside the accepted margin (3 mL = 60 mg, g01 accepts it)
def test_all_start_cut_to_the_nearest_syringe_volume():
    assert _updates(_cards("g02")) == ["Change to mercaptopurine 60 mg (3 mL) once daily"]
    assert _cards("g01") == []
