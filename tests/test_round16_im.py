"""Round-16 review M1, M2: a TPMT/NUDT15 intermediate metabolizer's new start gets one figure, whatever dose was
typed, and never a higher start than a normal metabolizer on the same order.

CPIC 2018 Table 2: "30-80 % of normal dose if normal starting dose is 2-3 mg/kg/day": the band is of the patient's
normal dose (2 mg/kg x weight), never of the dose ordered; the label's starting dose (round-14 H1) caps it.
Cases from the reviewer (tests/data/review16/: RA 70 kg unless named), evaluated on 2026-12-07.
"""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from tests.builders import days_ago, med_request, weight
from tests.review_cases import case_cards
from tests.test_cards_catalogue import ALLO, LN, TPMT_IM, condition, evaluate, one

RA = condition("69896004")  # rheumatoid arthritis (the headline example's code)

CASES = Path(__file__).resolve().parent / "data" / "review16"
DAY = date(2026, 12, 7)


def _cards(name: str) -> list[dict]:
    return case_cards(json.loads((CASES / f"{name}.json").read_text(encoding="utf-8")), DAY)


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


def _rules(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


# M1: one answer for one patient, whatever was typed (was: 100 kept, 150 -> 75, 200/250 -> 50)
@pytest.mark.parametrize("dose", [100, 150, 200, 250])
def test_im_new_start_one_figure_whatever_was_ordered(dose):
    cards = _cards(f"c01_im_newstart_{dose}")
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert "reduce to 50 mg/day (range 42-70 mg/day)" in card["summary"], card["summary"]
    assert "from the normal dose 2.0 mg/kg/day × 70 kg = 140 mg/day" in card["detail"]
    assert "the dose ordered" not in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 50 mg once daily"}


# M1 with allopurinol: allopurinol's 1/4-1/3 of the 75 mg start (18.75-25), the IM band capping it: 25 mg/day for
# every order (was 25 mg every other day at 100, 200 and 250, 25 mg/day at 150); the same as without the IM result
@pytest.mark.parametrize("dose", [100, 150, 200, 250])
def test_im_and_allopurinol_new_start_one_figure(dose):
    cards = _cards(f"c03_allo_im_newstart_{dose}")
    assert _updates(cards) == {"Change to azathioprine 25 mg once daily"}
    assert all(c["summary"].endswith("25 mg/day") for c in cards if c["indicator"] != "info"), \
        [c["summary"] for c in cards]
    assert not any("every other day" in c["summary"] for c in cards)
    assert _updates(_cards("c02_allo_newstart_150")) == _updates(cards)


# M1 beyond a start regimen: an IBD new start (no start cap; IBD starts at its target dose) takes the band of the
# normal dose too (was 150 -> 75, 200 -> 50)
@pytest.mark.parametrize("name", ["c11_crohn_newstart_im_150", "c12_crohn_newstart_im_200"])
def test_ibd_new_start_band_of_the_normal_dose(name):
    cards = _cards(name)
    assert any("reduce to 50 mg/day (range 42-70 mg/day)" in c["summary"] for c in cards), [c["summary"] for c in cards]


# M2: an intermediate metabolizer never starts higher than a normal metabolizer on the same order (100 mg)
@pytest.mark.parametrize("im,nm", [("c01_im_newstart_100", "b01_lab_range_low_normal"),
                                   ("b02_arup_range_text", "b06_expected_gt25"),
                                   ("b08_three_bands", "b17_above"),
                                   ("b19_newline_bands", "b25_ARUP_style"),
                                   ("b26_sep_comma_space_range", "b01_lab_range_low_normal"),
                                   ("b27_uk_mU", "b06_expected_gt25")])
def test_im_start_not_above_the_normal_metabolizer_start(im, nm):
    normal = _cards(nm)
    assert any("start at 75 mg/day" in c["summary"] for c in normal), [c["summary"] for c in normal]
    cards = _cards(im)
    assert "pgx-dose-in-reduced-range" not in _rules(cards)
    summaries = " ".join(c["summary"] for c in cards)
    assert "reduce to 50 mg/day" in summaries, summaries
    figures = [int(x) for x in re.findall(r"reduce to (\d+) mg/day", summaries)]
    assert figures and max(figures) <= 75
    assert not any("more conservative figure above is for a new or changed dose" in (c.get("detail") or "")
                   for c in cards)


def _lupus_im(dose: int, kg: float = 70, guideline: str = "cpic", allo: bool = False, ra: bool = False):
    return evaluate([med_request(daily_mg=dose)], guideline=guideline, pgx=TPMT_IM, weights=[weight(kg)],
                    conditions=[RA if ra else LN], **({"meds": [ALLO]} if allo else {}))


# an order at or under the start (and inside CPIC's band) is not cut; the card says it is a new start under the
# start dose, not "the more conservative figure is for a new or changed dose"
def test_order_at_the_start_inside_the_band_is_not_cut():
    found = _lupus_im(75)
    f = one(found, "pgx-dose-in-reduced-range")
    assert f.dose is None or f.values["accept_high"] >= 75
    assert not [a for x in found for a in x.actions if hasattr(a, "regimen")]
    # following the advice and signing again gives no new dose
    again = _lupus_im(50)
    assert not [a for x in again for a in x.actions if hasattr(a, "regimen")]


@pytest.mark.parametrize("dose", [100, 150, 200])
def test_new_start_above_the_start_is_cut_to_one_figure(dose):
    found = _lupus_im(dose)
    doses = {a.regimen.avg_daily_mg for x in found for a in x.actions if hasattr(a, "regimen")}
    assert doses == {50}


# DPWG (50 % of the normal dose, a point figure), rheumatoid arthritis 72 kg (the README example): one figure too, of
# the normal dose (72 mg -> 75/50 mg alternate days), whatever was ordered, not 50 % of the 150 mg typed (was 75 mg)
@pytest.mark.parametrize("dose", [150, 200, 250])
def test_dpwg_new_start_of_the_normal_dose(dose):
    found = _lupus_im(dose, kg=72, guideline="dpwg", ra=True)
    f = one(found, "pgx-reduce-dose")
    assert round(f.values["high"]) == 72 and round(f.values["reference"]) == 144
    doses = {round(a.regimen.avg_daily_mg, 1) for x in found for a in x.actions if hasattr(a, "regimen")}
    assert doses == {62.5}


# established therapy is unchanged (no start cap): 100 mg beside an active 100 mg order stays accepted inside CPIC's
# 30-80 % (a new start at 100 mg is cut to 50 mg above)
def test_established_therapy_has_no_start_cap():
    active = med_request(id="aza-old", status="active", daily_mg=100, authored=days_ago(400))
    found = evaluate([med_request(daily_mg=100)], pgx=TPMT_IM, weights=[weight(70)], conditions=[LN], meds=[active])
    f = one(found, "pgx-dose-in-reduced-range")
    assert f.values["accept_how"] == "band" and "new_start_cap" not in f.values["basis"]
