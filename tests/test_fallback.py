"""Prefetch present / partly absent / absent: the FHIR fallback (``responses``, no network)."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tests.builders import bundle, genotype_ig, hook_request, med_request, normal_labs, patient, prefetch, weight
from tests.conftest import rule_ids

BASE = "https://ehr.example/r4/fhir"
TOKEN = "secret-access-token-123"


def _register(rsps, *, pgx=None, fail: dict | None = None):
    """Answer every search the service makes like a small FHIR server would."""
    pgx = pgx if pgx is not None else [genotype_ig("TPMT", "*3A/*3A"), genotype_ig("NUDT15", "*1/*1")]
    data = {"Patient": patient(), "MedicationRequest": bundle(), "Condition": bundle()}

    def handler(request):
        path = urlsplit(request.url).path
        query = parse_qs(urlsplit(request.url).query)
        for prefix, status in (fail or {}).items():
            if prefix in request.url:
                return status, {}, '{"resourceType":"OperationOutcome","issue":[]}'
        if path.endswith("/Patient/pt-1"):
            body = data["Patient"]
        elif path.endswith("/Observation"):
            codes = query.get("code", [""])[0]
            if "29463-7" in codes:
                body = bundle(weight(70))
            elif "84413-4" in codes:
                body = bundle(*pgx)
            elif "6690-2" in codes:
                body = bundle(*normal_labs())
            else:
                body = bundle()
        elif path.endswith("/MedicationRequest"):
            body = data["MedicationRequest"]
        elif path.endswith("/Condition"):
            body = data["Condition"]
        elif path.endswith("/AllergyIntolerance") or path.endswith("/Immunization"):
            body = bundle()
        else:
            return 404, {}, '{"resourceType":"OperationOutcome","issue":[]}'
        import json

        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=handler)


def test_full_prefetch_makes_no_fhir_calls(call):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _register(rsps)
        cards = call(hook_request(pre=prefetch(pgx=[genotype_ig("TPMT", "*3A/*3A"), genotype_ig("NUDT15", "*1/*1")]),
                                  fhir_server=BASE, token=TOKEN))
        assert len(rsps.calls) == 0
    assert rule_ids(cards) == ["pgx-poor-metabolizer"]


@pytest.mark.parametrize("base", [BASE, BASE + "/"])
def test_partly_absent_prefetch_fetches_only_missing_keys_with_token(call, base):
    pre = prefetch()
    del pre["pgx"]
    pre["weight"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
    with responses.RequestsMock() as rsps:
        _register(rsps)
        cards = call(hook_request(pre=pre, fhir_server=base, token=TOKEN))
        urls = [str(c.request.url) for c in rsps.calls]
        assert len(urls) == 2
        assert all(u.startswith(BASE + "/Observation?") for u in urls), urls  # base path kept, no double slash
        assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in rsps.calls)
        assert all("patient=pt-1" in u for u in urls)
    assert rule_ids(cards) == ["pgx-poor-metabolizer"]


def test_absent_prefetch_fetches_everything_in_parallel(call):
    with responses.RequestsMock() as rsps:
        _register(rsps)
        cards = call(hook_request(fhir_server=BASE, token=TOKEN))
        paths = sorted(urlsplit(str(c.request.url)).path.rsplit("/", 1)[-1] for c in rsps.calls)
    from hooks.services import THIOPURINE_PREFETCH

    observation_keys = [k for k, p in THIOPURINE_PREFETCH.items() if p.template.startswith("Observation?")]
    # weight and height are separate queries; lab_results asks by category for results read by name (6-TGN, 6-MMP)
    assert "height" in observation_keys and "lab_results" in observation_keys and len(observation_keys) == 6
    assert paths.count("Observation") == len(observation_keys) and "pt-1" in paths and "AllergyIntolerance" in paths and "Immunization" in paths and "MedicationRequest" in paths and "Condition" in paths
    assert rule_ids(cards) == ["pgx-poor-metabolizer"]


def test_without_token_no_authorization_header(call):
    with responses.RequestsMock() as rsps:
        _register(rsps)
        call(hook_request(fhir_server=BASE))
        assert all("Authorization" not in c.request.headers for c in rsps.calls)


def test_failed_pgx_fetch_is_said_in_a_card_not_an_all_clear(call):
    with responses.RequestsMock() as rsps:
        _register(rsps, fail={"84413-4": 500})
        cards = call(hook_request(fhir_server=BASE, token=TOKEN))
    assert rule_ids(cards) == ["pgx-unavailable"]
    assert "could not be retrieved" in cards[0]["summary"]


def test_failed_medications_fetch_is_named(call):
    with responses.RequestsMock() as rsps:
        _register(rsps, fail={"MedicationRequest?": 503}, pgx=[genotype_ig("TPMT", "*1/*1"), genotype_ig("NUDT15", "*1/*1")])
        cards = call(hook_request(fhir_server=BASE, token=TOKEN))
    assert rule_ids(cards) == ["data-incomplete"]
    assert cards[0]["indicator"] == "warning"
    assert "active medications" in cards[0]["detail"] and "error status" in cards[0]["detail"] and "503" not in cards[0]["detail"]


def test_next_links_are_followed_but_bounded(call):
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": BASE + "/Observation?page=next"}]}
    import json

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, BASE + "/Observation?page=next", json=page)
        pre = prefetch()
        del pre["labs"]
        rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/Observation\?patient.*"), body=json.dumps(page))
        call(hook_request(pre=pre, fhir_server=BASE))
        assert len(rsps.calls) == 5  # first page + 4 next pages (max_pages = 5)


def test_next_link_to_another_server_is_not_followed(call):
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": "https://evil.example/steal"}]}
    with responses.RequestsMock() as rsps:
        pre = prefetch()
        del pre["labs"]
        rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/Observation\?.*"), json=page)
        call(hook_request(pre=pre, fhir_server=BASE, token=TOKEN))
        assert [urlsplit(c.request.url).hostname for c in rsps.calls] == ["ehr.example"]


def test_draft_with_unresolved_medication_reference_is_fetched(call):
    order = med_request()
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-aza"}
    med = {"resourceType": "Medication", "id": "med-aza",
           "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197388"}]}}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, BASE + "/Medication/med-aza", json=med)
        cards = call(hook_request(orders=[order], fhir_server=BASE,
                                  pre=prefetch(pgx=[genotype_ig("TPMT", "*3A/*3A"), genotype_ig("NUDT15", "*1/*1")])))
    assert rule_ids(cards) == ["pgx-poor-metabolizer"]


def test_contained_medication_is_recognised(call):
    order = med_request()
    del order["medicationCodeableConcept"]
    order["contained"] = [{"resourceType": "Medication", "id": "m1", "code": {"text": "Imuran 50 mg tablet"}}]
    order["medicationReference"] = {"reference": "#m1"}
    cards = call(hook_request(orders=[order], pre=prefetch(pgx=[genotype_ig("TPMT", "*3A/*3A"), genotype_ig("NUDT15", "*1/*1")])))
    assert rule_ids(cards) == ["pgx-poor-metabolizer"]


def test_interacting_drug_order_fetches_only_what_it_needs(call):
    """A warfarin order asks only whether a thiopurine is active: Patient and MedicationRequests, no labs."""
    warfarin = med_request("855350", "Warfarin Sodium 0.5 MG Oral Tablet", id="w", daily_mg=5)
    with responses.RequestsMock() as rsps:
        _register(rsps)
        assert call(hook_request(orders=[warfarin], fhir_server=BASE, token=TOKEN)) == []
        paths = sorted(urlsplit(str(c.request.url)).path.rsplit("/", 1)[-1] for c in rsps.calls)
    assert paths == ["MedicationRequest", "pt-1"]


def test_height_is_not_crowded_out_by_newer_weights(call):
    """Review item 11: 10+ newer weights must not push the height out of a capped query (oncology: BSA)."""
    from urllib.parse import parse_qs

    from hooks.services import THIOPURINE_PREFETCH
    from hooks.registry import OnMissing

    weight_q = parse_qs(THIOPURINE_PREFETCH["weight"].template.partition("?")[2])
    height_q = parse_qs(THIOPURINE_PREFETCH["height"].template.partition("?")[2])
    assert "8302-2" not in weight_q["code"][0] and "8302-2" in height_q["code"][0]
    assert "29463-7" not in height_q["code"][0]
    assert THIOPURINE_PREFETCH["height"].on_missing is OnMissing.FETCH


def test_height_found_through_the_fhir_fallback_despite_many_newer_weights(call):
    """A FHIR server that honours _count: 12 newer weights and an older height. The height query is
    its own, so the oncology (body surface area) dose is judged and no 'height missing' card appears."""
    import json

    from tests.builders import days_ago
    from tests.test_cards_catalogue import ALL, height

    weights = [weight(30, when=days_ago(1 + i), id=f"w{i}") for i in range(12)]
    h = height(135)
    h["effectiveDateTime"] = days_ago(60)

    def handler(request):
        path, query = urlsplit(request.url).path, parse_qs(urlsplit(request.url).query)
        body: dict = bundle()
        if path.endswith("/Patient/pt-1"):
            body = patient(birth_date="2016-01-01")
        elif path.endswith("/Observation"):
            codes = query.get("code", [""])[0]
            found = [o for o in weights + [h] if o["code"]["coding"][0]["code"] in codes]
            found.sort(key=lambda o: o["effectiveDateTime"], reverse=True)
            count = int(query.get("_count", ["1000"])[0])
            if "84413-4" in codes:
                found = [genotype_ig("TPMT", "*1/*1"), genotype_ig("NUDT15", "*1/*1")]
            elif "6690-2" in codes:
                found = normal_labs()
            body = bundle(*found[:count])
        elif path.endswith("/Condition"):
            body = bundle(ALL)
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    mp = med_request("197931", "mercaptopurine 50 MG Oral Tablet", id="mp", daily_mg=50)
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=handler)
        cards = call(hook_request(orders=[mp], fhir_server=BASE, token=TOKEN))
    assert "height-missing" not in rule_ids(cards), rule_ids(cards)
