"""Discovery, errors, CORS and feedback at the HTTP level."""
from __future__ import annotations

import json

import pytest

from service.validation import first_error
from tests.builders import SERVICE, hook_request, med_request, prefetch


def test_discovery_lists_one_service_per_hook(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    body = resp.get_json()
    assert first_error("DiscoveryResponse", body) is None
    by_hook = {s["hook"]: s for s in body["services"]}
    assert set(by_hook) == {"order-sign", "order-select", "medication-prescribe"}
    for s in body["services"]:
        assert s["id"] == SERVICE[s["hook"]]
        assert s["title"] and s["description"] and s["usageRequirements"]
        assert s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert "29463-7" in s["prefetch"]["weight"]
        for code in ("84413-4", "79713-4", "53040-2", "21563-2", "363779003"):
            assert code in s["prefetch"]["pgx"]


def test_discovery_is_generated_from_the_registry():
    from hooks import SERVICES

    assert {s.id for s in SERVICES.values()} == set(SERVICE.values())
    with pytest.raises(ValueError):
        from hooks.order_sign import CONTEXT
        from hooks.registry import ServiceDefinition, register

        register(ServiceDefinition(id="thiopurine-order-sign", context=CONTEXT, title="t", description="d",
                                   usage_requirements="u"))


def test_cors_on_discovery_and_preflight(client):
    resp = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    pre = client.options("/cds-services/thiopurine-order-sign", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    post = client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch()),
                       headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert post.headers["Access-Control-Allow-Origin"]


def _outcome(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return body["issue"][0]


def test_unknown_service_404(client):
    _outcome(client.post("/cds-services/nope", json=hook_request()), 404)
    _outcome(client.post("/cds-services/nope/feedback", json={"feedback": []}), 404)
    _outcome(client.get("/no-such-path"), 404)


def test_malformed_json_400(client):
    resp = client.post("/cds-services/thiopurine-order-sign", data="{not json", content_type="application/json")
    _outcome(resp, 400)


def test_schema_violation_names_the_field(client):
    req = hook_request(pre=prefetch())
    del req["hookInstance"]
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign", json=req), 400)
    assert "hookInstance" in issue["diagnostics"]
    req = hook_request(pre=prefetch())
    req["fhirServer"] = "ftp://nope"
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign", json=req), 400)
    assert issue["expression"] == ["$.fhirServer"]


def test_context_violation_names_the_field(client):
    req = hook_request(pre=prefetch())
    del req["context"]["draftOrders"]
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign", json=req), 400)
    assert "draftOrders" in issue["diagnostics"]
    req = hook_request("order-select", pre=prefetch())
    req["context"]["selections"] = "MedicationRequest/1"
    issue = _outcome(client.post("/cds-services/thiopurine-order-select", json=req), 400)
    assert issue["expression"] == ["$.context.selections"]


def test_hook_mismatch_400(client):
    req = hook_request("order-sign", pre=prefetch())
    _outcome(client.post("/cds-services/thiopurine-medication-prescribe", json=req), 400)


def test_wrong_content_type_415(client):
    resp = client.post("/cds-services/thiopurine-order-sign", data=json.dumps(hook_request()), content_type="text/plain")
    _outcome(resp, 415)


def test_body_too_large_413(app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = app.test_client().post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch()))
    _outcome(resp, 413)


def test_json_nested_too_deep_400(client):
    node: dict = {}
    deep = {"hook": "order-sign", "hookInstance": "x", "context": node}
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    _outcome(client.post("/cds-services/thiopurine-order-sign", json=deep), 400)
    resp = client.post("/cds-services/thiopurine-order-sign", data="[" * 100000, content_type="application/json")
    _outcome(resp, 400)


def test_412_when_required_data_is_not_prefetched_and_no_fhir_server(client):
    req = hook_request(pre={"pgx": prefetch()["pgx"]})
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign", json=req), 412)
    assert "medications" in issue["diagnostics"] and "patient" in issue["diagnostics"]


def test_unrelated_order_needs_no_data_and_gives_no_cards(call):
    req = hook_request(orders=[med_request("617993", "Amoxicillin 120 MG/ML", id="amox")])
    assert call(req) == []


def test_cds_hooks_1_0_nulls_are_accepted(call):
    req = hook_request(pre=prefetch())
    req["fhirAuthorization"] = None
    req["context"]["encounterId"] = None
    call(req)


def test_feedback_valid_200_invalid_400(client):
    from tests.issued import issue as issue_cards

    issue_cards(client.application.extensions["aza_feedback_store"], "4e0a3a1e-3283-4575-ab82-028d55fe2719")
    good = {"feedback": [{"card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "accepted",
                          "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                          "outcomeTimestamp": "2021-12-11T10:05:31Z"}]}
    assert client.post("/cds-services/thiopurine-order-sign/feedback", json=good).status_code == 200
    bad = {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]}
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign/feedback", json=bad), 400)
    assert "outcome" in issue["expression"][0]
    accepted_without_ids = {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]}
    _outcome(client.post("/cds-services/thiopurine-order-sign/feedback", json=accepted_without_ids), 400)



def test_a_body_with_many_violations_is_described_from_its_first_error(client, monkeypatch):
    """300,000 bad entries: the 400 names one of them without jsonschema collecting every error of the
    anyOf first (that cost ≈ 12 s of CPU per call)."""
    import service.validation as validation

    def refuse(errors):
        raise AssertionError("jsonschema asked to judge a structurally invalid body")

    monkeypatch.setattr(validation, "best_match", refuse)
    req = hook_request(pre=prefetch())
    req["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [1] * 300_000}
    issue = _outcome(client.post("/cds-services/thiopurine-order-sign", json=req), 400)
    assert "draftOrders" in issue["diagnostics"]
