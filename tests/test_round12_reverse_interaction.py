"""Round-12 review H1: allopurinol newly ordered while a thiopurine is active.

One order, one answer, whichever order is the draft: the dose the interaction-xanthine-oxidase card states for the
active thiopurine order is the one dose plan built from every finding that changes its dose, the TPMT/NUDT15 band
and allopurinol's one-third to one-quarter, as when the thiopurine is the draft (t04, t06: 25 mg). A TPMT poor
metabolizer outside malignancy is told CPIC's non-thiopurine alternative (a pgx-poor-metabolizer card about the active
order), never a reduced dose as if safe (t08d). Cases from the reviewer (tests/data/review12).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review12"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _by_topic(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def _recommended(card: dict) -> str | None:
    found = re.search(r"\*\*Recommended dose for this \w+ order: ([^*]+)\*\*", card.get("detail", ""))
    return found.group(1) if found else None


def _set_tpmt(req: dict, text: str) -> dict:
    for e in req["prefetch"]["pgx"]["entry"]:
        r = e["resource"]
        if r.get("valueCodeableConcept", {}).get("text", "").startswith("TPMT"):
            r["valueCodeableConcept"]["text"] = text
    return req


def test_poor_metabolizer_active_order_is_told_the_alternative_not_a_reduced_dose() -> None:
    cards = _by_topic(case_cards(_case("t08d_allo_draft_aza_active_ra_tpmt_pm")))
    pm = cards["pgx-poor-metabolizer"]
    assert pm["indicator"] == "critical"
    assert "non-thiopurine alternative" in pm["summary"]
    assert "active order" in pm["detail"]
    xo = cards["interaction-xanthine-oxidase"]
    # the order is to be stopped or replaced: no mg figure for it on any card
    assert not re.search(r"\d+ mg/day\b", xo["summary"]), xo["summary"]
    assert "reduce the active" not in xo["summary"]
    assert _recommended(xo) is None and _recommended(pm) is None
    assert "stopped or replaced" in xo["detail"]


@pytest.mark.parametrize("reverse,draft", [
    ("t08c_allo_draft_aza_active_ra_tpmt_im", None),
    ("t08_allo_draft_aza_active_recent_tx", "t04_proc_recent_allo_tpmt_im_250"),
])
def test_intermediate_metabolizer_active_order_gets_the_combined_dose(reverse: str, draft: str | None) -> None:
    cards = _by_topic(case_cards(_case(reverse)))
    xo, im = cards["interaction-xanthine-oxidase"], cards["pgx-reduce-dose"]
    assert "25 mg/day" in xo["summary"] and "25 mg/day" in im["summary"]
    assert _recommended(xo) == _recommended(im) == "25 mg once daily"
    assert "intermediate metabolizer reduction" in xo["detail"]  # the plan names both findings
    assert "active order" in im["detail"]
    if draft is not None:
        # the same patient with the azathioprine as the draft: the same dose
        same = _by_topic(case_cards(_case(draft)))
        assert _recommended(same["interaction-xanthine-oxidase"]) == _recommended(xo)


def test_normal_metabolizer_contrast_is_unchanged() -> None:
    cards = _by_topic(case_cards(_case("t08b_allo_draft_aza_active_tpmt_normal")))
    assert set(cards) == {"interaction-xanthine-oxidase"}
    assert _recommended(cards["interaction-xanthine-oxidase"]) == "50 mg once daily"


def test_thiopurine_as_draft_still_agrees() -> None:
    # round-16 M1: a new start's band is of the normal dose, never of the dose ordered: t06 (old transplant, maintenance
    # basis 2 mg/kg x 70 kg = 140 mg; band 42-70, x 1/4-1/3 = 10.5-23.3) gets 25 mg every other day whatever was ordered
    # (it got 25 mg/day at 150 mg only because 150 mg was its own basis)
    for name, dose in (("t04_proc_recent_allo_tpmt_im_250", "25 mg once daily"),
                       ("t06_proc_old_allo_tpmt_im_150", "25 mg every other day (average 12.5 mg/day)")):
        cards = _by_topic(case_cards(_case(name)))
        assert _recommended(cards["interaction-xanthine-oxidase"]) == _recommended(cards["pgx-reduce-dose"]) == dose


def test_malignancy_poor_metabolizer_active_order_gets_the_reduced_regimen_with_the_fraction() -> None:
    # acute lymphoblastic leukaemia (n30's record), mercaptopurine 100 mg/day active, TPMT *3A/*3A, allopurinol new:
    # CPIC's one tenth three times a week, and allopurinol's fraction of it: one dose on both cards
    req = _case("n26_allo_draft_mp_active")
    n30 = _case("n30_all_tpmt_pm_mp_10pct_tiw")
    for key in ("conditions", "height", "weight"):
        req["prefetch"][key] = n30["prefetch"][key]
    cards = _by_topic(case_cards(_set_tpmt(req, "TPMT *3A/*3A")))
    pm, xo = cards["pgx-poor-metabolizer"], cards["interaction-xanthine-oxidase"]
    assert "malignancy" in pm["summary"]
    assert _recommended(pm) == _recommended(xo) is not None
    assert "3x/week" in xo["summary"]


def test_unreadable_tpmt_for_the_active_order_is_named() -> None:
    cards = _by_topic(case_cards(_set_tpmt(_case("t08d_allo_draft_aza_active_ra_tpmt_pm"), "TPMT *3A/*77")))
    assert "pgx-uninterpretable" in cards
    assert "takes no TPMT/NUDT15 result into account" in cards["pgx-uninterpretable"]["detail"]


def test_tpmt_results_not_sent_for_the_active_order_are_named() -> None:
    req = _case("t08d_allo_draft_aza_active_ra_tpmt_pm")
    del req["prefetch"]["pgx"]  # no FHIR server in the test: the results could not be retrieved
    cards = _by_topic(case_cards(req))
    assert "pgx-unavailable" in cards


def test_warfarin_draft_with_active_azathioprine_states_no_dose() -> None:
    # a card that advises no dose of the active order does not bring the TPMT/NUDT15 findings in (the warfarin card
    # states no dose; a poor metabolizer on azathioprine is the prescriber's of that order, not of the warfarin)
    cards = _by_topic(case_cards(_set_tpmt(_case("n23_warfarin_draft_aza_active"), "TPMT *3A/*3A")))
    assert set(cards) == {"interaction-warfarin"}
    assert _recommended(cards["interaction-warfarin"]) is None
