"""Round-21 review H1 and H3 (cases from the reviewer, tests/data/review21/, evaluated on 2026-12-08).

H1: a hold whose statusReason names a low count the way wards write it ("ANC 0.6 on 10/11 - held", "plt 40", "low
neuts"), or gives an unclear reason ("per haematology", "unwell"), is not a hold for another reason: only a reason
naming a known other reason (monitoring.toml [hold] benign_words: surgery, pregnancy planning...) and no toxic word
leaves the dose tolerated. A reason the list does not know is never read as benign.
H3: "2 u RBC" and "RBC x2" are red-cell transfusions (a unit written "u", a count written "x2").
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from rules.common import hold_may_be_toxic
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review21"
DAY = date(2026, 12, 8)


def _request(prefix: str) -> dict:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _rules(request: dict) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in case_cards(request, DAY)}


# ------------------------------------------------------------------ H1
def test_hold_for_a_count_written_as_a_number_gets_the_restart_warning():
    card = _rules(_request("r21-01"))["restart-not-tolerated"]
    assert card["indicator"] == "warning"
    assert "on hold ('ANC 0.6 on 10/11 - held')" in card["summary"]
    assert "specialist review before same dose" in card["summary"]


def _with_reason(request: dict, reason: str) -> dict:
    request = copy.deepcopy(request)
    found = 0
    for key in ("medications", "past_medications"):
        for entry in (request.get("prefetch", {}).get(key) or {}).get("entry", []):
            r = entry.get("resource", {})
            if r.get("status") == "on-hold":
                r["statusReason"] = [{"text": reason}]
                found += 1
    assert found
    return request


@pytest.mark.parametrize("reason", ["WBC 2.1", "low neuts", "plt 40", "ANC low", "abnormal bloods", "per haematology",
                                    "unwell", "surgery; low platelets"])
def test_reasons_that_may_be_a_toxicity_keep_the_warning(reason: str):
    assert hold_may_be_toxic(reason)
    assert "restart-not-tolerated" in _rules(_with_reason(_request("r21-01"), reason))


@pytest.mark.parametrize("reason", ["held for surgery", "held for pregnancy planning", "Pre-op hold", "patient travel"])
def test_a_stated_other_reason_with_normal_counts_is_no_toxicity(reason: str):
    assert not hold_may_be_toxic(reason)
    assert "restart-not-tolerated" not in _rules(_with_reason(_request("r21-01"), reason))


# ------------------------------------------------------------------ H3
def _procedure_text(request: dict, text: str) -> dict:
    request = copy.deepcopy(request)
    found = 0
    for value in request.get("prefetch", {}).values():
        for entry in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            r = entry.get("resource", {})
            if r.get("resourceType") == "Procedure":
                r["code"] = {"text": text}
                found += 1
    assert found
    return request


@pytest.mark.parametrize("text", ["2 u RBC", "RBC x2", "2 units RBC", "PRBCs"])
def test_red_cells_written_short_are_a_transfusion(text: str):
    cards = case_cards(_procedure_text(_request("r21-14"), text), DAY)
    assert any("after a transfusion: unreliable; genotype TPMT" in c["summary"] for c in cards), text


@pytest.mark.parametrize("text", ["RBC folate", "Red cell antibody screen", "Albumin 5% 250 mL given"])
def test_tests_and_other_products_are_still_no_transfusion(text: str):
    cards = case_cards(_procedure_text(_request("r21-14"), text), DAY)
    assert not any("after a transfusion" in c["summary"] for c in cards), text


# ------------------------------------------------------------------ H2
def test_switch_from_a_held_toxic_dose_is_a_restart_after_that_toxicity():
    """r21-12: azathioprine 150 mg on hold after neutrophils 0.7 LL; a mercaptopurine draft names it as the order it
    replaces. The switch note alone said nothing of the hold or the count."""
    rules = _rules(_request("r21-12"))
    card = rules["restart-not-tolerated"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Mercaptopurine 75 mg/day: switch from azathioprine on hold")
    assert "neutrophils 0.7" in card["summary"] and "CBC weekly" in card["summary"]
    assert "This order switches from azathioprine, whose dose was not tolerated" in card["detail"]
    assert "thiopurine-switch" in rules  # the note to end the azathioprine order stays
