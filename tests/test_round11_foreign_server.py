"""Round-11 review H2: an absolute reference naming this patient's id on another FHIR server is not this patient's.

A logical id is unique only within one server (FHIR R4 Reference: an absolute URL "resolves to the location where
the resource is found"). An absolute subject is this patient's only when its base is the request's fhirServer or the
base of the context Patient's own fullUrl (compared normalised: scheme and host case-insensitive, default port,
trailing slash). Otherwise it cannot be confirmed: set aside and named (gap ``unconfirmed_patient``), never clearing
a check nor making a finding. A draft order on another server is still checked, and named.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from fhir_mappers.subject import patient_verdict, reference_base, server_base
from service.cli import main
from tests.builders import bundle, weight
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review11"
TODAY = date(2026, 12, 7)
FOREIGN = "https://other-hospital.example.net/fhir/Patient/pt-1"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _gap(cards: list[dict]) -> dict:
    return next(c for c in cards if c["source"]["topic"]["code"] == "data-incomplete")


def test_a04_another_servers_normal_tpmt_does_not_clear_the_test() -> None:
    cards = case_cards(_case("a04_abs_url_other_server_tpmt"))
    assert "pgx-test-missing" in _topics(cards)
    gap = _gap(cards)
    assert gap["indicator"] == "warning"
    assert "could not confirm that 2 results are this patient's" in gap["detail"]
    assert FOREIGN in gap["detail"]
    assert "other-hospital" in gap["summary"] and len(gap["summary"]) <= 140


def test_a04b_another_servers_allopurinol_cuts_no_dose() -> None:
    cards = case_cards(_case("a04b_abs_url_other_server_allopurinol"))
    topics = _topics(cards)
    assert "interaction-xanthine-oxidase" not in topics and "data-incomplete" in topics
    assert FOREIGN in _gap(cards)["detail"]
    # the 150 mg start is advised as any new start (75 mg), never cut by two-thirds for someone else's allopurinol
    assert all("50 mg once daily" not in json.dumps(c.get("suggestions", [])) for c in cards)


def test_a04c_another_servers_poor_metabolizer_result_cancels_nothing() -> None:
    cards = case_cards(_case("a04c_abs_url_other_server_tpmt_pm"))
    topics = _topics(cards)
    assert "pgx-poor-metabolizer" not in topics
    assert "pgx-test-missing" in topics and "data-incomplete" in topics


def test_a10_own_absolute_references_on_the_context_server_are_used() -> None:
    cards = case_cards(_case("a10_own_abs_url_same_server"))
    assert not {"data-incomplete", "pgx-test-missing", "monitoring-cbc-due"} & set(_topics(cards))


@pytest.mark.parametrize("server", [
    "https://ehr.example.org/fhir", "https://ehr.example.org/fhir/", "HTTPS://EHR.Example.ORG/fhir",
    "https://ehr.example.org:443/fhir",
])
def test_the_server_base_is_compared_normalised(server: str) -> None:
    req = _case("a10_own_abs_url_same_server")
    req["fhirServer"] = server
    assert "data-incomplete" not in _topics(case_cards(req))


@pytest.mark.parametrize("server", ["https://ehr.example.org/other", "http://ehr.example.org/fhir",
                                    "https://ehr.example.org:8443/fhir", "https://ehr.example.net/fhir"])
def test_another_base_path_scheme_port_or_host_is_another_server(server: str) -> None:
    req = _case("a10_own_abs_url_same_server")
    req["fhirServer"] = server
    cards = case_cards(req)
    assert "data-incomplete" in _topics(cards)
    assert "could not confirm" in _gap(cards)["detail"]


def test_without_a_fhir_server_the_patients_own_full_url_confirms_the_base() -> None:
    req = _case("a10_own_abs_url_same_server")
    del req["fhirServer"]
    # decided: with no fhirServer and no fullUrl of the context Patient, an absolute reference cannot be confirmed
    cards = case_cards(req)
    assert "data-incomplete" in _topics(cards) and "pgx-test-missing" in _topics(cards)
    # the context Patient, included in the results' Bundle with its fullUrl, names the base
    pgx = req["prefetch"]["pgx"]
    pgx["entry"].append({"fullUrl": "https://ehr.example.org/fhir/Patient/pt-1",
                         "resource": copy.deepcopy(req["prefetch"]["patient"]), "search": {"mode": "include"}})
    assert not {"data-incomplete", "pgx-test-missing"} & set(_topics(case_cards(req)))


def test_check_cli_an_included_patient_sharing_the_mrn_names_the_base(tmp_path, capsys) -> None:
    """Through the HTTP path (a results key is decoded to the members the mappers read: the identifier is kept)."""
    req = _case("a10_own_abs_url_same_server")
    del req["fhirServer"]
    mrn = {"system": "http://ehr.example.org/mrn", "value": "MRN-1"}
    req["prefetch"]["patient"]["identifier"] = [mrn]
    req["prefetch"]["pgx"]["entry"].append({"fullUrl": "https://ehr.example.org/fhir/Patient/pt-1",
                                            "search": {"mode": "include"},
                                            "resource": {"resourceType": "Patient", "id": "pt-1", "identifier": [mrn]}})
    f = tmp_path / "req.json"
    f.write_text(json.dumps(req))
    assert main(["check", "--json", "--today", "2026-12-07", str(f)]) == 0
    topics = _topics(json.loads(capsys.readouterr().out)["cards"])
    assert not {"data-incomplete", "pgx-test-missing"} & set(topics)


def test_another_servers_patient_with_the_same_id_names_no_base() -> None:
    """An included Patient of another server that carries the same local id (another person) does not confirm
    that server's references: it is not the context Patient's resource and shares no identifier with it."""
    req = _case("a04_abs_url_other_server_tpmt")
    del req["fhirServer"]
    req["prefetch"]["patient"]["identifier"] = [{"system": "http://ehr.example.org/mrn", "value": "MRN-1"}]
    req["prefetch"]["pgx"]["entry"].append({"fullUrl": FOREIGN, "search": {"mode": "include"}, "resource": {
        "resourceType": "Patient", "id": "pt-1", "birthDate": "1990-01-01", "gender": "male",
        "identifier": [{"system": "http://other-hospital.example.net/mrn", "value": "X-77"}]}})
    assert "pgx-test-missing" in _topics(case_cards(req))
    # the same Patient sharing the context Patient's MRN is this patient's record on that server
    req["prefetch"]["pgx"]["entry"][-1]["resource"]["identifier"].append(
        {"system": "http://ehr.example.org/mrn", "value": "MRN-1"})
    assert "pgx-test-missing" not in _topics(case_cards(req))


def test_a_draft_order_on_another_server_is_checked_and_named() -> None:
    req = _case("a10_own_abs_url_same_server")
    draft = req["context"]["draftOrders"]["entry"][0]["resource"]
    draft["subject"] = {"reference": FOREIGN}
    cards = case_cards(req)
    gap = _gap(cards)
    assert "it names a patient on another FHIR server" in gap["detail"] and FOREIGN in gap["detail"]
    assert "confirm the patient before signing" in gap["summary"]
    # still checked as written: a poor-metabolizer result of this patient would still act on it
    req2 = _case("a10_own_abs_url_same_server")
    req2["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": FOREIGN}
    for e in req2["prefetch"]["pgx"]["entry"][:1]:
        e["resource"]["valueCodeableConcept"] = {"text": "TPMT *3A/*3A"}
    assert "pgx-poor-metabolizer" in _topics(case_cards(req2))


def test_another_id_on_another_server_still_names_another_patient() -> None:
    w = weight(60)
    w["subject"] = {"reference": "https://other-hospital.example.net/fhir/Patient/pt-9"}
    facts = build_facts([], {"weight": bundle(w)}, today=TODAY, patient_id="pt-1",
                        fhir_server="https://ehr.example.org/fhir")
    assert facts.weights == [] and [g.key for g in facts.gaps] == ["other_patient"]


def test_verdicts_and_bases() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": FOREIGN + "/_history/2"}}
    own = frozenset({"https://ehr.example.org/fhir"})
    verdict = patient_verdict(obs, "pt-1", bases=own)
    assert verdict is not None and verdict[0] is False and verdict[1].endswith("other-hospital.example.net/fhir/Patient/pt-1/_history/2")
    assert patient_verdict(obs, "pt-1", bases=frozenset({"https://other-hospital.example.net/fhir"})) is None
    assert patient_verdict(obs, "pt-1") is None  # bases not given: not compared (callers that read no request)
    assert patient_verdict({"subject": {"reference": "Patient/pt-1"}}, "pt-1", bases=frozenset()) is None
    assert server_base("HTTPS://EHR.example.org:443/fhir/") == "https://ehr.example.org/fhir"
    assert server_base("http://ehr.example.org:8080/fhir") == "http://ehr.example.org:8080/fhir"
    assert server_base("urn:uuid:1") is None and server_base(None) is None
    assert reference_base("https://ehr.example.org/fhir/Patient/pt-1/_history/3") == "https://ehr.example.org/fhir"
    assert reference_base("Patient/pt-1") is None


def test_check_cli_compares_with_the_files_fhir_server_without_contacting_it(tmp_path, capsys) -> None:
    for name, incomplete in (("a10_own_abs_url_same_server", False), ("a04_abs_url_other_server_tpmt", True)):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(copy.deepcopy(_case(name))))
        assert main(["check", "--json", "--today", "2026-12-07", str(f)]) == 0
        topics = _topics(json.loads(capsys.readouterr().out)["cards"])
        assert ("data-incomplete" in topics) is incomplete, (name, topics)


def test_the_smart_app_compares_with_the_server_it_read_the_record_from() -> None:
    """The SMART app posts the record it read and (round 11) the FHIR server it read it from: the cards and the
    picture compare absolute references with it, as a hook call with that fhirServer does."""
    from service import create_app

    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-12-07"})
    req = _case("a10_own_abs_url_same_server")
    drafts = [e["resource"] for e in req["context"]["draftOrders"]["entry"]]
    body = {"patientId": "pt-1", "prefetch": req["prefetch"], "appContext": {"draftOrders": drafts}}
    client = app.test_client()
    without = client.post("/smart/api/picture", json=body).get_json()
    assert "data-incomplete" in without["findings"]
    with_server = client.post("/smart/api/picture", json={**body, "fhirServer": req["fhirServer"]}).get_json()
    assert not {"data-incomplete", "pgx-test-missing"} & set(with_server["findings"])


def test_a_set_aside_order_is_named_by_its_drug() -> None:
    """Review of session 11 (r9 c58 re-run): an allopurinol order whose absolute subject cannot be confirmed (on
    another server, or with no fhirServer) is set aside, so no xanthine-oxidase card; the data-incomplete card must say
    WHICH order was not used, so the prescriber can see that it was allopurinol."""
    cards = case_cards(_case("a04b_abs_url_other_server_allopurinol"))
    gap = next(c for c in cards if c["source"]["topic"]["code"] == "data-incomplete")
    assert "what it is: 'allopurinol" in gap["detail"]
