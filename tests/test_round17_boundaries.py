"""The cut-offs rounds 17 and 18 added, pinned at their boundaries (the reviewer's cases, one value moved):

- TPMT activity after a red-cell transfusion (monitoring.toml [tpmt_activity.transfusion] window_days = 90): an
  activity 90 days after the transfusion is unreliable, one 91 days after is read;
- mercaptopurine's own renal cut-off (populations.toml [renal.drugs.mercaptopurine] egfr_below = 50, label 8.6:
  CLcr below 50 mL/min): eGFR 49 gets the renal card, eGFR 50 does not;
- the allopurinol combination's weekly CBC (interactions.toml weekly_cbc_days = 30, Imuran label: weekly in the
  first month): a renewal 30 days into the combination still asks for it, 31 days in is a quiet note.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from rules.knowledge_base import load
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review17"
TODAY = date(2026, 12, 7)


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def test_the_boundaries_below_are_the_knowledge_data():
    kb = load()
    transfusion = kb.monitoring.tpmt_activity.transfusion
    assert transfusion is not None and transfusion.window_days == 90
    assert kb.populations.renal.drugs["mercaptopurine"].egfr_below == 50
    assert kb.interactions.xanthine_oxidase_inhibitors.weekly_cbc_days == 30


@pytest.mark.parametrize(("days", "unreliable"), [(0, True), (90, True), (91, False)])
def test_tpmt_activity_after_a_transfusion_at_the_window(days: int, unreliable: bool):
    req = _case("e17_tpmt_act_transfused")  # activity 30 U/mL RBC of 2026-11-20; transfusion as a Procedure
    (proc,) = [e["resource"] for e in req["prefetch"]["past_medications"]["entry"]
               if e["resource"]["resourceType"] == "Procedure"]
    proc["performedDateTime"] = (date(2026, 11, 20) - timedelta(days=days)).isoformat()
    cards = _by_rule(case_cards(req))
    if unreliable:
        assert f"{days} days after a transfusion: unreliable" in cards["pgx-uninterpretable"]["summary"]
    else:
        assert "pgx-uninterpretable" not in cards, cards.keys()
        assert not any("transfusion" in c["summary"] for c in cards.values())


@pytest.mark.parametrize(("egfr", "card"), [(49, True), (49.9, True), (50, False)])
def test_mercaptopurine_renal_cutoff_at_50(egfr: float, card: bool):
    req = _case("d05_all_adult_mp_egfr40")
    (obs,) = [e["resource"] for e in req["prefetch"]["labs"]["entry"] if e["resource"]["code"]["coding"][0]["code"] == "62238-1"]
    obs["valueQuantity"]["value"] = egfr
    cards = _by_rule(case_cards(req))
    assert ("renal-impairment" in cards) is card, cards.keys()
    if card:
        assert f"eGFR {egfr:g}" in cards["renal-impairment"]["summary"]


@pytest.mark.parametrize(("days", "weekly"), [(30, True), (31, False)])
def test_allopurinol_combination_weekly_cbc_for_the_first_30_days(days: int, weekly: bool):
    req = _case("c45_allo_renewal_aza_reduced")  # azathioprine 37.5 mg since 2025-06; allopurinol renewed today
    (allo,) = [e["resource"] for e in req["prefetch"]["medications"]["entry"] if e["resource"]["id"] == "allo"]
    allo["authoredOn"] = (TODAY - timedelta(days=days)).isoformat()
    card = _by_rule(case_cards(req))["interaction-xanthine-oxidase"]
    assert ("CBC weekly" in card["summary"]) is weekly, card["summary"]
    if not weekly:
        assert card["indicator"] == "info" and "no change" in card["summary"]
