"""The hot path's shortcuts give the answers of the code they stand in for.

- the compiled validator (jsonschema-rs) only ever says "valid" where jsonschema does
  (it is asked first; jsonschema decides the rest and words the error);
- one pass over Observation.interpretation gives what the two readers give;
- the FHIR GET prepared by hand is the request ``Session.get`` prepares (URL, headers);
- responses written by orjson are the standard library's JSON, and what orjson will not
  write (a lone surrogate) still gets an answer;
- ``gc.freeze`` before the fork (``prepare_worker_heap``).
"""
from __future__ import annotations

import copy
import gc
import json

import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mappers.observations import _interpretations
from outbound.fhir_client import FHIR_JSON, FhirClient
from service.validation import fast_validator, first_error, validator
from tests.builders import bundle, hook_request, med_request, normal_labs, patient

PROPS = settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from(["", " ", "x", "order-sign", "http://127.0.0.1/fhir", "ftp://x", "a/b", "2026-11-23",
                                       "2026-11-23T10:00:00Z", "not a date", "\n", "Bearer", "x\n"]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=8)
KEYS = ["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization", "access_token",
        "token_type", "expires_in", "scope", "subject", "patientId", "userId", "draftOrders", "feedback", "card",
        "outcome", "outcomeTimestamp", "acceptedSuggestions", "overrideReason", "reason", "id", "extension"]


def _valid_body() -> dict:
    return hook_request(pre={"patient": patient(), "medications": bundle(med_request("519", "allopurinol", id="a1")),
                             "labs": bundle(*normal_labs())},
                        fhir_server="http://127.0.0.1:9/fhir", token="tok")


@st.composite
def mutated(draw, base: dict):
    """``base`` with a few keys (at any depth) replaced, removed or added."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        node = body
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "add" or not node:
            node[draw(st.sampled_from(KEYS))] = draw(JSON_VALUE)
        elif action == "remove":
            node.pop(draw(st.sampled_from(sorted(node))))
        else:
            node[draw(st.sampled_from(sorted(node)))] = draw(JSON_VALUE)
    return body


def _feedback_body() -> dict:
    return {"feedback": [{"card": "7a2b0a4e-3c1d-4e5f-8a9b-0c1d2e3f4a5b", "outcome": "overridden",
                          "overrideReason": {"reason": {"code": "x", "system": "http://example.org", "display": "X"},
                                             "userComment": "ok"},
                          "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}


@pytest.mark.skipif(fast_validator("ServiceRequest") is None, reason="jsonschema-rs is a runtime dependency; not installed")
@PROPS
@given(data=st.data(), definition=st.sampled_from(["ServiceRequest", "hook:order-sign", "hook:order-select",
                                                   "hook:medication-prescribe", "FeedbackRequest"]))
def test_compiled_validator_is_never_more_lenient_than_jsonschema(data, definition):
    if definition == "FeedbackRequest":
        base = _feedback_body()
    elif definition.startswith("hook:"):
        base = hook_request(definition[5:])["context"]
    else:
        base = _valid_body()
    body = data.draw(st.one_of(mutated(base), JSON_VALUE))
    if fast_validator(definition).is_valid(body):
        assert validator(definition).is_valid(body), json.dumps(body)[:2000]
    assert (first_error(definition, body) is None) == validator(definition).is_valid(body)


def test_compiled_validator_agrees_on_the_valid_bodies():
    assert fast_validator("ServiceRequest").is_valid(_valid_body())
    assert fast_validator("FeedbackRequest").is_valid(_feedback_body())
    message, path = first_error("ServiceRequest", {"hook": "order-sign"}) or ("", "")
    assert path == "$" and message.replace('"', "'") == "$: 'hookInstance' is a required property"


INTERP_LEAF = st.one_of(st.none(), st.text(max_size=3), st.integers(), st.booleans())
CODING = st.dictionaries(st.sampled_from(["code", "display", "system"]), INTERP_LEAF, max_size=3)
CONCEPT = st.one_of(st.dictionaries(st.sampled_from(["coding", "text", "code", "display"]),
                                    st.one_of(INTERP_LEAF, CODING, st.lists(st.one_of(CODING, INTERP_LEAF), max_size=3)),
                                    max_size=3), INTERP_LEAF)


@settings(deadline=None, max_examples=1500)
@given(st.one_of(st.lists(CONCEPT, max_size=3), CONCEPT))
def test_the_interpretation_reader_reads_any_shape(value):
    """One reader of Observation.interpretation (the two readers and their one-pass twin became one, issue 20):
    any shape gives the laboratory's string codes as sent and its words in lower case, never an error."""
    flags, words = _interpretations({"interpretation": value})
    assert isinstance(flags, tuple) and all(isinstance(f, str) and f for f in flags)
    assert words == words.lower()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/fhir/Observation?patient=p1&code=http://loinc.org|6690-2,http://loinc.org|751-8&_sort=-date",
    "http://127.0.0.1:9/fhir/Patient/a b",
    "http://127.0.0.1:9/fhir/Observation?code=%7C6690-2&x=ü",
    "http://127.0.0.1:9/fhir/MedicationRequest?patient=p%2F1&status=active,on-hold",
])
@responses.activate
def test_fhir_get_is_what_session_get_sends(url):
    """The FHIR GET is prepared by requests' public ``Request.prepare`` and sent by the transport
    adapter: the URL and headers sent are the ones ``Session.prepare_request`` gives (nothing of
    requests is copied, issue 20)."""
    from outbound.fhir_client import Deadline
    from outbound.netguard import EgressPolicy

    responses.get(url.split("?")[0].replace(" ", "%20"), json={"resourceType": "Bundle"})
    client = FhirClient()
    try:
        try:
            client.get_json(url, "tok", Deadline(5, policy=EgressPolicy(allow_loopback=True)))
        except Exception:  # noqa: BLE001 - only the request sent matters here
            pass
        theirs = client.session.prepare_request(requests.Request(
            "GET", url, headers={"Accept": FHIR_JSON, "Accept-Encoding": "gzip, deflate", "Authorization": "Bearer tok"}))
        sent = responses.calls[0].request
        assert sent.url == theirs.url
        assert {k: v for k, v in sent.headers.items()} == dict(theirs.headers)
        assert sent.method == "GET" and sent.body is None
    finally:
        client.close()


@responses.activate
def test_fhir_body_read_with_orjson_or_the_standard_library():
    """orjson reads the usual body; the standard library reads what orjson refuses (another encoding),
    but NaN/Infinity, which is not JSON, is a bad response: it never reaches a mapper."""
    from outbound.fhir_client import Deadline, FhirBadResponse
    from outbound.netguard import EgressPolicy

    responses.get("http://127.0.0.1:9/fhir/Patient/p1", body=b'{"resourceType":"Patient","id":"p1","x":NaN}',
                  content_type="application/fhir+json")
    responses.get("http://127.0.0.1:9/fhir/Patient/p2", body='{"resourceType":"Patient","id":"p2"}'.encode("utf-16"),
                  content_type="application/fhir+json")
    client = FhirClient()
    policy = EgressPolicy(allow_loopback=True)
    try:
        with pytest.raises(FhirBadResponse):
            client.get_json("http://127.0.0.1:9/fhir/Patient/p1", "tok", Deadline(5, policy=policy))
        assert client.get_json("http://127.0.0.1:9/fhir/Patient/p2", "tok", Deadline(5, policy=policy))["id"] == "p2"
    finally:
        client.close()
    assert responses.calls[0].request.headers["Authorization"] == "Bearer tok"


def test_responses_are_the_standard_librarys_json(app):
    from service.wire import json_response as _json_response

    body = {"cards": [{"summary": "é – ≥ 50 %", "n": 1.5, "big": 10 ** 17, "none": None, "list": [True, False]}], 3: "x"}
    with app.app_context():
        data = _json_response(body).get_data()
        lone = _json_response({"x": "\ud800"}).get_data()
    assert json.loads(data) == json.loads(json.dumps(body))
    assert json.loads(lone) == {"x": "\ud800"}  # orjson refuses it; the standard library escapes it


def test_worker_heap_is_frozen_before_the_fork():
    from service.wsgi import prepare_worker_heap

    gc.unfreeze()
    try:
        prepare_worker_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
