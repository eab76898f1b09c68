"""Round-11 review M1, m1, m2: the kidney-transplant start.

M1: a kidney transplant recorded as a FHIR Procedure (SNOMED CT 70536003, done: completed or in-progress, dated by
performedDateTime or performedPeriod.start) is the transplant event: ten days after it, 250 mg at 70 kg (3.6
mg/kg/day, inside the Imuran label's initial 3-5 mg/kg/day) is not cut (t05, t13). A card that holds a start to
the maintenance maximum says what was read, true of the record (an undated Procedure is named as such).
m1: an earlier azathioprine course does not make a recent transplant maintenance (label: the initial dose begins
"at the time of transplant"; t06, t16). m2: a card's Sources list no code-system entry (ICD-10-CM, SNOMED CT).
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from fhir_mappers.patient import procedure_facts
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review11"
TODAY = date(2026, 12, 7)


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _above(cards: list[dict]) -> dict | None:
    return next((c for c in cards if c["source"]["topic"]["code"] == "dose-above-range"), None)


def _procedure(req: dict) -> dict:
    return next(e["resource"] for e in req["prefetch"]["conditions"]["entry"]
                if e["resource"]["resourceType"] == "Procedure")


@pytest.mark.parametrize("name", ["t05_recent_tx_as_procedure_250", "t13_recent_tx_procedure_plus_z940_250"])
def test_a_recent_transplant_procedure_keeps_the_initial_dose(name: str) -> None:
    assert "dose-above-range" not in _topics(case_cards(_case(name)))


def test_a_performed_period_dates_the_procedure() -> None:
    req = _case("t05_recent_tx_as_procedure_250")
    proc = _procedure(req)
    del proc["performedDateTime"]
    proc["performedPeriod"] = {"start": "2026-11-27T08:00:00Z", "end": "2026-11-27T12:00:00Z"}
    assert "dose-above-range" not in _topics(case_cards(req))


@pytest.mark.parametrize("status", ["entered-in-error", "not-done", "preparation", "stopped", "unknown", None])
def test_a_procedure_not_done_is_no_transplant_event(status: str | None) -> None:
    req = _case("t05_recent_tx_as_procedure_250")
    proc = _procedure(req)
    if status is None:
        del proc["status"]
    else:
        proc["status"] = status
    card = _above(case_cards(req))
    assert card is not None  # no transplant read: the maximum of an unknown indication (3 mg/kg/day) applies
    assert "Transplantation of kidney" not in card["detail"]


def test_an_undated_transplant_procedure_is_named_as_undated() -> None:
    """The card's reason is true of what was read: a transplant Procedure was received, but not dated."""
    req = _case("t05_recent_tx_as_procedure_250")
    del _procedure(req)["performedDateTime"]
    card = _above(case_cards(req))
    assert card is not None
    assert "Range for kidney transplant (a procedure done)" in card["detail"]
    assert ("no kidney transplant dated within the last 30 days is on record (read: Transplantation of kidney, "
            "a Procedure, not dated)") in card["detail"]
    assert "earlier thiopurine course" not in card["detail"]


def test_t13_with_an_old_procedure_names_both_records() -> None:
    req = _case("t13_recent_tx_procedure_plus_z940_250")
    _procedure(req)["performedDateTime"] = "2015-03-01"
    card = _above(case_cards(req))
    assert card is not None
    assert "Transplantation of kidney, a Procedure, dated 2015-03-01" in card["detail"]
    assert "Kidney transplant status, a Condition coded as transplant status, not the transplant itself, dated " \
           "2026-11-27" in card["detail"]


@pytest.mark.parametrize("name, date_text", [("t04_old_tx_250", "dated 2015-03-01"),
                                             ("t15_tx_40_days_ago_250", "dated 2026-10-28")])
def test_an_older_transplant_is_maintenance_and_says_which_record(name: str, date_text: str) -> None:
    card = _above(case_cards(_case(name)))
    assert card is not None and "reduce to 200 mg/day" in card["summary"]
    assert f"Transplantation of kidney, a Condition, {date_text}" in card["detail"]


@pytest.mark.parametrize("name", ["t04_old_tx_250", "t13_recent_tx_procedure_plus_z940_250", "t15_tx_40_days_ago_250"])
def test_m2_no_code_list_in_the_sources(name: str) -> None:
    req = _case(name)
    if name.startswith("t13"):
        _procedure(req)["performedDateTime"] = "2015-03-01"  # so that the card is raised
    card = _above(case_cards(req))
    assert card is not None
    sources = card["detail"].split("**Sources**", 1)[1]
    for noise in ("Pregnancy, childbirth", "Z99.2", "N18.6", "SNOMED CT International Edition concepts"):
        assert noise not in sources
    assert "IMURAN label" in sources


def test_m1_an_earlier_course_does_not_make_a_recent_transplant_maintenance() -> None:
    assert "dose-above-range" not in _topics(case_cards(_case("t06_recent_tx_prior_aza_course")))
    # the same stopped 2019 order sent in the medications group (read as the dose taken before): still induction
    req = _case("t06_recent_tx_prior_aza_course")
    req["prefetch"]["medications"]["entry"] += req["prefetch"]["past_medications"]["entry"]
    assert "dose-above-range" not in _topics(case_cards(req))


def test_t16_one_dose_from_the_induction_basis() -> None:
    cards = case_cards(_case("t16_recent_tx_prior_aza_allopurinol_150"))
    xo = next(c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase")
    assert "3.0 mg/kg/day × 70 kg = 210 mg/day" in xo["detail"]
    assert "earlier thiopurine course" not in xo["detail"]


def test_procedure_facts_reads_done_procedures_once() -> None:
    proc = {"resourceType": "Procedure", "id": "p1", "status": "in-progress",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "70536003"}]},
            "performedPeriod": {"start": "2026-12-06"}}
    facts = procedure_facts([proc, proc, {**proc, "id": "p2", "status": "not-done"}])
    assert len(facts) == 1
    assert facts[0].onset == date(2026, 12, 6) and facts[0].resource_type == "Procedure"
    assert facts[0].codes == frozenset({"http://snomed.info/sct|70536003"})


def test_a_procedure_of_another_patient_is_set_aside() -> None:
    proc = {"resourceType": "Procedure", "id": "p1", "status": "completed", "subject": {"reference": "Patient/pt-9"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "70536003"}]},
            "performedDateTime": "2026-11-27"}
    facts = build_facts([], {"conditions": {"resourceType": "Bundle", "entry": [{"resource": proc}]}}, today=TODAY,
                        patient_id="pt-1")
    assert facts.procedures == [] and [g.key for g in facts.gaps] == ["other_patient"]
