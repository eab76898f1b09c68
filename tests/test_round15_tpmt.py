"""Round-15 black-box review, H2 (cases in tests/data/review15, written by the reviewer).

A TPMT activity whose laboratory range came as text in wordings the round-14 reader did not take ("Normal: >30",
"Reference range: 30.0-50.0 U/mL RBC", banded text "<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal") was
dropped and ARUP's cut-offs decided, including "normal" for a value below the laboratory's own normal range.
Now: the laboratory's own range or bands decide (CPIC: the reporting laboratory's reference ranges); a range text
that cannot be read is quoted, the result is not interpreted (never normal) and ARUP's cut-offs are not applied in
its place; a value below the laboratory's normal range with no band telling intermediate from poor is a possible
deficiency (round-4 H7).
"""
from __future__ import annotations

import copy
import json
from datetime import date, datetime
from pathlib import Path

import pytest

from fhir_mappers.facts import Measurement
from hooks.wording import activity_text
from rules.tpmt_activity import bands_from_text, judge_measurement, range_from_text
from tests.review_cases import REVIEW_DAY, case_cards

CASES = Path(__file__).resolve().parent / "data" / "review15"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict, today: date = REVIEW_DAY) -> list[dict]:
    cards = case_cards(request, today)
    assert all(len(c["summary"]) < 140 for c in cards)
    return cards


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _text(cards: list[dict]) -> str:
    return " ".join(c["summary"] + " " + c.get("detail", "") for c in cards)


def _activity(request: dict) -> dict:
    return next(e["resource"] for e in request["prefetch"]["pgx"]["entry"]
                if e["resource"]["code"]["coding"][0]["code"] == "21563-2")


def _possible_deficiency(cards: list[dict]) -> dict:
    (card,) = [c for c in cards if "possible TPMT deficiency" in c["summary"]]
    assert card["indicator"] == "critical" and card["source"]["topic"]["code"] == "pgx-poor-metabolizer"
    return card


# ------------------------------------------------------------------ the reviewer's cases


@pytest.mark.parametrize("case, quoted", [
    ("d06_act_text_wordfirst_above_arup", "Normal: >30"),
    ("d07_act_text_prefix_range", "Reference range: 30.0-50.0 U/mL RBC"),
    ("d05_act_text_low_flag_none_boundary", "Normal: >15.0"),
    ("d01_act_quest_text_low", "15.1-26.4 nmol/hr/mL RBC"),
])
def test_below_the_laboratory_s_text_range_is_a_possible_deficiency_never_normal(case: str, quoted: str) -> None:
    cards = _cards(_case(case))
    card = _possible_deficiency(cards)
    assert f"the laboratory's range, sent as text: '{quoted}'" in card["detail"]
    text = _text(cards)
    assert "normal metabolizer" not in text.lower().replace("counted as poor metabolizer", "")
    assert "normal, 24.0-44.0 U/mL RBC (ARUP)" not in text and "(ARUP) →" not in text
    assert "low, < 17.0 U/mL RBC" not in text
    assert "start at 75 mg/day" not in text  # not the normal metabolizer's start


def test_d06_d07_the_card_says_arup_s_cut_offs_are_not_applied() -> None:
    for case in ("d06_act_text_wordfirst_above_arup", "d07_act_text_prefix_range"):
        detail = _possible_deficiency(_cards(_case(case)))["detail"]
        assert "ARUP's cut-offs (normal 24-44 U/mL RBC) not applied" in detail


def test_d05_the_boundary_of_a_strict_lower_limit_is_below_it() -> None:
    detail = _possible_deficiency(_cards(_case("d05_act_text_low_flag_none_boundary")))["detail"]
    assert "below the laboratory's range (> 15; the laboratory's range, sent as text: 'Normal: >15.0')" in detail


def test_d03_the_laboratory_s_bands_place_the_value_as_intermediate() -> None:
    cards = _cards(_case("d03_act_banded_text"))
    assert "pgx-poor-metabolizer" not in _codes(cards)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert card["summary"] == ("Azathioprine 150 mg/day = 2.1 mg/kg/day; TPMT intermediate metabolizer: "
                               "reduce to 50 mg/day (range 42-70 mg/day)")  # round-16 M1: of the normal dose
    assert ("in the laboratory's intermediate band ('5.0-13.7 Intermediate'); the laboratory's bands, sent as "
            "text: '<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal'") in card["detail"]
    assert "ARUP's cut-offs (normal 24-44 U/mL RBC) not applied: the laboratory sent its own bands" in card["detail"]
    assert "(ARUP) →" not in _text(cards)


def test_d04_a_range_text_in_another_unit_is_quoted_and_not_interpreted() -> None:
    cards = _cards(_case("d04_act_text_unit_mismatch"))
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-uninterpretable"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "Azathioprine: TPMT result could not be interpreted; verify before prescribing"
    assert "the laboratory's range, sent as text: '>= 26 nmol/h/g Hb', is not a form this service reads " \
           "(not taken as normal)" in card["detail"]
    text = _text(cards)
    assert "intermediate metabolizer" not in text.lower() and "CPIC's 30-80 %" not in text
    assert "(ARUP) →" not in text


def test_d02_arup_s_own_range_as_text_is_normal() -> None:
    cards = _cards(_case("d02_act_arup_text_normal"))
    assert not {"pgx-poor-metabolizer", "pgx-reduce-dose", "pgx-uninterpretable"} & set(_codes(cards))
    assert "normal, 24.0-44.0 U/mL RBC (ARUP); within the laboratory's range (sent as text: '24.0-44.0 U/mL RBC')" \
        in _text(cards)


def test_d08_a_range_without_unit_and_flag_n_is_normal() -> None:
    cards = _cards(_case("d08_act_text_nounit_flagN"))
    assert not {"pgx-poor-metabolizer", "pgx-reduce-dose", "pgx-uninterpretable"} & set(_codes(cards))


# ------------------------------------------------------------------ the class: more wordings, case by case


@pytest.mark.parametrize("text", ["Normal: >30", "Normal >30", "Normal: >= 30 U/mL RBC", "Normal range: 30-50",
                                  "Reference range: 30.0-50.0 U/mL RBC", "Ref 30 to 50", "Expected ≥ 30",
                                  "Ref: 30 - 50", "30-50 (normal)", ">=30 Normal", "Normal: 30,0-50,0",
                                  "Normal TPMT activity: 30.0-50.0 U/mL RBC"])
def test_labelled_text_ranges_are_read_and_26_is_below_them(text: str) -> None:
    req = _case("d06_act_text_wordfirst_above_arup")
    _activity(req)["referenceRange"] = [{"text": text}]
    cards = _cards(req)
    card = _possible_deficiency(cards)
    assert f"sent as text: '{text}'" in card["detail"]
    assert "(ARUP) →" not in _text(cards)


@pytest.mark.parametrize("text", ["Normal: >20", "Reference range: 20.0-50.0 U/mL RBC", "Expected ≥ 26"])
def test_within_a_labelled_text_range_is_normal(text: str) -> None:
    req = _case("d06_act_text_wordfirst_above_arup")
    _activity(req)["referenceRange"] = [{"text": text}]
    cards = _cards(req)
    assert not {"pgx-poor-metabolizer", "pgx-reduce-dose", "pgx-uninterpretable"} & set(_codes(cards))
    assert f"within the laboratory's range (sent as text: '{text}')" in _text(cards)


@pytest.mark.parametrize("text", ["see report", "< 30", "Intermediate 20-30", "Normal: >30 nmol/h/g Hb",
                                  "Normal >30; Normal >40", "Normal >= 12; Deficient < 15",
                                  "Normal TPMT activity: 24.0-44.0 U/mL - low risk of bone marrow toxicity",
                                  "Normal 30-50 or per report"])
def test_a_text_range_not_read_is_quoted_not_interpreted_and_never_judged_by_arup(text: str) -> None:
    for value in (26, 30, 10):  # ARUP would say normal, normal, poor
        req = _case("d06_act_text_wordfirst_above_arup")
        _activity(req)["referenceRange"] = [{"text": text}]
        _activity(req)["valueQuantity"]["value"] = value
        cards = _cards(req)
        (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-uninterpretable"]
        assert f"the laboratory's range, sent as text: '{text}', is not a form this service reads " \
               "(not taken as normal)" in card["detail"]
        text_all = _text(cards)
        assert "(ARUP) →" not in text_all and "normal metabolizer" not in text_all.lower()
        assert "poor metabolizer" not in text_all.lower()


def test_an_unread_range_text_with_flag_n_is_still_not_interpreted() -> None:
    req = _case("d06_act_text_wordfirst_above_arup")
    _activity(req)["referenceRange"] = [{"text": "see report"}]
    _activity(req)["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "v3-ObservationInterpretation", "code": "N"}]}]
    cards = _cards(req)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-uninterpretable"]
    assert "the laboratory's 'N' is not taken as normal without its range" in card["detail"]


def test_an_unread_range_text_with_flag_l_is_a_possible_deficiency_by_the_laboratory_s_flag() -> None:
    req = _case("d06_act_text_wordfirst_above_arup")
    _activity(req)["referenceRange"] = [{"text": "see report"}]
    _activity(req)["valueQuantity"]["value"] = 30  # normal by ARUP's cut-offs
    _activity(req)["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "v3-ObservationInterpretation", "code": "L"}]}]
    card = _possible_deficiency(_cards(req))
    assert "ARUP's cut-offs (normal 24-44 U/mL RBC) are not applied in its place" in card["detail"]


BANDS = "Normal 15.1-26.4; Intermediate 6.3-15.0; Low <6.3"


@pytest.mark.parametrize("value, text, reading, possible", [
    (11, BANDS, "Intermediate Metabolizer", False),
    (5, BANDS, "Poor Metabolizer", False),
    (20, BANDS, "Normal Metabolizer", False),
    (30, BANDS, "High", False),
    (15.05, BANDS, "Intermediate Metabolizer", False),  # between two bands: the more severe
    (11, "<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal", "Intermediate Metabolizer", False),
    (4.9, "<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal", "Poor Metabolizer", False),
    (13.8, "<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal", "Normal Metabolizer", False),
    (13.75, "<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal", "Intermediate Metabolizer", False),
    (3, "5.0-13.7 Intermediate; >=13.8 Normal", "Poor Metabolizer", False),  # below the intermediate band
    (10, "Low <15; Normal >=15", "Poor Metabolizer", True),  # "low" alone: intermediate or poor
    (20, "Low <15; Normal >=15", "Normal Metabolizer", False),
    (10, "Deficient <5; Low 5-15; Normal >15", "Intermediate Metabolizer", False),  # UK: low = carrier
    (2, "Deficient <5; Low 5-15; Normal >15", "Poor Metabolizer", False),
    (9, ">= 12 normal; < 5 deficient", "Poor Metabolizer", True),  # between deficient and normal: unplaced
    (26, "Normal >30, Intermediate 15-30, Low <15", "Intermediate Metabolizer", False),
    (50, "<5.0 Low; 5.0-13.7 Intermediate; 13.8-40 Normal; >40 High", "High", False),
    (20, "Normal TPMT activity: 24.0-44.0 U/mL RBC; Intermediate TPMT activity: 17.0-23.9 U/mL RBC; "
         "Low TPMT activity: < 17.0 U/mL RBC", "Intermediate Metabolizer", False),
])
def test_multi_band_text_places_the_value_in_the_laboratory_s_band(value: float, text: str, reading: str,
                                                                   possible: bool) -> None:
    m = Measurement("tpmt_activity", value, "U/mL{RBC}", datetime(2026, 10, 1), ref_text=text,
                    unit_text="U/mL RBC", sent_value=value)
    assert bands_from_text(m) is not None
    r = judge_measurement(m)
    assert (r.reading, r.possible) == (reading, possible), activity_text(r)
    assert "the laboratory sent its own bands" in activity_text(r)
    assert "(ARUP)" not in activity_text(r)


@pytest.mark.parametrize("text, expected", [
    ("Normal: >30", (30.0, None, True)), ("Reference range: 30.0-50.0 U/mL RBC", (30.0, 50.0, False)),
    ("Ref 30 to 50", (30.0, 50.0, False)), ("Expected ≥ 30", (30.0, None, False)),
    ("24.0-44.0 U/mL RBC", (24.0, 44.0, False)), ("< 30", None), ("Intermediate 20-30", None),
    (">= 26 nmol/h/g Hb", None), ("Normal: >30 (see report)", None),
])
def test_range_from_text(text: str, expected: tuple | None) -> None:
    m = Measurement("tpmt_activity", 26, "U/mL{RBC}", datetime(2026, 10, 1), ref_text=text, unit_text="U/mL RBC",
                    sent_value=26)
    assert range_from_text(m) == expected


def test_a_case_is_not_changed_by_being_read() -> None:
    req = _case("d03_act_banded_text")
    before = copy.deepcopy(req)
    _cards(req)
    assert req == before


@pytest.mark.parametrize("text", ["x" + " " * 60_000 + "y", ":" * 60_000, "Normal: " + " " * 5_000 + ">30"])
def test_a_range_text_longer_than_any_laboratory_prints_is_not_read(text: str) -> None:
    """Hostile input: a reference-range text of tens of thousands of blanks made the text patterns' cost grow with
    the square of its length (seconds of CPU per call). A text longer than ``_MAX_RANGE_TEXT`` is not read: the
    result is 'could not be interpreted', never normal, and the call is answered."""
    from rules.tpmt_activity import _MAX_RANGE_TEXT

    assert len(text.strip()) > _MAX_RANGE_TEXT
    req = _case("d06_act_text_wordfirst_above_arup")
    _activity(req)["referenceRange"] = [{"text": text}]
    cards = _cards(req)
    assert "pgx-uninterpretable" in _codes(cards)
    assert "normal metabolizer" not in _text(cards).lower()
