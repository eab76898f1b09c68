"""A prefetched value must have the shape the FHIR-server path would accept for its key (a search key
a Bundle whose ``entry`` is absent or a list, ``patient`` a Patient); a malformed one is treated like a
missing key (fetched, else a data gap naming the key), never read as "no data". And a suggestion label
whose template fails at run time still gives the card, under a plain fixed label."""
from __future__ import annotations

import json
import re

import jinja2
import pytest
import responses

from hooks.gather import prefetch_usable
from hooks.prefetch import PREFETCH
from hooks.wording import wording as catalogue
from tests.builders import bundle, hook_request, normal_labs, prefetch
from tests.conftest import rule_ids

BASE = "https://ehr.example/r4/fhir"
TOKEN = "secret-access-token-123"

MALFORMED_LABS = [
    {"resourceType": "Bundle", "entry": "x"},
    {"resourceType": "Bundle", "entry": {"resource": {}}},
    {"resourceType": "Patient", "id": "pt-1"},
    {"resourceType": "Observation", "id": "o-1"},
]


@pytest.mark.parametrize("value", MALFORMED_LABS, ids=["entry-string", "entry-object", "patient", "observation"])
def test_malformed_labs_prefetch_is_a_data_gap_not_no_data(call, value):
    pre = prefetch()
    pre["labs"] = value
    cards = call(hook_request(pre=pre))
    assert "data-incomplete" in rule_ids(cards), rule_ids(cards)
    card = next(c for c in cards if c["source"]["topic"]["code"] == "data-incomplete")
    assert "blood counts" in card["detail"] and "not prefetched" in card["detail"]  # names the labs group


def test_well_formed_labs_prefetch_is_no_gap(call):
    cards = call(hook_request(pre=prefetch()))
    assert "data-incomplete" not in rule_ids(cards)
    pre = prefetch()
    pre["labs"] = {"resourceType": "Bundle", "type": "searchset"}  # no entry: a search that found nothing
    assert "data-incomplete" not in rule_ids(call(hook_request(pre=pre)))


def test_malformed_labs_prefetch_is_fetched_when_a_fhir_server_is_given(call):
    pre = prefetch()
    pre["labs"] = {"resourceType": "Bundle", "entry": "x"}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/Observation\?.*"),
                 body=json.dumps(bundle(*normal_labs())), content_type="application/fhir+json")
        cards = call(hook_request(pre=pre, fhir_server=BASE, token=TOKEN))
        assert len(rsps.calls) == 1
        assert "6690-2" in str(rsps.calls[0].request.url)  # the labs query
    assert "data-incomplete" not in rule_ids(cards)


def test_patient_key_must_hold_a_patient(call):
    pre = prefetch()
    pre["patient"] = bundle()  # required key, no FHIR server to ask: 412, not a patient of unknown age
    body = call(hook_request(pre=pre), status=412)
    assert "patient" in json.dumps(body)


def test_shape_rules():
    assert prefetch_usable(bundle(), PREFETCH["labs"])
    assert prefetch_usable({"resourceType": "Bundle"}, PREFETCH["labs"])
    assert not prefetch_usable({"resourceType": "Bundle", "entry": "x"}, PREFETCH["labs"])
    assert not prefetch_usable({"resourceType": "Patient"}, PREFETCH["labs"])
    assert not prefetch_usable({"resourceType": "OperationOutcome"}, PREFETCH["labs"])
    assert not prefetch_usable(None, PREFETCH["labs"])
    assert prefetch_usable({"resourceType": "Patient", "id": "pt-1"}, PREFETCH["patient"])
    assert not prefetch_usable(bundle(), PREFETCH["patient"])


def test_failing_suggestion_label_falls_back_to_a_plain_label(call, monkeypatch, caplog):
    failing = jinja2.Environment().from_string("{{ 1 // 0 }}")  # fails at run time, not at compile time
    entry = catalogue()["pgx-test-missing"]
    for key in list(entry.labels):
        monkeypatch.setitem(entry.labels, key, failing)
    pre = prefetch(pgx=[])
    with caplog.at_level("ERROR", logger="aza_cds.cards"):
        cards = call(hook_request(pre=pre))
    assert rule_ids(cards) == ["pgx-test-missing"]
    suggestions = cards[0]["suggestions"]
    assert suggestions and all(s["label"] == "Order the test" for s in suggestions)
    assert all(a["description"] == "Order the test" for s in suggestions for a in s["actions"])
    failed = [r for r in caplog.records if r.getMessage() == "suggestion label failed"]
    assert failed and all(getattr(r, "rule_id", None) == "pgx-test-missing" for r in failed)
