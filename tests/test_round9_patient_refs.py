"""Round-9 review H1, H2, M4, m1: another patient's data named in any comparable form is set aside.

- H1: an identifier-only subject (``Reference.identifier``) or a conditional reference ``Patient?identifier=sys|MRN``
  whose system is one of the context Patient's identifier systems but whose value is not this patient's, and a
  lowercase ``patient/<id>``, name another patient (c04, c54, c55, c85); the same forms naming this patient are
  used (c08, c57).
- H2: a ``urn:uuid:`` reference that is the fullUrl of a Patient entry of the same Bundle names that Patient (c03,
  control c53).
- M4: the order being signed names another patient: the summary says to confirm the patient (c12).
- m1: the summary quotes the part of a long reference that names the patient (c07).
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers import build_facts
from fhir_mappers.read_members import decode_results
from fhir_mappers.subject import bundle_patients, naming_part, other_patient, patient_identifiers, quoted
from tests.builders import bundle, hook_request, lab, med_request, patient, prefetch, weight
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review9"
MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"


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

@pytest.mark.parametrize("prefix, quoted", [
    ("c04", "MRN-9999"),  # identifier-only subject, same system as this patient's MRN
    ("c54", "MRN-9999"),  # conditional reference Patient?identifier=system|MRN-9999
    ("c85", "patient/pt-999"),  # lowercase type
    ("c03", "Patient/pt-999"),  # urn:uuid resolving in the same Bundle to Patient pt-999
])
def test_another_patients_cbc_does_not_make_this_patients_cbc_current(prefix: str, quoted: str) -> None:
    cards = case_cards(_request(prefix))
    due = _topic(cards, "monitoring-cbc-due")
    assert due and "last CBC 2026-07-01" in due[0]["summary"], [c["summary"] for c in cards]
    gap = _gap_card(cards)
    assert "blood counts and liver tests" in gap["summary"] and f"'{quoted}'" in gap["summary"]
    assert "7 results name another patient" in gap["detail"]
    assert len(gap["summary"]) <= 140


def test_c55_another_patients_tpmt_poor_metabolizer_creates_no_card() -> None:
    cards = case_cards(_request("c55"))
    assert not _topic(cards, "pgx-poor-metabolizer")
    assert [c["source"]["topic"]["code"] for c in cards] == ["data-incomplete"]
    gap = _gap_card(cards)
    assert "TPMT / NUDT15 results 'MRN-9999'" in gap["summary"]
    assert f"identifier {MRN_SYSTEM}|MRN-9999" in gap["detail"]


@pytest.mark.parametrize("prefix", ["c53"])
def test_this_patients_data_in_unusual_forms_is_used(prefix: str) -> None:
    """Controls: absolute, _history, urn:uuid resolving to pt-1 and own-MRN identifier references are this
    patient's data: no card at all."""
    assert case_cards(_request(prefix)) == []


def test_c08_an_unresolvable_urn_uuid_is_not_confirmed_as_this_patient() -> None:
    """c08: absolute, _history and own-MRN references are used; its two results whose subject is a urn:uuid that
    resolves to no entry of the Bundle cannot be confirmed as this patient's (round-10 H1, which changed this
    expectation from "no card"): set aside and named, nothing else."""
    request = _request("c08")
    # round-11 H2: c08 names no fhirServer, so its absolute references ("https://ehr.example.org/fhir/Patient/pt-1")
    # cannot be confirmed (a logical id is unique only within one server); on that fhirServer they are this patient's
    request["fhirServer"] = "https://ehr.example.org/fhir"
    cards = case_cards(request)
    assert [c["source"]["topic"]["code"] for c in cards] == ["data-incomplete"]
    assert "could not confirm that 2 results are this patient's" in cards[0]["detail"]
    assert "urn:uuid:1111aaaa-0000-4000-8000-000000000001" in cards[0]["detail"]
    del request["fhirServer"]
    detail = _gap_card(case_cards(request))["detail"]
    assert "subject sent as https://ehr.example.org/fhir/Patient/pt-1" in detail


def test_c57_own_mrn_identifier_result_is_used() -> None:
    cards = case_cards(_request("c57"))
    assert _topic(cards, "cytopenia-severe") and not _topic(cards, "data-incomplete")


def test_c12_order_for_another_patient_asks_to_confirm_the_patient() -> None:
    gap = _gap_card(case_cards(_request("c12")))
    assert gap["summary"] == ("Order being signed names 'Patient/pt-999', not this patient: confirm the patient "
                              "before signing")
    assert "could not be used" not in gap["summary"]
    assert "it was checked as written" in gap["detail"] and "check that the order is for this patient" in gap["detail"]


def test_c12_with_another_gap_says_how_many_more() -> None:
    request = _request("c12")
    request["prefetch"]["weight"] = None  # the weight could not be obtained
    gap = _gap_card(case_cards(request))
    assert gap["summary"].startswith("Order being signed names 'Patient/pt-999', not this patient: confirm the patient")
    assert gap["summary"].endswith("; 1 more check incomplete") and len(gap["summary"]) <= 140


def test_c07_summary_quotes_the_part_that_names_the_patient() -> None:
    cards = case_cards(_request("c07"))
    assert not _topic(cards, "interaction-xanthine-oxidase")
    gap = _gap_card(cards)
    assert "medications 'Patient/pt-999'" in gap["summary"]
    assert "https://ehr.example.org/'" not in gap["summary"]
    assert "https://ehr.example.org/fhir/Patient/pt-999/_history/3" in gap["detail"]


@pytest.mark.parametrize("prefix", ["c03", "c04", "c54", "c55", "c85"])
def test_the_same_case_naming_this_patient_has_no_gap(prefix: str) -> None:
    """Control: the foreign forms turned to this patient (MRN-1001, pt-1) are used: no data gap."""
    text = json.dumps(_request(prefix)).replace("MRN-9999", "MRN-1001").replace("pt-999", "pt-1")
    cards = case_cards(json.loads(text))
    assert not _topic(cards, "data-incomplete"), [c["summary"] for c in cards]
    assert not _topic(cards, "monitoring-cbc-due")


# ------------------------------------------------------------------ what is compared

IDS = patient_identifiers([{"resourceType": "Patient", "id": "pt-1",
                            "identifier": [{"system": MRN_SYSTEM, "value": "MRN-1001"},
                                           {"system": MRN_SYSTEM, "value": "MRN-0007"},  # an older MRN
                                           {"system": "urn:ssn"}, "junk"]}])


def _obs(subject: object) -> dict:
    return {"resourceType": "Observation", "id": "o", "subject": subject}


@pytest.mark.parametrize("subject, other", [
    ({"identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}, f"identifier {MRN_SYSTEM}|MRN-9999"),
    ({"identifier": {"system": f" {MRN_SYSTEM} ", "value": "MRN-9999 "}}, f"identifier {MRN_SYSTEM}|MRN-9999"),
    ({"identifier": {"system": MRN_SYSTEM, "value": "MRN-1001"}}, None),
    ({"identifier": {"system": MRN_SYSTEM, "value": "MRN-0007"}}, None),
    ({"identifier": {"system": "urn:other-hospital", "value": "MRN-9999"}}, None),  # a system the Patient lacks
    ({"identifier": {"value": "MRN-9999"}}, None),
    ({"identifier": {"system": MRN_SYSTEM}}, None),
    ({"identifier": "MRN-9999"}, None),
    ({"reference": f"Patient?identifier={MRN_SYSTEM}|MRN-9999"}, f"Patient?identifier={MRN_SYSTEM}|MRN-9999"),
    ({"reference": f"Patient?identifier={MRN_SYSTEM}%7CMRN-9999"}, f"Patient?identifier={MRN_SYSTEM}%7CMRN-9999"),
    ({"reference": f"https://ehr.example/fhir/Patient?identifier={MRN_SYSTEM}|MRN-9999"},
     quoted(f"https://ehr.example/fhir/Patient?identifier={MRN_SYSTEM}|MRN-9999")),
    ({"reference": f"Patient?identifier={MRN_SYSTEM}|MRN-1001"}, None),
    ({"reference": "Patient?identifier=urn:other-hospital|MRN-9999"}, None),
    ({"reference": "Patient?identifier=MRN-9999"}, None),  # no system: cannot be compared
    ({"reference": "Patient?_id=pt-999"}, "Patient?_id=pt-999"),
    ({"reference": "Patient?_id=pt-1"}, None),
    ({"reference": f"Patient?identifier={MRN_SYSTEM}|MRN-1001&_id=pt-999"},
     quoted(f"Patient?identifier={MRN_SYSTEM}|MRN-1001&_id=pt-999")),  # every criterion must hold
    ({"reference": "patient/pt-999"}, "patient/pt-999"),
    ({"reference": "PATIENT/pt-999"}, "PATIENT/pt-999"),
    ({"reference": "patient/pt-1"}, None),
    ({"reference": "Patient/PT-1"}, "Patient/PT-1"),  # FHIR ids are case-sensitive
    ({"reference": "https://ehr.example/fhir/patient/pt-999/_history/2"}, "https://ehr.example/fhir/patient/pt-999/_history/2"),
    # a literal reference that can be compared decides, whatever identifier comes with it
    ({"reference": "Patient/pt-1", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}, None),
    # an unresolvable urn:uuid cannot be compared: its identifier can
    ({"reference": "urn:uuid:6a1c9b0e-5d1f-4c0e-9a1e-1b2c3d4e5f60", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}},
     f"identifier {MRN_SYSTEM}|MRN-9999"),
    ({"reference": "urn:uuid:6a1c9b0e-5d1f-4c0e-9a1e-1b2c3d4e5f60"}, None),
    # an identifier of something that is not a Patient is no MRN
    ({"reference": "Group/g-1", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}, None),
    ({"type": "Group", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}, None),
    ({"type": "Patient", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}, f"identifier {MRN_SYSTEM}|MRN-9999"),
    ({"type": "http://hl7.org/fhir/StructureDefinition/Patient", "identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}},
     f"identifier {MRN_SYSTEM}|MRN-9999"),
])
def test_what_is_compared(subject: object, other: str | None) -> None:
    assert other_patient(_obs(subject), "pt-1", IDS) == other


def test_without_the_patients_identifiers_an_identifier_cannot_be_compared() -> None:
    subject = {"identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}
    assert other_patient(_obs(subject), "pt-1") is None
    assert other_patient(_obs(subject), "pt-1", {}) is None
    assert other_patient(_obs({"reference": f"Patient?identifier={MRN_SYSTEM}|MRN-9999"}), "pt-1") is None


URN_OTHER, URN_OWN, URN_NO_ID = (f"urn:uuid:6a1c9b0e-5d1f-4c0e-9a1e-00000000000{i}" for i in (1, 2, 3))
INCLUDED: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [
    {"fullUrl": URN_OTHER, "resource": {"resourceType": "Patient", "id": "pt-999"}},
    {"fullUrl": URN_OWN, "resource": {"resourceType": "Patient", "id": "pt-1"}},
    {"fullUrl": URN_NO_ID, "resource": {"resourceType": "Patient"}},
    {"fullUrl": "urn:uuid:not-a-patient", "resource": {"resourceType": "Group", "id": "g"}},
    "junk", {"fullUrl": 7, "resource": {"resourceType": "Patient", "id": "pt-7"}},
]}


@pytest.mark.parametrize("reference, other", [
    (URN_OTHER, f"{URN_OTHER} = Patient/pt-999"),
    (URN_OWN, None),
    (URN_NO_ID, None),  # a Patient entry without an id: cannot be compared
    ("urn:uuid:not-a-patient", None),
    ("urn:uuid:not-in-the-bundle", None),
])
def test_a_reference_resolves_against_the_fullurls_of_the_same_bundle(reference: str, other: str | None) -> None:
    full_urls = bundle_patients(INCLUDED)
    assert set(full_urls) == {URN_OTHER, URN_OWN, URN_NO_ID}
    assert other_patient(_obs({"reference": reference}), "pt-1", IDS, full_urls) == other


def test_bundle_patients_of_what_is_no_bundle() -> None:
    assert bundle_patients(None) == {} and bundle_patients(patient("pt-1")) == {}
    assert bundle_patients({"resourceType": "Bundle", "entry": "x"}) == {}


@pytest.mark.parametrize("quote, part", [
    ("https://ehr.example.org/fhir/Patient/pt-999/_history/3", "Patient/pt-999"),
    (f"{URN_OTHER} = Patient/pt-999", "Patient/pt-999"),
    ("patient/pt-999", "patient/pt-999"),
    (f"identifier {MRN_SYSTEM}|MRN-9999", "MRN-9999"),
    (f"Patient?identifier={MRN_SYSTEM}|MRN-9999", "MRN-9999"),
    ("Patient?_id=pt-999", "Patient?_id=pt-999"),
    (f"…identifier={MRN_SYSTEM}|MRN-1001&_id=pt-999", f"…identifier={MRN_SYSTEM}|MRN-1001&_id=pt-999"),
])
def test_the_part_that_names_the_patient(quote: str, part: str) -> None:
    assert naming_part(quote) == part


def test_a_long_reference_is_shortened_from_the_left() -> None:
    long = "https://ehr.example/" + "x" * 200 + "/Patient/pt-9"
    quote = other_patient(_obs({"reference": long}), "pt-1") or ""
    assert len(quote) == 60 and quote.startswith("…") and quote.endswith("/Patient/pt-9")


# ------------------------------------------------------------------ through the mapping stage

def _build(data: dict, drafts: list[dict] | None = None):
    return build_facts(drafts or [], data, today=date(2026, 12, 7), patient_id="pt-1")


def _mrn_patient(*values: str) -> dict:
    p = patient("pt-1")
    p["identifier"] = [{"system": MRN_SYSTEM, "value": v} for v in values]
    return p


def test_every_key_compares_identifiers_with_the_context_patients() -> None:
    theirs = {"identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}
    w = weight(90)
    w["subject"] = theirs
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo", status="active")
    allo["subject"] = theirs
    facts = _build({"patient": _mrn_patient("MRN-1001"), "weight": bundle(w), "medications": bundle(allo)})
    assert not facts.weights and not facts.active_medications
    assert {g.what for g in facts.gaps if g.key == "other_patient"} == {"body weight", "medications"}
    assert all(g.sent == "MRN-9999" for g in facts.gaps)


def test_a_patient_record_of_another_patient_gives_no_identifiers() -> None:
    """The ``patient`` key holds another patient's record (set aside): its MRN is not this patient's, so an
    identifier reference in that system cannot be compared: it cannot be confirmed as this patient's and is set
    aside (round-10 H1; before, it was kept)."""
    other = _mrn_patient("MRN-9999")
    other["id"] = "pt-999"
    w = weight(60)
    w["subject"] = {"identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}
    facts = _build({"patient": other, "weight": bundle(w)})
    assert facts.weights == []
    assert any(g.key == "unconfirmed_patient" for g in facts.gaps)


def test_a_contained_result_resolves_against_its_reports_bundle() -> None:
    theirs = lab("6690-2", 6.0, "10*9/L", id="wbc-x")
    theirs["subject"] = {"reference": URN_OTHER}
    report = {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "final", "subject": {"reference": "Patient/pt-1"},
              "code": {"text": "CBC"}, "contained": [theirs], "result": [{"reference": "#wbc-x"}]}
    labs = copy.deepcopy(INCLUDED)
    labs["entry"].append({"resource": report})
    facts = _build({"labs": labs})
    assert not facts.labs
    (gap,) = [g for g in facts.gaps if g.key == "other_patient"]
    assert gap.sent == "Patient/pt-999"


def test_a_draft_order_with_another_patients_identifier_is_named() -> None:
    order = med_request(daily_mg=100)
    order["subject"] = {"identifier": {"system": MRN_SYSTEM, "value": "MRN-9999"}}
    facts = _build({"patient": _mrn_patient("MRN-1001")}, drafts=[order])
    (gap,) = [g for g in facts.gaps if g.key == "other_patient_order"]
    assert gap.what == "the order being signed" and gap.sent == "MRN-9999"
    assert facts.orders  # still checked


def test_the_typed_decoder_keeps_the_fullurls_and_ids_it_resolves_against() -> None:
    labs = _request("c03")["prefetch"]["labs"]
    decoded = decode_results(json.dumps(labs).encode())
    assert bundle_patients(decoded) == {k: {"resourceType": "Patient", "id": v["id"]}
                                        for k, v in bundle_patients(labs).items()}


def test_an_allopurinol_order_for_another_patient_asks_to_confirm_the_patient(call) -> None:
    """The interacting drug alone (no thiopurine ordered) for another patient: the same confirm-the-patient
    summary."""
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo-new", daily_mg=100, pid="pt-999")
    aza = med_request(id="aza-active", status="active", authored="2026-01-01", daily_mg=150)
    cards = call(hook_request(orders=[allo], pre=prefetch(meds=[aza])))
    gap = _gap_card(cards)
    assert gap["summary"].startswith("Order being signed names 'Patient/pt-999', not this patient")


def test_the_smart_picture_sets_aside_what_the_cards_set_aside() -> None:
    """The SMART app's picture is mapped as the cards are: another patient's CBC (c04, identifier-only subject)
    does not date this patient's CBC there either."""
    from service import create_app

    request = _request("c04")
    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-12-07"})
    resp = app.test_client().post("/smart/api/picture", json={
        "patientId": "pt-1", "prefetch": request["prefetch"],
        "appContext": {"patient": "pt-1", "draftOrders": [e["resource"] for e in request["context"]["draftOrders"]["entry"]]}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["picture"]["monitoring"]["cbc"]["last"] == "2026-07-01"
