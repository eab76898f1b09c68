"""Round-20 review H1 and m1: a dose held for toxicity (or followed by a low count) gets a card whatever the genotype;
a hold for a stated non-toxic reason, with counts never low, leaves the dose a tolerated one.

H1: a renewal (or restart) of a thiopurine dose that is not a tolerated dose (``rules.common.dose_not_tolerated``)
gets ``restart-not-tolerated`` (``rules.monitoring.restart_not_tolerated_findings``) when no TPMT/NUDT15 or
allopurinol card already says it: it names the hold (statusReason as sent) and the low count, advises not to
restart at the same dose without the specialist's review, suggests no dose (no source gives a restart figure), and
asks for the CBC weekly after the restart (Imuran label, BSR/BHPR 2017, CPIC 2018).
m1: only a hold with no reason, a code-only reason, or a reason naming a toxicity (monitoring.toml [hold]
toxic_words) counts on its own.
Cases from the reviewer (tests/data/review20/) and variants built from them, evaluated on 2026-12-08.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rules.common import hold_may_be_toxic
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review20"
DAY = date(2026, 12, 8)
RULE = "restart-not-tolerated"


def _request(name: str) -> dict[str, Any]:
    (path,) = CASES.glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict[str, Any]) -> list[dict]:
    return case_cards(request, DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _prior(request: dict[str, Any], ref_id: str = "aza-old") -> dict[str, Any]:
    for group in request["prefetch"].values():
        for entry in (group or {}).get("entry", []) if isinstance(group, dict) else []:
            if entry["resource"].get("id") == ref_id:
                return entry["resource"]
    raise AssertionError(ref_id)


def _draft(request: dict[str, Any]) -> dict[str, Any]:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def _set_dose(resource: dict[str, Any], mg: float) -> None:
    resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg


# ------------------------------------------------------------------ H1
def test_normal_metabolizer_renewal_after_a_neutropenic_hold_gets_a_warning():
    cards = _cards(_request("r20-60"))
    (card,) = _topic(cards, RULE)
    assert card["indicator"] == "warning"
    summary = card["summary"]
    assert summary.startswith("Azathioprine 150 mg/day: on hold ('neutropenia'), neutrophils 0.7 LL (2026-11-15)")
    assert "specialist review before same dose; CBC weekly" in summary
    detail = card["detail"]
    assert "statusReason as sent: 'neutropenia'" in detail
    assert "neutrophils 0.7 ×10⁹/L (flagged LL) (2026-11-15)" in detail
    assert "Do not restart at the same dose (150 mg/day) without the specialist team's review" in detail
    assert "**CBC weekly**" in detail and "after the restart" in detail
    assert "suggests none" in detail
    assert not card.get("suggestions")  # no one-click dose: no source gives a restart figure
    assert not _topic(cards, "pgx-")


def test_platelet_hold_recovered_still_gets_the_warning():
    (card,) = _topic(_cards(_request("r20-26")), RULE)
    assert card["indicator"] == "warning"
    assert "platelets 45 LL (2026-11-12)" in card["summary"]
    assert "statusReason as sent: 'thrombocytopenia'" in card["detail"]
    assert not card.get("suggestions")


def test_a_toxic_hold_with_counts_never_low_still_gets_the_warning():
    request = _request("r20-60")
    request["prefetch"]["labs"]["entry"] = [
        e for e in request["prefetch"]["labs"]["entry"] if e["resource"].get("effectiveDateTime", "") >= "2026-12-01"]
    (card,) = _topic(_cards(request), RULE)
    assert "on hold ('neutropenia')" in card["summary"]
    assert "flagged LL" not in card["detail"]


@pytest.mark.parametrize("reason", [None, "12345678"])
def test_a_hold_with_no_reason_or_a_code_only_reason_counts(reason):
    request = _request("r20-22")
    prior = _prior(request)
    if reason is None:
        prior.pop("statusReason", None)
    else:
        prior["statusReason"] = {"coding": [{"system": "http://snomed.info/sct", "code": reason}]}
    (card,) = _topic(_cards(request), RULE)
    assert card["indicator"] == "warning"
    assert ("(no reason)" in card["summary"]) if reason is None else (f"'{reason}'" in card["summary"])


def test_a_reduced_restart_is_info_with_weekly_cbc():
    request = _request("r20-60")
    _set_dose(_draft(request), 75)
    (card,) = _topic(_cards(request), RULE)
    assert card["indicator"] == "info"
    assert "reduced restart per specialist, CBC weekly" in card["summary"]
    assert "lower than the dose taken before (150 mg/day)" in card["detail"]


def test_one_order_one_answer_pgx_and_allopurinol_cards_say_it():
    """An intermediate metabolizer (r20-61) and an allopurinol combination (r20-62): their own cards name the hold."""
    for name in ("r20-61", "r20-62"):
        cards = _cards(_request(name))
        assert not _topic(cards, RULE), name
        assert any("on hold" in c["summary"] or "on hold" in c["detail"] for c in cards), name


def test_a_count_low_now_gets_the_withhold_card_only():
    """r20-25: neutrophils 1.4 now: the BSR withhold card says it; no second card about the same count."""
    cards = _cards(_request("r20-25"))
    assert [c["source"]["topic"]["code"] for c in cards] == ["cytopenia"]


# ------------------------------------------------------------------ m1
def test_hold_for_surgery_with_normal_counts_is_a_tolerated_dose():
    cards = _cards(_request("r20-23"))
    (card,) = _topic(cards, "pgx-")
    assert card["indicator"] == "info"
    assert "Not an established, tolerated dose" not in card["detail"]
    assert "restart within the reduced range" not in card["summary"]
    assert not _topic(cards, RULE)
    assert not _topic(_cards(_request("r20-22")), RULE)


def test_hold_for_surgery_with_a_low_count_is_not_tolerated_and_quotes_the_reason():
    request = _request("r20-60")
    _prior(request)["statusReason"] = {"text": "held for surgery"}
    (card,) = _topic(_cards(request), RULE)
    assert "on hold ('held for surgery'), neutrophils 0.7 LL" in card["summary"]
    assert "statusReason as sent: 'held for surgery'" in card["detail"]


@pytest.mark.parametrize("reason, toxic", [
    ("neutropenia", True), ("Held - NEUTROPENIC", True), ("low counts", True), ("pancreatitis", True),
    ("hepatotoxicity (ALT 300)", True), ("myelosuppression", True), ("", True), ("386661006", True),
    ("held for surgery", False), ("patient request", False), ("travel", False)])
def test_hold_reason_words(reason, toxic):
    assert hold_may_be_toxic(reason) is toxic
