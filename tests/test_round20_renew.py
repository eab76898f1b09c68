"""Round-20 review M2, m5, m3 (renewals, duplicates, a child's renal lowest start).

M2: an ended (completed, stopped) order whose recorded end (validityPeriod.end, a dosage's boundsPeriod.end, else the end
of its expected supply) is more than monitoring.toml ``restart_after_days`` before the draft is not therapy taken now:
a renewal naming it, or a draft with only such records, is a restart (a new start for every rule). A completed order
with no end given stays continued therapy (round-18 H1).
m5: three thiopurines of one duplicate problem give one duplicate card, not two pairwise ones.
m3: mercaptopurine's renal lowest start: the oral suspension is measured to the per-m² figure in a child too.
Cases from the reviewer (tests/data/review20/), evaluated on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review20"
DAY = date(2026, 12, 8)


def _request(name: str) -> dict[str, Any]:
    path = next(CASES.glob(f"{name}-*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict[str, Any]) -> list[dict]:
    return case_cards(request, DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _updates(cards: list[dict]) -> list[str]:
    return [s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")]


def _old_order(request: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in request["prefetch"]["past_medications"]["entry"]
                if e["resource"]["resourceType"] == "MedicationRequest")


def _with_old(dispense: dict[str, Any] | None, authored: str = "2018-01-10", link: bool = True) -> dict[str, Any]:
    """r20-27 with the old completed order's dispenseRequest (None: none) and authoredOn replaced."""
    request = copy.deepcopy(_request("r20-27"))
    old = _old_order(request)
    old["authoredOn"] = authored
    if dispense is None:
        old.pop("dispenseRequest", None)
    else:
        old["dispenseRequest"] = dispense
    if not link:
        request["context"]["draftOrders"]["entry"][0]["resource"].pop("priorPrescription")
    return request


# ------------------------------------------------------------------ M2
def test_renewal_of_a_course_completed_in_2019_is_a_restart():
    (card,) = _topic(_cards(_request("r20-27")), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert card["indicator"] == "warning"
    assert "restart after a stop" in card["summary"] and "reduce to 50 mg/day (range 42-70 mg/day)" in card["summary"]
    assert "completed on 2019-06-30, more than 28 days" in card["detail"]
    assert "it is not cut" not in card["detail"]
    assert _updates([card]) == ["Change to azathioprine 50 mg once daily"]


def test_recent_end_of_the_renewed_order_is_still_established_therapy():
    cards = _cards(_with_old({"validityPeriod": {"start": "2026-06-01", "end": "2026-11-20"}}, authored="2026-06-01"))
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-dose-in-reduced-range"
    assert "restart" not in card["summary"] and not _updates(cards)


def test_completed_order_with_no_end_given_stays_the_prescribers_word():
    """Round-18 H1 unchanged: authoredOn alone is only a lower bound of when the order ended."""
    (card,) = _topic(_cards(_with_old(None, authored="2018-01-10")), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-dose-in-reduced-range"


@pytest.mark.parametrize(("repeats", "restart"), [(2, True), (5, False)])
def test_expected_supply_end_counts_as_the_recorded_end(repeats, restart):
    """30 days x (1 + repeats) from 2026-06-01: 2026-08-30 (over 28 days before 2026-12-08) or 2026-11-28."""
    dispense = {"expectedSupplyDuration": {"value": 30, "unit": "days", "system": "http://unitsofmeasure.org",
                                           "code": "d"}, "numberOfRepeatsAllowed": repeats}
    (card,) = _topic(_cards(_with_old(dispense, authored="2026-06-01")), "pgx-")
    assert (card["source"]["topic"]["code"] == "pgx-reduce-dose") is restart
    assert ("restart after a stop" in card["summary"]) is restart


def test_old_completed_course_without_a_link_is_a_new_start():
    (card,) = _topic(_cards(_with_old({"validityPeriod": {"start": "2018-01-10", "end": "2019-06-30"}},
                                      link=False)), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "reduce to 50 mg/day (range 42-70 mg/day)" in card["summary"]


def test_supply_end_reader():
    from fhir_mappers.build import _end_date

    dispense: dict[str, Any] = {"expectedSupplyDuration": {"value": 4, "code": "wk"}, "numberOfRepeatsAllowed": 1}
    mr: dict[str, Any] = {"authoredOn": "2026-01-01", "dispenseRequest": dispense}
    assert _end_date(mr) == date(2026, 2, 26)
    dispense["validityPeriod"] = {"start": "2026-02-01"}
    assert _end_date(mr) == date(2026, 3, 29)
    dispense["validityPeriod"] = {"start": "2026-02-01", "end": "2026-05-01"}  # a validity end comes first
    assert _end_date(mr) == date(2026, 5, 1)
    assert _end_date({"authoredOn": "2026-01-01", "dispenseRequest": {"expectedSupplyDuration": {"value": 3}}}) is None


def test_restart_bound_is_cited_knowledge():
    from rules.knowledge_base import load

    cbc = load().monitoring.cbc
    assert cbc.restart_after_days == 28
    assert load().source(cbc.restart_after_source)


# ------------------------------------------------------------------ m5
def test_three_thiopurines_one_duplicate_card():
    cards = _cards(_request("r20-31"))
    dup = _topic(cards, "duplicate-thiopurine")
    assert len(dup) == 1 and dup[0]["indicator"] == "critical"
    assert "thioguanine" in dup[0]["summary"].lower()
    assert "mercaptopurine" in dup[0]["detail"].lower()  # the switched order is named on the one card
    labels = {s["label"] for s in dup[0].get("suggestions", [])}
    assert any("azathioprine" in lab for lab in labels) and any("thioguanine" in lab for lab in labels)
    assert len(_topic(cards, "thiopurine-switch")) == 1


def test_two_drafts_switching_each_other_still_one_card():
    assert len(_topic(_cards(_request("r20-34")), "duplicate-thiopurine")) == 1


# ------------------------------------------------------------------ m3
def test_child_suspension_measured_to_the_per_m2_lowest_start():
    (card,) = _topic(_cards(_request("r20-42")), "renal-impairment")
    assert "give 40 mg/day (suspension)" in card["summary"]
    assert _updates([card]) == ["Change to mercaptopurine 40 mg (2 mL) once daily"]


def test_child_tablets_keep_the_simplest_regimen_inside_the_range():
    (card,) = _topic(_cards(_request("r20-44")), "renal-impairment")
    assert "give 50/25 mg alternate days (label's lowest start 38-47 mg)" in card["summary"]
