"""Value tests for the round-5 review, H3 (HARM): no warning for long-term / maintenance thioguanine. The Tabloid
label (WARNINGS) does not recommend thioguanine for maintenance therapy or similar long-term continuous treatment
(liver toxicity: veno-occlusive disease, portal hypertension, nodular regenerative hyperplasia). The cases are the
reviewer's request files, unchanged (tests/data/review5/), evaluated on 2026-12-07."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from service.cli import main

CASES = Path(__file__).parent / "data" / "review5"
RULE = "thioguanine-liver-toxicity"


def load(stem: str) -> dict:
    (path,) = CASES.glob(f"{stem}-*.json")
    return json.loads(path.read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def codes(cards) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def liver_card(cards) -> dict:
    found = [c for c in cards if c["source"]["topic"]["code"] == RULE]
    assert len(found) == 1, [c["summary"] for c in cards]  # worded once per order
    return found[0]


def assert_label_warning(card: dict) -> None:
    assert card["indicator"] == "warning"
    assert "long-term use not recommended" in card["summary"] and "Tabloid" in card["summary"]
    detail = card["detail"]
    for words in ("maintenance therapy or similar long-term continuous treatment", "veno-occlusive disease",
                  "portal hypertension", "nodular regenerative hyperplasia", "TABLOID label, WARNINGS"):
        assert words in detail, words


def test_c18_new_start_for_crohns_gets_the_label_warning(monkeypatch, capsys, tmp_path):
    cards = run(load("c18"), monkeypatch, capsys, tmp_path)
    card = liver_card(cards)
    assert_label_warning(card)
    assert card["summary"].startswith("Thioguanine started for inflammatory bowel disease")
    assert "first thioguanine order for inflammatory bowel disease" in card["detail"]


@pytest.mark.parametrize("stem,indication", [("c57", "inflammatory bowel disease"),
                                             ("c78", "acute lymphoblastic leukaemia")])
def test_renewal_after_two_years_gets_the_label_warning(stem, indication, monkeypatch, capsys, tmp_path):
    card = liver_card(run(load(stem), monkeypatch, capsys, tmp_path))
    assert_label_warning(card)
    assert card["summary"].startswith("Thioguanine continued (from 2024-11-01)")
    assert "on record from 2024-11-01, at least 25 months" in card["detail"] and indication in card["detail"]


def test_c93_continuous_use_gets_the_label_warning(monkeypatch, capsys, tmp_path):
    # past_medications is not read for a thiopurine order (rules.gaps.groups_needed): the active order dates it
    card = liver_card(run(load("c93"), monkeypatch, capsys, tmp_path))
    assert_label_warning(card)
    assert card["summary"].startswith("Thioguanine continued (from 2026-09-01)")


def test_a_first_order_in_aml_is_a_course_not_maintenance(monkeypatch, capsys, tmp_path):
    # round-9 M1: the order gives no end date, so the Tabloid label's own limitation (AML: not for maintenance or
    # similar long-term continuous treatment) gets the info note; still no long-term warning (a first course)
    cards = run(load("c17"), monkeypatch, capsys, tmp_path)
    assert RULE not in codes(cards) and codes(cards) == ["pgx-reduce-dose", "thioguanine-open-course"]
    assert [c["indicator"] for c in cards if c["source"]["topic"]["code"] == "thioguanine-open-course"] == ["info"]


def test_a_first_order_in_aml_giving_its_duration_gets_no_thioguanine_card(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c17"))
    for e in request["context"]["draftOrders"]["entry"]:
        r = e["resource"]
        if r.get("resourceType") == "MedicationRequest":
            r["dosageInstruction"][0].setdefault("timing", {}).setdefault("repeat", {})["boundsDuration"] = {
                "value": 28, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}
    cards = run(request, monkeypatch, capsys, tmp_path)
    assert codes(cards) == ["pgx-reduce-dose"]


def test_a_vod_diagnosis_makes_the_one_card_critical(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c57"))
    request["prefetch"]["conditions"]["entry"].append({"resource": {
        "resourceType": "Condition", "id": "vod", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "K76.5"}],
                 "text": "Hepatic veno-occlusive disease"}}})
    card = liver_card(run(request, monkeypatch, capsys, tmp_path))
    assert card["indicator"] == "critical" and "discontinue" in card["summary"]


def test_falling_platelets_are_added_to_the_one_card(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c57"))
    for e in request["prefetch"]["labs"]["entry"]:
        if e["resource"]["code"]["coding"][0]["code"] == "777-3":
            e["resource"]["valueQuantity"]["value"] = 120
    card = liver_card(run(request, monkeypatch, capsys, tmp_path))
    assert card["indicator"] == "warning" and "assess" in card["summary"].lower()
    assert "Platelets 120" in card["detail"]
