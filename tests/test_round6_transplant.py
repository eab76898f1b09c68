"""Round-6 review, m6: liver (Z94.4) and heart (Z94.1) transplant are recognised indications, with no dose range
applied (off-label for the Imuran label, whose range is for renal homotransplantation; no cited range in the
service's sources): no "indication not recognised" card, and no start regimen or maximum. Kidney (c58) unchanged.
Built from the reviewer's c43, c44, c58 (tests/data/review6)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules.dose import range_spec
from rules.knowledge_base import load
from rules.knowledge_schema import Indication
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review6"


def _case(prefix: str) -> dict:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request)


@pytest.mark.parametrize("case", ["c43", "c44", "c58"])
def test_transplant_recognised_no_card(case: str) -> None:
    cards = _cards(_case(case))
    assert not any("not recognised" in c["summary"] for c in cards)
    assert [c["source"]["topic"]["code"] for c in cards] == []


@pytest.mark.parametrize("key", ["liver_transplant", "heart_transplant"])
def test_no_dose_range_is_applied(key: str) -> None:
    spec = load().dosing.indications[key]
    assert spec.max_mg_per_kg is None and "no cited dose range" in spec.range_text
    applied = range_spec("azathioprine", key)
    # no start regimen of its own; the general maximum for an indication without its own range still applies
    assert isinstance(applied, Indication) and applied.no_start_titration and applied.name == spec.name
    assert applied.max_mg_per_kg == load().dosing.indications["unknown"].max_mg_per_kg


@pytest.mark.parametrize("case", ["c43", "c44"])
def test_a_very_high_dose_after_liver_or_heart_transplant_still_meets_the_general_maximum(case: str) -> None:
    """Recognising the indication does not drop the check an unrecognised one had: 400 mg is above the general
    3 mg/kg/day, named for the transplant."""
    r = _case(case)
    aza = r["context"]["draftOrders"]["entry"][0]["resource"]
    aza["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 400
    (card,) = [c for c in _cards(r) if c["source"]["topic"]["code"] == "dose-above-range"]
    assert "transplant" in card["summary"] and "not recognised" not in card["summary"]
    assert "no range of its own is cited" in card["detail"]
