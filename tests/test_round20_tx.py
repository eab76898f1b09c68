"""Round-20 review H2 and m4.

H2: a red-cell transfusion recorded without the word "transfusion" ("Packed red blood cells 2 units given (blood
administration)", r20-18; "PRBC x2 units", r20-67) or coded only SNOMED CT 5447007 "Transfusion" (r20-19) 10-14 days
before a TPMT activity of 31 U/mL RBC was not recognised: the activity was read as normal and only the start-dose
info card came back. Now a red-cell product named on its own (``red_cell_product_words``), red cells named with a
word of giving (``red_cell_words`` + ``given_words``) and the generic SNOMED CT transfusion concepts
(``snomed_generic``: 5447007, 116859006, unless the words name only another component) count. Controls: ICD-10-PCS
30243N1 (r20-11) still counts; platelets (r20-12), FFP (r20-13), autologous cells (r20-14), not-done (r20-16) and a
transfusion after the test (r20-66) still do not.

m4: a laboratory's long text in place of a number was quoted in the detail cut to 60 characters, losing its
actionable end ("manual differential to follow"; "approximately 95 … clumping"). The detail now quotes it whole up to
``fhirjson.SENT_LIMIT`` (200) characters; the summary stays short and ends a cut quote with "…".
Cases from the reviewer (tests/data/review20/), on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.fhirjson import SENT_LIMIT, clip
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review20"
DAY = date(2026, 12, 8)
SCT = "http://snomed.info/sct"
START = "Azathioprine new start at 100 mg/day: start at 75 mg/day and titrate after 6-8 weeks"


def _case(name: str) -> dict:
    (path,) = CASES.glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _summaries(request: dict) -> list[str]:
    return [c["summary"] for c in case_cards(request, DAY)]


def _unreliable(days: int) -> str:
    return (f"Azathioprine: TPMT activity 31 U/mL RBC (2026-11-25), {days} days after a transfusion: unreliable; "
            "genotype TPMT")


def _with_code(code: dict) -> dict:
    """r20-18 with its transfusion Procedure's code replaced (performed 2026-11-15, 10 days before the activity)."""
    req = copy.deepcopy(_case("r20-18"))
    (entry,) = [e for e in req["prefetch"]["past_medications"]["entry"] if e["resource"]["resourceType"] == "Procedure"]
    entry["resource"]["code"] = code
    return req


# ------------------------------------------------------------------ H2: the reviewer's cases
@pytest.mark.parametrize("name, days", [("r20-18", 10), ("r20-67", 11), ("r20-19", 10), ("r20-11", 13)])
def test_red_cell_transfusion_without_the_word_or_generic_code_makes_activity_unreliable(name, days):
    cards = case_cards(_case(name), DAY)
    assert [c["summary"] for c in cards] == [_unreliable(days), START]
    card = cards[0]
    assert card["indicator"] == "warning"
    assert card["source"]["topic"]["code"] == "pgx-uninterpretable"
    assert [s["label"] for s in card["suggestions"]] == [
        "Order TPMT genotyping (the activity is unreliable after the transfusion)"]


@pytest.mark.parametrize("name", ["r20-12", "r20-13", "r20-14", "r20-16", "r20-66"])
def test_controls_still_not_counted(name):
    assert _summaries(_case(name)) == [START]


# ------------------------------------------------------------------ H2: the class
@pytest.mark.parametrize("text", [
    "pRBC 1 unit", "Packed cells x2", "Red cell concentrate", "Whole blood 1 unit", "RBC x2 units given",
    "2 units of red blood cells", "Red blood cells given", "Blood administration", "Packed RBCs (2 u)",
    "Red cell exchange",
])
def test_red_cell_product_words_count(text):
    assert _summaries(_with_code({"text": text}))[0] == _unreliable(10)


@pytest.mark.parametrize("text", ["Platelets 1 unit given", "FFP 4 units", "Cryoprecipitate 10 units",
                                  "Red cell antibody screen", "RBC folate", "Albumin 20% 100 mL given"])
def test_other_components_and_red_cell_tests_do_not_count(text):
    assert _summaries(_with_code({"text": text})) == [START]


@pytest.mark.parametrize("code", ["5447007", "116859006", "116863004", "71493000", "180207008", "225068002"])
def test_snomed_transfusion_concepts_count_code_only(code):
    assert _summaries(_with_code({"coding": [{"system": SCT, "code": code}]}))[0] == _unreliable(10)


@pytest.mark.parametrize("code, text", [("5447007", "Platelet transfusion"), ("116859006", "Transfusion of FFP"),
                                        ("12719002", ""), ("13569004", "")])
def test_generic_code_with_other_component_words_or_platelet_plasma_codes_do_not_count(code, text):
    concept: dict = {"coding": [{"system": SCT, "code": code}]}
    if text:
        concept["text"] = text
    assert _summaries(_with_code(concept)) == [START]


def test_generic_code_naming_red_cells_counts():
    concept = {"coding": [{"system": SCT, "code": "5447007"}], "text": "Transfusion of platelets and red cells"}
    assert _summaries(_with_code(concept))[0] == _unreliable(10)


# ------------------------------------------------------------------ m4: long laboratory texts
def test_long_neutrophil_text_keeps_its_actionable_part():
    (card,) = [c for c in case_cards(_case("r20-49"), DAY) if c["source"]["topic"]["code"] == "data-incomplete"]
    assert card["summary"] == ("Thiopurine safety check incomplete: neutrophil count 'Unable to report…' could not be "
                               "read; check by hand")
    assert card["indicator"] == "warning"
    sent = ("Unable to report automated absolute neutrophil count because of numerous smudge cells and suspected "
            "platelet clumping; manual differential to follow; clinician notified by telephone at 14:32 by lab…")
    assert f"a result reads '{sent}' and has no numeric value" in card["detail"]
    assert len(sent) <= SENT_LIMIT


def test_long_platelet_text_quoted_whole():
    (card,) = [c for c in case_cards(_case("r20-50"), DAY) if c["source"]["topic"]["code"] == "data-incomplete"]
    assert card["summary"] == ("Thiopurine safety check incomplete: platelet count 'Platelet count…' could not be "
                               "read; check by hand")
    assert ("a result reads 'Platelet count approximately 95, estimate from smear; clumping present, recollect in "
            "citrate tube advised' and has no numeric value") in card["detail"]


def test_hostile_length_still_bounded():
    req = copy.deepcopy(_case("r20-49"))
    (entry,) = [e for e in req["prefetch"]["labs"]["entry"] if e["resource"].get("id") == "anc"]
    entry["resource"]["valueString"] = "clumped " * 5000
    (card,) = [c for c in case_cards(req, DAY) if c["source"]["topic"]["code"] == "data-incomplete"]
    quoted = card["detail"].split("a result reads '", 1)[1].split("' and has no numeric value", 1)[0]
    assert quoted == clip(("clumped " * 5000).strip(), SENT_LIMIT)
    assert len(quoted) <= SENT_LIMIT and quoted.endswith("…")
