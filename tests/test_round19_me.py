"""Round-19 review m3 and m12 (cases from the reviewer, tests/data/review19/, evaluated on 2026-12-08).

m3: the severe-cytopenia card names every count below the BSR/BHPR 2017 thresholds beside the grade-3 one (the BSR
card is superseded by the stop, so white cells 2.4 and platelets 88 appeared on no card).
m12: a value quoted as sent is never cut mid-word without saying so ("'PLATELET CLUMPS PRESENT '",
"UNABLE TO COUN"): ``fhir_mappers.fhirjson.clip`` shortens at a word and ends with "…".
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.fhirjson import clip
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)


def _cards(prefix: str) -> dict[str, dict]:
    (path,) = CASES.glob(f"{prefix}-*.json")
    cards = case_cards(json.loads(path.read_text(encoding="utf-8")), DAY)
    return {c["source"]["topic"]["code"]: c for c in cards}


# ------------------------------------------------------------------ m3
def test_severe_card_names_the_other_low_counts_and_cites_bsr():
    cards = _cards("r19-30")
    severe = cards["cytopenia-severe"]
    assert severe["indicator"] == "critical"
    assert "cytopenia" not in cards  # still one card: the stop supersedes the BSR withhold
    assert "Also below the BSR 2017 action thresholds: white cells 2.4 ×10⁹/L (2026-12-05); platelets 88 ×10⁹/L" \
        in severe["detail"]
    assert "Ledingham" in severe["detail"]  # the BSR thresholds are cited where they are used


def test_severe_anaemia_card_names_low_white_cells_and_platelets():
    severe = _cards("r19-37")["cytopenia-severe"]
    assert "haemoglobin 74 g/L" in severe["summary"]
    assert "white cells 3.1 ×10⁹/L" in severe["detail"] and "platelets 130 ×10⁹/L" in severe["detail"]


# ------------------------------------------------------------------ m12
def test_unreadable_platelet_text_is_quoted_whole_in_the_detail_and_marked_shortened_in_the_summary():
    card = _cards("r19-31")["data-incomplete"]
    assert "'PLATELET CLUMPS PRESENT…'" in card["summary"]
    assert "a result reads 'PLATELET CLUMPS PRESENT - UNABLE TO COUNT' and has no numeric value" in card["detail"]
    assert "COUN'" not in card["detail"]


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("<15", 24, "<15"),
    ("PLATELET CLUMPS PRESENT - UNABLE TO COUNT", 24, "PLATELET CLUMPS PRESENT…"),  # the cut falls on a blank
    ("PLATELET CLUMPS PRESENT - UNABLE TO COUNT", 40, "PLATELET CLUMPS PRESENT - UNABLE TO…"),  # back to a word
    ("x" * 70, 60, "x" * 59 + "…"),  # one long word: cut inside it, marked
    ("a " + "y" * 70, 30, "a " + "y" * 27 + "…"),  # the only blank is in the first half: not backed off to
])
def test_clip_shortens_at_a_word_and_says_so(text: str, limit: int, expected: str):
    assert clip(text, limit) == expected
    assert len(clip(text, limit)) <= limit
