"""Round-10 review H1: a resource whose subject (or patient) names a patient in a form that cannot be confirmed to
be the context patient is set aside like another patient's, and named by its own gap ("could not confirm that N
results are this patient's"): it never clears a check (a normal TPMT, a recent CBC) nor makes a finding (another
patient's allopurinol).

Cannot be confirmed: an identifier-only subject or ``Patient?identifier=`` when the context Patient carries no
identifier in that system (c29, c30, c84, c85), display only (c59), a ``urn:uuid:`` that resolves to no Bundle
entry (c81). Kept as this patient's: a resource with no subject member at all (c83: decided, see
docs/reading-data.md), a reference to a Group, and own data in forms that can be confirmed.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from fhir_mappers.subject import other_patient, patient_verdict
from tests.builders import bundle, weight
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review10"
TODAY = date(2026, 12, 7)
MRN = "http://hospital.example/mrn"


def _cards(prefix: str) -> list[dict]:
    request = json.loads(next(CASES.glob(f"{prefix}-*.json")).read_text(encoding="utf-8"))
    return case_cards(request, TODAY)


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _gap(cards: list[dict]) -> dict:
    return next(c for c in cards if c["source"]["topic"]["code"] == "data-incomplete")


@pytest.mark.parametrize("prefix, sent", [
    ("c29", "identifier urn:oid:2.16.840.1.113883.4.1|999-99-9999"),
    ("c30", "Patient?identifier=http://hospital.example/mrn|999"),
    ("c59", "display 'Jane Other'"),
    ("c81", "urn:uuid:bbbbbbbb-0000-4000-8000-000000000001"),
])
def test_a_normal_pgx_result_that_cannot_be_tied_to_the_patient_does_not_clear_the_test(prefix: str, sent: str) -> None:
    cards = _cards(prefix)
    assert "pgx-test-missing" in _topics(cards)
    gap = _gap(cards)
    assert gap["indicator"] == "warning"
    assert "TPMT / NUDT15 results" in gap["detail"]
    assert "could not confirm that 2 results are this patient's" in gap["detail"]
    assert sent in gap["detail"]
    assert "tied to this patient" in gap["summary"] and len(gap["summary"]) <= 140


def test_c84_an_allopurinol_order_that_cannot_be_tied_to_the_patient_cuts_no_dose() -> None:
    cards = _cards("c84")
    assert "interaction-xanthine-oxidase" not in _topics(cards)
    assert not any(c["indicator"] == "critical" for c in cards)
    gap = _gap(cards)
    assert "could not confirm that 1 order is this patient's" in gap["detail"]
    assert f"identifier {MRN}|MRN-999" in gap["detail"]


def test_c85_a_recent_cbc_that_cannot_be_tied_to_the_patient_does_not_hide_an_overdue_cbc() -> None:
    cards = _cards("c85")
    assert "monitoring-cbc-due" in _topics(cards)
    assert "could not confirm that 9 results are this patient's" in _gap(cards)["detail"]


def test_c83_results_with_no_subject_member_are_used_as_this_patients() -> None:
    """Decided (docs/reading-data.md, round-10 H1): no subject member at all is read as the patient-scoped query's
    answer (an ``_elements`` search may leave it out); the normal result is used, no gap."""
    cards = _cards("c83")
    assert "pgx-test-missing" not in _topics(cards) and "data-incomplete" not in _topics(cards)


def _verdict(subject: object, identifiers: dict | None = None, full_urls: dict | None = None) -> tuple[bool, str] | None:
    return patient_verdict({"resourceType": "Observation", "subject": subject}, "pt-1", identifiers, full_urls)


@pytest.mark.parametrize("subject", [
    {"display": "Jane Other"},
    {"identifier": {"system": MRN, "value": "MRN-999"}},
    {"identifier": {"value": "MRN-999"}},
    {"reference": "Patient?identifier=http://hospital.example/mrn|999"},
    {"reference": "Patient?name=Other"},
    {"reference": "urn:uuid:bbbbbbbb-0000-4000-8000-000000000001"},
    {"reference": "#p1"},
    {"identifier": {"system": MRN, "value": "MRN-999"}, "type": "Patient"},
])
def test_forms_that_cannot_be_confirmed(subject: dict) -> None:
    verdict = _verdict(subject)
    assert verdict is not None and verdict[0] is False
    assert other_patient({"resourceType": "Observation", "subject": subject}, "pt-1") is None  # drafts: as before


def test_a_bare_reference_string_is_compared() -> None:
    """``"subject": "Patient/pt-999"`` (no Reference object: not valid FHIR, but sent) names another patient; the
    context patient's own id in that shape is kept; an unresolvable urn:uuid cannot be confirmed."""
    assert _verdict("Patient/pt-999") == (True, "Patient/pt-999")
    assert _verdict("Patient/pt-1") is None
    assert _verdict("urn:uuid:bbbbbbbb-0000-4000-8000-000000000001") == (False, "urn:uuid:bbbbbbbb-0000-4000-8000-000000000001")


@pytest.mark.parametrize("subject, identifiers, full_urls", [
    ({"reference": "Patient/pt-1"}, None, None),
    ({"reference": "https://ehr.example/fhir/Patient/pt-1/_history/2"}, None, None),
    ({"reference": "urn:uuid:1"}, None, {"urn:uuid:1": {"resourceType": "Patient", "id": "pt-1"}}),
    ({"identifier": {"system": MRN, "value": "MRN-1"}}, {MRN: frozenset({"MRN-1"})}, None),
    ({"reference": f"Patient?identifier={MRN}|MRN-1"}, {MRN: frozenset({"MRN-1"})}, None),
    ({"reference": "Group/g-1"}, None, None),
    ({"reference": "Group?identifier=urn:x|1"}, None, None),
    ({"identifier": {"system": "urn:x", "value": "g1"}, "type": "Group"}, None, None),
    ({}, None, None),
])
def test_forms_that_are_this_patients_or_no_patient_are_kept(subject: dict, identifiers: dict | None,
                                                              full_urls: dict | None) -> None:
    assert _verdict(subject, identifiers, full_urls) is None


def test_a_display_only_weight_is_set_aside_and_a_subjectless_one_kept() -> None:
    named, bare = weight(60), weight(70)
    named["subject"] = {"display": "Jane Other"}
    del bare["subject"]
    facts = build_facts([], {"weight": bundle(named, bare)}, today=TODAY, patient_id="pt-1")
    assert [m.value for m in facts.weights] == [70]
    [gap] = [g for g in facts.gaps if g.key == "unconfirmed_patient"]
    assert gap.what == "body weight" and "display 'Jane Other'" in gap.why and gap.sent == "Jane Other"
