"""Round-8 review, minor defects m1, m4, m5 and m6, built from the reviewer's case files (tests/data/review8, copied
from the round-8 cases) and evaluated on the reviewers' date (2026-12-07).

m1: a merged info card hid "indication not recognised; check the start dose by hand" behind "patient aged 66".
m4: CVX 111 (LAIV3) with the text "FluMist" (read as LAIV4) named two products and "inactivated influenza vaccine,
    inactivated influenza vaccine".
m5: a first, open-ended thioguanine order for ALL got no note that the Tabloid label does not recommend long-term
    continuous use.
m6: a preliminary normal TPMT genotype cleared the pharmacogenomic check with no card saying PRELIMINARY.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from fhir_mappers.medications import vaccine_codes_of
from hooks import wording
from hooks.cards import _acting_first
from rules.findings import Finding
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review8"
CVX = "http://hl7.org/fhir/sid/cvx"


def _case(stem: str) -> dict:
    (path,) = CASES.glob(f"{stem}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _rules(card: dict) -> list[str]:
    ext = card["extension"]["azathioprine-cds"]
    return ext.get("mergedRuleIds") or [ext["ruleId"]]


def _with(cards: list[dict], rule_id: str) -> list[dict]:
    return [c for c in cards if rule_id in _rules(c)]


# ------------------------------------------------------------------------------------------ m1: the acting note first

def _unrecognised(req: dict) -> dict:
    """The case with its Condition swapped for one no indication of dosing.toml names (atopic dermatitis, SNOMED CT
    24079001): round-14 m3 made the cases' myasthenia gravis and granulomatosis with polyangiitis recognised."""
    req = copy.deepcopy(req)
    req["prefetch"]["conditions"]["entry"][0]["resource"]["code"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "24079001", "display": "Atopic dermatitis"}],
        "text": "Atopic dermatitis"}
    return req


def test_c69_the_check_by_hand_note_leads_the_merged_info_card():
    (card,) = case_cards(_unrecognised(_case("c69")))
    assert card["indicator"] == "info"
    assert _rules(card) == ["dose-new-start", "elderly"]
    assert card["summary"].startswith("Indication not recognised: check the start dose by hand")
    assert "aged 66" in card["summary"]  # both notes fit: both named
    assert len(card["summary"]) < 140


def test_c18_every_acting_note_is_named_in_the_summary():
    (card,) = case_cards(_unrecognised(_case("c18")))
    assert _rules(card) == ["weight-missing", "dose-new-start", "elderly"]
    assert "dose per kg not checked" in card["summary"] and "check the start dose by hand" in card["summary"]
    assert card["summary"].endswith("1 more note") and len(card["summary"]) < 140


def _f(rule_id: str, **values) -> Finding:
    return Finding(rule_id, "MedicationRequest/x", values, drug="azathioprine")


def test_acting_notes_come_before_informing_ones_and_a_data_gap_never_leads():
    elderly = _f("elderly", age=70)
    start = _f("dose-new-start", how="unrecognised", therapy_unknown=False, ordered=150)
    advice = _f("dose-new-start", how="rule", therapy_unknown=False, ordered=150)
    gap = _f("data-incomplete", variant="thiopurine", groups=[], gaps=[], names=["ALT"])
    # asks_action: the catalogue's expression on the values
    assert wording.asks_action(start) and not wording.asks_action(advice) and not wording.asks_action(elderly)
    assert wording.asks_action(gap)
    # in _rank order (elderly priority 5 before dose-new-start 25; the gap last): the acting clinical note leads
    assert _acting_first([elderly, start, gap]) == [start, gap, elderly]
    # no acting clinical note: the clinical note still leads (round 2), the acting gap comes next
    assert _acting_first([elderly, advice, gap]) == [elderly, gap, advice]
    assert _acting_first([elderly]) == [elderly]


def test_an_asks_action_expression_that_fails_counts_as_acting():
    # dose-new-start's expression reads therapy_unknown: missing, the expression fails, and the note is not hidden
    assert wording.asks_action(_f("dose-new-start", how="rule"))


# ------------------------------------------------------------------------------------------ m4: each vaccine once

def test_c56_one_vaccine_and_one_alternative():
    cards = case_cards(_case("c56"))
    (card,) = _with(cards, "interaction-live-vaccine")
    assert card["indicator"] == "critical"
    assert "LAIV3" in card["detail"] and "LAIV4" not in card["detail"]
    assert card["detail"].count("inactivated influenza vaccine") == 1


def test_a_text_name_the_code_already_names_is_not_added_but_a_live_reading_beside_a_non_live_code_is():
    text = "influenza, live, intranasal (FluMist)"
    flumist = {"coding": [{"system": CVX, "code": "111"}], "text": text}
    assert vaccine_codes_of(flumist, text) == {"111"}
    # a non-live influenza code (CVX 141) with "FluMist" in its words: the live reading is kept (the safe one)
    mixed = {"coding": [{"system": CVX, "code": "141"}], "text": "FluMist"}
    assert vaccine_codes_of(mixed, "FluMist") == {"141", "149"}
    # text only: read from the words, as before
    assert vaccine_codes_of({"text": "FluMist"}, "FluMist") == {"149"}


def test_a_list_joined_into_card_text_names_each_item_once():
    f = Finding("interaction-live-vaccine", "MedicationRequest/x",
                {"new": "other", "thiopurine_state": "active", "other_state": "draft", "vaccines": ["a", "a"],
                 "families": ["a"], "alternatives": ["inactivated influenza vaccine", "inactivated influenza vaccine"],
                 "immunosuppression": {"level": ""}}, drug="azathioprine")
    detail = wording.render(f).detail
    assert detail.count("inactivated influenza vaccine") == 1 and "(a; " in detail


# ------------------------------------------------------------------------------------------ m6: preliminary normal

def test_c91_a_preliminary_normal_genotype_that_cleared_the_check_is_said():
    cards = case_cards(_case("c91"))
    (card,) = _with(cards, "pgx-preliminary-normal")
    assert card["indicator"] == "info"
    assert _rules(card)[0] == "pgx-preliminary-normal"  # it asks to confirm: it leads the merged info card
    assert card["summary"].startswith("PRELIMINARY result: ")
    assert "final report" in card["summary"]
    assert "TPMT *1/*1 (2025-01-10): normal metabolizer" in card["detail"]
    assert "NUDT15" not in card["summary"]  # NUDT15 is final


def test_no_note_when_the_result_is_final_or_a_final_result_also_clears_it():
    final = _case("c91")
    final["prefetch"]["pgx"]["entry"][0]["resource"]["status"] = "final"
    assert not _with(case_cards(final), "pgx-preliminary-normal")
    both = _case("c91")
    extra = copy.deepcopy(both["prefetch"]["pgx"]["entry"][0])
    extra["resource"].update(id="g-final", status="final", effectiveDateTime="2024-06-01")
    both["prefetch"]["pgx"]["entry"].append(extra)
    assert not _with(case_cards(both), "pgx-preliminary-normal")


def test_a_preliminary_intermediate_result_keeps_its_own_card_and_no_extra_note():
    im = _case("c91")
    im["prefetch"]["pgx"]["entry"][0]["resource"]["valueCodeableConcept"]["text"] = "TPMT *1/*3A"
    cards = case_cards(im)
    assert not _with(cards, "pgx-preliminary-normal")
    (card,) = [c for c in cards if c["source"]["topic"]["code"].startswith("pgx-")]
    assert card["summary"].startswith("PRELIMINARY result: ")


# ------------------------------------------------------------------------------------------ m5: thioguanine in ALL

def test_c11_a_first_open_ended_thioguanine_order_for_all_gets_one_info_note():
    cards = case_cards(_case("c11"))
    assert not _with(cards, "thioguanine-liver-toxicity")
    (card,) = _with(cards, "thioguanine-open-course")
    assert card["indicator"] == "info"
    assert "no end date" in card["summary"] and "long-term continuous use not recommended" in card["summary"]
    assert "acute lymphoblastic leukaemia" in card["summary"]
    assert "not recommend maintenance or long-term continuous use" in card["detail"]


def test_c11_with_a_duration_is_a_course_and_says_nothing():
    for bound in ({"boundsDuration": {"value": 14, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}},
                  {"count": 14}, {"boundsPeriod": {"start": "2026-12-07", "end": "2026-12-21"}}):
        request = _case("c11")
        order = request["context"]["draftOrders"]["entry"][0]["resource"]
        order["dosageInstruction"][0]["timing"]["repeat"].update(bound)
        cards = case_cards(request)
        assert not _with(cards, "thioguanine-open-course") and not _with(cards, "thioguanine-liver-toxicity"), bound
    request = _case("c11")
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    order["dispenseRequest"] = {"expectedSupplyDuration": {"value": 14, "unit": "days"}}
    assert not _with(case_cards(request), "thioguanine-open-course")


def test_c97_a_continued_order_keeps_the_warning():
    cards = case_cards(_case("c97"))
    assert not _with(cards, "thioguanine-open-course")
    (card,) = _with(cards, "thioguanine-liver-toxicity")
    assert card["indicator"] == "warning" and card["summary"].startswith("Thioguanine continued")
