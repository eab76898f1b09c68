"""Round-16 M3: a TPMT/NUDT15 result dated after today is set aside (round-14 H2), and the card says what it reads:
a set-aside *3A/*3A reads poor metabolizer, so the card is critical and names CPIC's alternative until the result is
checked; a set-aside *1/*1 stays a warning. Never worded as garbled text."""
from __future__ import annotations

import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review16"


def _card(name: str, rule: str) -> dict:
    req = json.loads(next(CASES.glob(f"{name}_*.json")).read_text(encoding="utf-8"))
    return next(c for c in case_cards(req) if c["source"]["topic"]["code"] == rule)


def test_future_dated_poor_metabolizer_result_is_named_and_critical():
    card = _card("e02", "pgx-uninterpretable")
    assert card["indicator"] == "critical"
    assert "'*3A/*3A' (poor metabolizer) dated 2027-05-01, after today: set aside" in card["summary"]
    assert len(card["summary"]) < 140
    assert "non-thiopurine alternative" in card["detail"] and "confirm the result before any start" in card["detail"]


def test_future_dated_normal_result_is_named_and_stays_a_warning():
    card = _card("e03", "pgx-uninterpretable")
    assert card["indicator"] == "warning"
    assert "(normal metabolizer) dated 2027-05-01, after today: set aside" in card["summary"]
    assert "non-thiopurine alternative" not in card["detail"]



def test_round16_m3_an_option_only_suggestion_says_it_is_not_recommended():
    """Round-16 m3 (a09: febuxostat active, established azathioprine renewed): cancelling the thiopurine is only an
    option: isRecommended is false on it (CDS Hooks 2.0 suggestion.isRecommended), not left unset."""
    card = _card("a09", "interaction-xanthine-oxidase")
    assert card["suggestions"] and all(s.get("isRecommended") is False for s in card["suggestions"])
