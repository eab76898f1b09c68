"""Round-10 H2 follow-up: a kidney-transplant start held to the maintenance maximum because no recent transplant is
on record says so on its card, and names the label's initial range, so that a start in the first weeks after
transplant is not cut unseen. The round-7 reviewer's c07 (an undated "Kidney transplant" Condition, azathioprine
280 mg = 4 mg/kg/day, a new start): before round 10 the 3-5 mg/kg/day initial range applied and no card was given;
now the maintenance maximum applies and the card explains why. With the transplant dated 10 days ago, the initial
range applies again and the order is not cut."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

CASE = Path(__file__).parent / "data" / "review10" / "r7-c07-ktx-early-4mgkg.json"


def _above(cards: list[dict]) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == "dose-above-range"]


def test_an_undated_transplant_start_is_held_to_maintenance_and_the_card_says_why() -> None:
    (card,) = _above(case_cards(json.loads(CASE.read_text())))
    assert "held to the maintenance maximum" in card["detail"]
    # round-11 M1: the reason is true of what was read (the undated transplant Condition is named)
    assert "no kidney transplant dated within the last 30 days is on record" in card["detail"]
    assert "a Condition, not dated" in card["detail"]
    assert "initial dose is 3-5 mg/kg/day" in card["detail"]


def test_a_recent_transplant_keeps_the_initial_range() -> None:
    req = copy.deepcopy(json.loads(CASE.read_text()))
    for e in req["prefetch"]["conditions"]["entry"]:
        e["resource"]["onsetDateTime"] = "2026-11-27"
    assert _above(case_cards(req)) == []


def test_a_maintenance_order_above_the_range_gets_no_induction_note() -> None:
    req = copy.deepcopy(json.loads(CASE.read_text()))
    for e in req["prefetch"]["conditions"]["entry"]:
        e["resource"]["onsetDateTime"] = "2015-03-01"
    # an active azathioprine order on record: not a new start, so no word on the initial range
    active = copy.deepcopy(req["context"]["draftOrders"]["entry"][0]["resource"])
    active.update(id="aza-active", status="active", authoredOn="2026-06-01")
    req["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": active}]}
    cards = _above(case_cards(req))
    assert cards and all("held to the maintenance maximum" not in c["detail"] for c in cards)



def test_a_pgx_reduction_on_the_maintenance_basis_says_why() -> None:
    """Every card that states the basis of a reduction says it is the maintenance basis and names the initial range:
    the round-10 reviewer's c88 (an undated kidney transplant, TPMT intermediate, azathioprine 125 mg, a new start)."""
    (path,) = CASE.parent.glob("c88-*.json")
    cards = [c for c in case_cards(json.loads(path.read_text())) if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert cards
    assert "the maintenance basis, as no kidney transplant dated within the last 30 days is on record" in cards[0]["detail"]
    assert "initial dose is 3-5 mg/kg/day" in cards[0]["detail"]
