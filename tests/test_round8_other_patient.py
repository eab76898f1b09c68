"""Round-8 review H1: a resource about another patient is never used as this patient's data.

A gathered resource whose ``subject`` / ``patient`` names a Patient other than ``context.patientId`` (and a
``patient`` prefetch with another id) is set aside: it never clears a check (TPMT test, CBC due, weight), never
creates a finding (another patient's allopurinol), never supplies age or sex. A ``data-incomplete`` card names what
was set aside, quoting the reference as sent. A reference that cannot be compared (none, urn:uuid, contained,
identifier or display only, a Group) keeps the resource: the queries are scoped to the patient
(``fhir_mappers/subject.py``, docs/reading-data.md).
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest
import responses

from fhir_mappers import build_facts
from fhir_mappers.read_members import decode_results
from fhir_mappers.subject import context_patient_id, named_patient_id, other_patient
from tests.builders import (bundle, genotype_ig, hook_request, lab, med_request, normal_labs, normal_pgx, patient,
                            prefetch, weight)
from tests.conftest import rule_ids
from tests.fhir_fake import serve
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review8"
OTHER = "Patient/pt-999"


def _request(prefix: str) -> dict:
    return json.loads(next(CASES.glob(f"{prefix}-*.json")).read_text(encoding="utf-8"))


def _topic(cards: list[dict], code: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == code]


def _gap_card(cards: list[dict]) -> dict:
    gap = _topic(cards, "data-incomplete")
    assert len(gap) == 1, [c["summary"] for c in cards]
    assert gap[0]["indicator"] == "warning"
    return gap[0]


# ------------------------------------------------------------------ the reviewer's cases

def test_c115_other_patients_pgx_does_not_clear_the_test() -> None:
    cards = case_cards(_request("c115"))
    assert _topic(cards, "pgx-test-missing")
    gap = _gap_card(cards)
    assert "TPMT / NUDT15 results" in gap["summary"] and OTHER in gap["summary"]
    assert "2 results name another patient (Patient/pt-999) and were not used" in gap["detail"]


def test_c116_other_patients_labs_do_not_make_the_cbc_up_to_date() -> None:
    cards = case_cards(_request("c116"))
    due = _topic(cards, "monitoring-cbc-due")
    assert due and "no CBC on record" in due[0]["summary"]
    assert "9 results name another patient (Patient/pt-999) and were not used" in _gap_card(cards)["detail"]


def test_c117_other_patients_weight_is_not_this_patients() -> None:
    cards = case_cards(_request("c117"))
    assert _topic(cards, "weight-missing")
    assert "90 kg" not in " ".join(c["summary"] + c["detail"] for c in cards)
    gap = _gap_card(cards)
    assert "body weight" in gap["summary"] and OTHER in gap["summary"]


def test_c119_other_patients_allopurinol_does_not_cut_this_patients_dose() -> None:
    cards = case_cards(_request("c119"))
    assert not _topic(cards, "interaction-xanthine-oxidase")
    assert not any(c.get("suggestions") for c in cards)
    assert "1 order names another patient (Patient/pt-999) and was not used" in _gap_card(cards)["detail"]
    assert "allopurinol" not in _gap_card(cards)["detail"]  # another patient's medicines are never described here


def test_c135_other_patients_record_gives_no_age() -> None:
    cards = case_cards(_request("c135"))
    text = " ".join(c["summary"] + c["detail"] for c in cards)
    assert "aged 96" not in text and not _topic(cards, "elderly")
    gap = _gap_card(cards)
    assert "demographics" in gap["summary"] and OTHER in gap["summary"]
    assert "age and sex are unknown" in gap["detail"]


@pytest.mark.parametrize("prefix", ["c115", "c116", "c117", "c119", "c135"])
def test_the_same_case_for_this_patient_has_no_gap(prefix: str) -> None:
    """Control: every reference turned to this patient, the case answers without a data gap (and c119's
    allopurinol is this patient's again: the interaction card comes back)."""
    request = json.loads(json.dumps(_request(prefix)).replace("pt-999", "pt-1"))
    cards = case_cards(request)
    assert not _topic(cards, "data-incomplete"), [c["summary"] for c in cards]
    if prefix == "c119":
        assert _topic(cards, "interaction-xanthine-oxidase")
    if prefix == "c135":
        assert "aged 96" in " ".join(c["summary"] for c in cards)


# ------------------------------------------------------------------ what can be compared

@pytest.mark.parametrize("reference, named", [
    ("Patient/pt-999", "pt-999"),
    ("https://ehr.example/fhir/Patient/pt-999", "pt-999"),
    ("https://ehr.example/fhir/Patient/pt-999/_history/3", "pt-999"),
    ("Patient/pt-999/_history/3", "pt-999"),
    (" Patient/pt-1 ", "pt-1"),
    ("urn:uuid:6a1c9b0e-5d1f-4c0e-9a1e-1b2c3d4e5f60", None),
    ("#p1", None),
    ("Group/g-1", None),
    ("Patient", None),
    ("Patient/", None),
    ("Patient/a b", None),
    (42, None),
])
def test_named_patient_id(reference, named) -> None:
    assert named_patient_id(reference) == named


# round-10 H1: an identifier-only, display-only, unresolved urn:uuid or contained reference names a patient that
# cannot be confirmed to be this one: set aside (tests/test_round10_unconfirmed_patient.py), no longer kept here;
# a bare reference string naming another patient ("Patient/pt-999") is compared since, and set aside
@pytest.mark.parametrize("subject", [
    None, {}, {"reference": "Group/g-1"},
    {"reference": ["Patient/pt-999"]}, "Patient/pt-1", {"reference": "Patient/pt-1"},
    {"reference": "https://ehr.example/fhir/Patient/pt-1/_history/2"},
])
def test_a_subject_that_cannot_be_compared_or_is_this_patient_keeps_the_weight(subject) -> None:
    w = weight(60)
    if subject is None:
        del w["subject"]
    else:
        w["subject"] = subject
    # round-11 H2: an absolute reference is this patient's on the request's fhirServer (compared by its base)
    facts = build_facts([], {"weight": bundle(w)}, today=date.today(), patient_id="pt-1",
                        fhir_server="https://ehr.example/fhir")
    assert [m.value for m in facts.weights] == [60] and not facts.gaps


def test_context_patient_id_forms() -> None:
    assert context_patient_id("pt-1") == "pt-1"
    assert context_patient_id("Patient/pt-1") == "pt-1"
    assert context_patient_id("") is None and context_patient_id(None) is None
    assert other_patient({"resourceType": "Patient", "id": "pt-1"}, "pt-1") is None
    assert other_patient({"resourceType": "Patient"}, "pt-1") is None
    assert other_patient({"resourceType": "Patient", "id": "pt-9"}, "pt-1") == "Patient/pt-9"
    assert other_patient({"resourceType": "Observation", "subject": {"reference": "Patient/pt-9"}}, None) is None
    long = "https://ehr.example/" + "x" * 200 + "/Patient/pt-9"
    assert len(other_patient({"resourceType": "Observation", "subject": {"reference": long}}, "pt-1") or "") == 60


def test_without_a_context_patient_nothing_is_compared() -> None:
    w = weight(60)
    w["subject"] = {"reference": OTHER}
    facts = build_facts([], {"weight": bundle(w)}, today=date.today())
    assert [m.value for m in facts.weights] == [60] and not facts.gaps


# ------------------------------------------------------------------ the class: every resource type, every key

def _for(resource: dict, member: str = "subject", ref: str = OTHER) -> dict:
    r = copy.deepcopy(resource)
    r.pop("subject", None)
    r[member] = {"reference": ref}
    return r


def _build(data: dict, drafts: list[dict] | None = None):
    return build_facts(drafts or [], data, today=date.today(), patient_id="pt-1")


def _other_gaps(facts) -> list:
    return [g for g in facts.gaps if g.key == "other_patient"]


def test_every_resource_type_naming_another_patient_is_set_aside() -> None:
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo", status="active")
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                 "medicationCodeableConcept": {"text": "allopurinol 100 mg"}}
    stopped = med_request(id="aza-old", status="stopped", authored="2026-01-01")
    condition = {"resourceType": "Condition", "id": "cond-1", "code": {"text": "Crohn's disease"},
                 "clinicalStatus": {"coding": [{"code": "active"}]}}
    allergy = {"resourceType": "AllergyIntolerance", "id": "al-1", "code": {"text": "azathioprine"}}
    imm = {"resourceType": "Immunization", "id": "imm-1", "status": "completed", "occurrenceDateTime": "2026-11-30",
           "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "121"}]}}
    report = {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "final", "code": {"text": "TPMT"},
              "conclusion": "TPMT *3A/*3A (poor metabolizer)"}
    data = {
        "patient": patient("pt-999", birth_date="1930-01-01"),
        "medications": bundle(_for(allo), _for(statement)),
        "past_medications": bundle(_for(stopped)),
        "conditions": bundle(_for(condition)),
        "allergies": bundle(_for(allergy, "patient")),
        "immunizations": bundle(_for(imm, "patient")),
        "pgx": bundle(*[_for(g) for g in normal_pgx()], _for(report)),
        "labs": bundle(*[_for(o) for o in normal_labs()]),
        "weight": bundle(_for(weight(90))),
        "height": bundle(_for(lab("8302-2", 170, "cm", id="ht"))),
    }
    facts = _build(data)
    assert facts.patient is None
    assert not facts.active_medications and not facts.past_medications and not facts.conditions
    assert not facts.allergies and not facts.immunizations and not facts.gene_results
    assert not facts.labs and not facts.weights and not facts.heights
    gaps = {g.what: g for g in _other_gaps(facts)}
    assert set(gaps) == {"demographics (age, sex)", "medications", "stopped medications", "conditions", "allergies",
                         "immunizations", "TPMT / NUDT15 results", "blood counts and liver tests", "body weight", "height"}
    assert all(g.sent == OTHER for g in gaps.values())
    assert gaps["medications"].why == "2 records name another patient (Patient/pt-999) and were not used"
    assert gaps["TPMT / NUDT15 results"].why.startswith("3 records name another patient")


def test_this_patients_data_beside_another_patients_is_kept() -> None:
    mine, theirs = weight(60, id="w-mine"), _for(weight(90, id="w-theirs"), ref="https://ehr.example/fhir/Patient/pt-7")
    facts = _build({"weight": bundle(theirs, mine)})
    assert [m.value for m in facts.weights] == [60]
    (gap,) = _other_gaps(facts)
    assert gap.why == "1 result names another patient (https://ehr.example/fhir/Patient/pt-7) and was not used"


def test_a_contained_result_of_another_patient_in_this_patients_report_is_set_aside() -> None:
    theirs = _for(genotype_ig("TPMT", "*1/*1"))
    report = {"resourceType": "DiagnosticReport", "id": "dr-2", "status": "final", "subject": {"reference": "Patient/pt-1"},
              "code": {"text": "TPMT"}, "contained": [theirs], "result": [{"reference": "#geno-tpmt"}]}
    facts = _build({"pgx": bundle(report)})
    assert not facts.gene_results
    assert [g.what for g in _other_gaps(facts)] == ["TPMT / NUDT15 results"]


def test_several_references_are_quoted_shortly() -> None:
    results = [_for(lab("6690-2", 6.0, "10*9/L", id=f"w{i}"), ref=f"Patient/pt-{900 + i}") for i in range(4)]
    (gap,) = _other_gaps(_build({"labs": bundle(*results)}))
    assert gap.why == ("4 results name another patient (Patient/pt-900, Patient/pt-901 and 2 more) "
                       "and were not used")


def test_the_same_resource_under_two_keys_is_named_once() -> None:
    w = _for(lab("6690-2", 6.0, "10*9/L", id="wbc-x"))
    assert len(_other_gaps(_build({"labs": bundle(w), "lab_results": bundle(copy.deepcopy(w))}))) == 1


def test_an_included_patient_under_another_key_is_not_compared() -> None:
    facts = _build({"medications": bundle(patient("pt-999"))})
    assert not _other_gaps(facts)


# ------------------------------------------------------------------ through the service

def test_a_draft_order_naming_another_patient_is_checked_and_named(call) -> None:
    order = med_request(daily_mg=150, pid="pt-999")
    cards = call(hook_request(orders=[order], pre=prefetch()))
    gap = _gap_card(cards)
    assert "the order being signed" in gap["detail"] and OTHER in gap["detail"]
    assert "check that the order is for this patient" in gap["detail"]


def test_another_patients_thiopurine_does_not_flag_this_patients_allopurinol(call) -> None:
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo-new", daily_mg=100)
    aza = _for(med_request(id="aza-active", status="active", authored="2026-01-01", daily_mg=150))
    cards = call(hook_request(orders=[allo], pre=prefetch(meds=[aza])))
    assert not _topic(cards, "interaction-xanthine-oxidase")
    gap = _gap_card(cards)
    assert "medications" in gap["summary"] and OTHER in gap["summary"]
    # control: this patient's own azathioprine gives the interaction card and no gap
    cards = call(hook_request(orders=[allo], pre=prefetch(meds=[_for(aza, ref="Patient/pt-1")])))
    assert _topic(cards, "interaction-xanthine-oxidase") and not _topic(cards, "data-incomplete")


def test_fhir_fallback_results_of_another_patient_are_set_aside(call) -> None:
    """No prefetch: the service searches the EHR's FHIR server, which answers with another patient's results."""
    base = "https://ehr.example/r4/fhir"
    theirs = [_for(g) for g in normal_pgx()] + [_for(weight(90))] + [_for(o) for o in normal_labs()]
    req = hook_request(orders=[med_request(daily_mg=150)], fhir_server=base, token="t")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve(rsps, base, theirs)
        cards = call(req)
    ids = rule_ids(cards)
    assert "pgx-test-missing" in ids and "weight-missing" in ids
    detail = _gap_card(cards)["detail"]
    for what in ("TPMT / NUDT15 results", "body weight", "blood counts and liver tests"):
        assert f"**{what}**" in detail
    assert OTHER in detail


def test_the_typed_decoder_keeps_whose_data_it_is() -> None:
    raw = json.dumps(bundle(weight(60), {"resourceType": "Immunization", "patient": {"reference": OTHER}})).encode()
    entries = decode_results(raw)["entry"]
    assert entries[0]["resource"]["subject"] == {"reference": "Patient/pt-1"}
    assert entries[1]["resource"]["patient"] == {"reference": OTHER}
