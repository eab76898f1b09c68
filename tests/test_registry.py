"""The registry drives the pipeline: hook modules say where their orders are, definitions say the rest."""
from __future__ import annotations

import importlib

import msgspec
import pytest
import responses

from hooks import SERVICES
from hooks.errors import PreconditionFailed
from hooks.pipeline import run
from hooks.registry import OnMissing, PrefetchKey, ServiceDefinition
from hooks.services import THIOPURINE_PREFETCH
from service import create_app
from tests.builders import PID, bundle, hook_request, patient, prefetch

BASE = "http://127.0.0.1:9/fhir"  # never reached: responses answers or refuses


@pytest.fixture(scope="module")
def env():
    return create_app({"auth_required": False, "database_url": "sqlite://"}).extensions["aza_hook_env"]


def variant(**policies: OnMissing) -> ServiceDefinition:
    """The order-sign service with other policies for some keys (not registered)."""
    sign = SERVICES["thiopurine-order-sign"]
    keys = {k: PrefetchKey(p.template, policies.get(k, p.on_missing)) for k, p in sign.prefetch.items()}
    return ServiceDefinition(id="variant", context=sign.context, title="t", description="d", usage_requirements="u",
                             prefetch=keys)


@pytest.mark.parametrize("name", ["order_sign", "order_select", "medication_prescribe"])
def test_a_hook_module_declares_its_context_keys_and_nothing_else(name):
    module = importlib.import_module(f"hooks.{name}")
    public = {k for k in vars(module) if not k.startswith("_") and k != "annotations"}
    assert public <= {"CONTEXT", "HookContext"}
    assert module.CONTEXT.hook == name.replace("_", "-")


def test_discovery_shows_the_definitions_templates(client):
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    for sid, definition in SERVICES.items():
        assert services[sid]["prefetch"] == {k: p.template for k, p in definition.prefetch.items()}
        assert definition.prefetch == THIOPURINE_PREFETCH
    assert SERVICES["thiopurine-order-sign"].required_keys == {"patient", "medications"}


def test_fail_policy_is_412_when_nothing_can_be_asked(env):
    req = hook_request(pre={"patient": patient()})  # no medications, no fhirServer
    with pytest.raises(PreconditionFailed, match="medications"):
        run(SERVICES["thiopurine-order-sign"], req, env)
    relaxed = variant(medications=OnMissing.FETCH)
    cards = run(relaxed, req, env).response["cards"]
    assert "active medications" in next(c for c in cards if c["source"]["topic"]["code"] == "data-incomplete")["detail"]


def test_omit_policy_never_fetches_and_says_the_check_was_not_done(env):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{BASE}/Patient/{PID}", json=patient())
        rsps.get(f"{BASE}/MedicationRequest", json=bundle())
        rsps.get(f"{BASE}/Observation", json=bundle())
        rsps.get(f"{BASE}/Condition", json=bundle())
        rsps.get(f"{BASE}/AllergyIntolerance", json=bundle())
        req = hook_request(fhir_server=BASE, token="t")
        cards = run(variant(pgx=OnMissing.OMIT), req, env).response["cards"]
        asked = [str(c.request.url) for c in rsps.calls]
    assert not any("84413-4" in u for u in asked), asked  # the pharmacogenomic search was not made
    assert "pgx-unavailable" in [c["source"]["topic"]["code"] for c in cards]


def test_omit_policy_uses_what_was_prefetched(env):
    req = hook_request(pre=prefetch())
    omitted = run(variant(pgx=OnMissing.OMIT), req, env)
    assert omitted.rule_ids == run(SERVICES["thiopurine-order-sign"], req, env).rule_ids
    assert "pgx-unavailable" not in omitted.rule_ids and "data-incomplete" not in omitted.rule_ids


def test_issue_10_keys_are_fetched_never_412_and_their_scope_is_asked_for(env):
    for key in ("immunizations", "past_medications"):
        assert THIOPURINE_PREFETCH[key].on_missing is OnMissing.FETCH
    for service in SERVICES.values():
        assert "patient/Immunization.read" in service.usage_requirements
        assert not {"immunizations", "past_medications"} & service.required_keys
    # the Immunization search fails: the call still answers, and the card names the check not done
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{BASE}/Immunization", status=503, json={"resourceType": "OperationOutcome", "issue": []})
        pre = prefetch()
        del pre["immunizations"]
        req = hook_request(pre=pre, fhir_server=BASE, token="t")
        result = run(SERVICES["thiopurine-order-sign"], req, _loopback(env))
    detail = "\n".join(c["detail"] for c in result.response["cards"])
    assert "immunization history" in detail and "error status" in detail


def _loopback(env):

    from outbound.fhir_client import Deadline
    from outbound.netguard import EgressPolicy

    return msgspec.structs.replace(env, request_deadline=Deadline(env.deadline_seconds, policy=EgressPolicy(allow_loopback=True)))
