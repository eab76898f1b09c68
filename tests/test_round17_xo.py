"""Round-17 black-box review, M6, M7 and m6 (cases in tests/data/review17, written by the reviewer).

M6: allopurinol and azathioprine taken together for months, azathioprine already at about a quarter of the usual dose:
a renewal of either drug was told "check the CBC weekly", an allopurinol renewal was called "ordered now" and offered a
cancel. The label's weekly CBC belongs to the first month after the combination is STARTED (Imuran, PRECAUTIONS,
Laboratory Tests); a renewal of an established, already-adjusted combination is a quiet info note. New combinations
(c46, d08) and a renewal beside a never-reduced dose (d09, e02) keep their cut.

M7: TPMT activity measured 19 days after a red-cell transfusion (Procedure, SNOMED CT 116859006) was read as normal.
Donor cells can make a red-cell activity falsely normal (CPIC 2018; Mayo TPMT3 test notes): it is named as unreliable,
with the transfusion date and the result, and TPMT genotyping is advised; a genotype still decides.

m6: "after a azathioprine cut": the indefinite article before a drug name.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review17"
CATALOGUE = Path(__file__).resolve().parent.parent / "rules" / "knowledge" / "catalogue.toml"
XOI = "interaction-xanthine-oxidase"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(cards: list[dict], rule_id: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == rule_id]


def _card(cards: list[dict], rule_id: str) -> dict:
    (card,) = _cards(cards, rule_id)
    return card


def _text(cards: list[dict]) -> str:
    return "\n".join(c["summary"] + "\n" + c["detail"] for c in cards)


def _labels(cards: list[dict]) -> list[str]:
    return [s["label"] for c in cards for s in c.get("suggestions", [])]


# --- M6 --------------------------------------------------------------------------------------------------------------

def test_c37_c45_established_combination_renewal_is_a_quiet_note() -> None:
    for name, renewed in (("c37_allo_aza_25pct_renewal", "Azathioprine is renewed now"),
                          ("c45_allo_renewal_aza_reduced", "allopurinol is renewed now")):
        cards = case_cards(_case(name))
        card = _card(cards, XOI)
        assert card["indicator"] == "info", name
        assert "weekly" not in card["summary"], card["summary"]
        assert "renewed, together since 2026-01-10" in card["summary"]
        assert "37.5 mg/day within the reduced range (35-46 mg/day): no change" in card["summary"]
        assert "check the CBC weekly" not in card["detail"]
        assert "first month after the combination is started" in card["detail"]
        assert renewed in card["detail"], name
        assert "ordered now" not in card["detail"]
        assert not [c for c in cards if c["indicator"] == "critical"], name
        assert not [lbl for lbl in _labels(cards) if "Cancel" in lbl], name


def test_combination_started_within_the_first_month_keeps_the_weekly_cbc() -> None:
    """The same renewal when allopurinol was started 2 weeks ago: the label's first month still applies."""
    request = _case("c45_allo_renewal_aza_reduced")
    for e in request["prefetch"]["medications"]["entry"]:
        if e["resource"].get("id") == "allo":
            e["resource"]["authoredOn"] = "2026-11-23"
    card = _card(case_cards(request), XOI)
    assert card["indicator"] == "info"
    assert "Allopurinol with azathioprine since 2026-11-23: 37.5 mg/day within the reduced range (35-46 mg/day); CBC weekly in month 1" == card["summary"]
    assert "weekly CBC of its first month applies" in card["detail"]


def test_new_combinations_and_unreduced_renewals_keep_their_cut() -> None:
    expected = {"c46_allo_new_aza_active_150": "reduce the active azathioprine order to 50 mg/day",
                "d08_allo_new_aza_50_established": "reduce the active azathioprine order to 25 mg every other day",
                "d09_allo_renewal_aza_not_reduced": "reduce the active azathioprine order to 50 mg/day",
                "e02_aza_renewal_allo_started_after": "give azathioprine at 50 mg/day"}
    for name, words in expected.items():
        card = _card(case_cards(_case(name)), XOI)
        assert card["indicator"] == "critical", name
        assert words in card["summary"], (name, card["summary"])
        assert "renewed, together since" not in card["summary"]


def test_allopurinol_new_order_offers_cancel_renewal_says_renewed() -> None:
    cards = case_cards(_case("c46_allo_new_aza_active_150"))
    assert "Cancel the allopurinol order" in _labels(cards)
    assert "allopurinol is ordered now" in _card(cards, XOI)["detail"]
    cards = case_cards(_case("d09_allo_renewal_aza_not_reduced"))
    assert "allopurinol is renewed now" in _card(cards, XOI)["detail"]


# --- M7 --------------------------------------------------------------------------------------------------------------

def _tpmt_card(cards: list[dict]) -> dict:
    (card,) = [c for c in cards if "transfusion" in c["summary"]]
    return card


def test_e17b_activity_after_transfusion_is_not_read_as_normal() -> None:
    cards = case_cards(_case("e17b_tpmt_act_transfused_proc_in_conditions"))
    card = _tpmt_card(cards)
    assert card["indicator"] in ("warning", "critical")
    assert "TPMT activity 30 U/mL RBC (2026-11-20), 19 days after a transfusion: unreliable; genotype TPMT" \
        == card["summary"].split(": ", 1)[1]
    assert "2026-11-01" in card["detail"] and "not** read as normal" in card["detail"]
    assert "Order TPMT genotyping (the activity is unreliable after the transfusion)" in _labels(cards)


def test_transfusion_in_any_group_and_by_cpt() -> None:
    """The Procedure sent with the patient's conditions (e17b) or coded in CPT (36430) is read the same."""
    request = _case("e17b_tpmt_act_transfused_proc_in_conditions")
    for e in request["prefetch"]["conditions"]["entry"]:
        if e["resource"]["resourceType"] == "Procedure":
            e["resource"]["code"] = {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "36430"}]}
    assert _tpmt_card(case_cards(request))


def test_transfusion_long_before_or_after_the_sample_does_not_count() -> None:
    for when in ("2026-07-01", "2026-11-25"):  # 142 days before the sample; after the sample
        request = _case("e17b_tpmt_act_transfused_proc_in_conditions")
        for e in request["prefetch"]["conditions"]["entry"]:
            if e["resource"]["resourceType"] == "Procedure":
                e["resource"]["performedDateTime"] = when
        cards = case_cards(request)
        assert not [c for c in cards if "transfusion" in c["summary"]], when
        assert "normal" in _text(cards).lower() or not cards


def test_low_activity_after_transfusion_stays_low() -> None:
    """Donor cells can only raise the activity: a low result after a transfusion is still a deficiency."""
    request = _case("e17b_tpmt_act_transfused_proc_in_conditions")
    for e in request["prefetch"]["pgx"]["entry"]:
        if e["resource"].get("id") == "tpmt-act-2026-11-20":
            e["resource"]["valueQuantity"]["value"] = 5.0
    cards = case_cards(request)
    assert [c for c in cards if c["indicator"] == "critical"]
    assert not [c for c in cards if "transfusion" in c["summary"]]


def test_genotype_still_decides_after_transfusion() -> None:
    request = _case("e17b_tpmt_act_transfused_proc_in_conditions")
    geno = copy.deepcopy(next(e for e in request["prefetch"]["pgx"]["entry"]
                              if e["resource"].get("id") == "geno-nudt15-2025-01-10"))
    geno["resource"]["id"] = "geno-tpmt"
    geno["resource"]["valueCodeableConcept"] = {"text": "TPMT *1/*3A"}
    geno["resource"]["component"][0]["valueCodeableConcept"]["coding"][0].update(code="HGNC:12014", display="TPMT")
    request["prefetch"]["pgx"]["entry"].append(geno)
    cards = case_cards(request)
    assert not [c for c in cards if c["source"]["topic"]["code"] == "pgx-uninterpretable"]
    assert "intermediate" in _text(cards).lower()


def test_e17_procedure_prefetched_under_a_group_the_start_does_not_read() -> None:
    """e17 sends the transfusion under past_medications, a group a thiopurine start does not otherwise read
    (rules.gaps.groups_needed): its Procedures are still read (hooks.pipeline._prefetched_procedures), and nothing
    else of it."""
    cards = case_cards(_case("e17_tpmt_act_transfused"))
    card = _tpmt_card(cards)
    assert "2026-11-01" in card["detail"]
    assert "stopped medications" not in _text(cards)


# --- m6 --------------------------------------------------------------------------------------------------------------

def test_e05_an_azathioprine_cut() -> None:
    card = _card(case_cards(_case("e05_warfarin_aza_dose_cut")), "interaction-warfarin")
    assert "after an azathioprine cut" in card["summary"]


def test_no_bare_a_before_a_drug_name_in_the_catalogue() -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    assert not re.search(r"\b[aA] \{\{ *(drug|Drug|other|tp)\b", text)


def test_a_renewal_that_cuts_to_the_reduced_range_is_the_adjustment_itself() -> None:
    """c37 with the renewed order at 75 mg/day: the draft's 37.5 mg/day is the reduction made now (a dose change):
    not an established, already-adjusted combination, so the weekly CBC stays."""
    request = _case("c37_allo_aza_25pct_renewal")
    for e in request["prefetch"]["medications"]["entry"]:
        r = e["resource"]
        if "azathioprine" in json.dumps(r.get("medicationCodeableConcept", {})).lower():
            r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 75
    card = _card(case_cards(request), XOI)
    assert "renewed, together since" not in card["summary"]
    assert "weekly" in card["summary"] + card["detail"]
