"""Scenario (b) of the benchmark as a regression test: with no prefetch, the FHIR queries of a
hook call are all sent at once, not one after the other.

Judged by the timestamps of the real in-memory FHIR server (``tests/fhir_server``), which holds
every query ``--delay-ms`` before answering: when the queries overlap, every one of them arrived
before the first answer went out. Nothing here measures or asserts speed.
"""
from __future__ import annotations

import threading

import pytest

import rules
from fhir_mappers import order_facts
from hooks.registry import SERVICES, OnMissing
from service import create_app
from tests.builders import PID, SERVICE, genotype_ig, hook_request, lab, med_request, patient, weight

DELAY_MS = 400  # long enough that no scheduling hiccup could make parallel queries look serial
TOKEN = "concurrency-test-token"


def _transaction(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


@pytest.fixture(scope="module")
def fhir():
    from tests.fhir_server.medplum import MedplumServer, MedplumServerError

    try:
        server = MedplumServer(token=TOKEN, delay_ms=DELAY_MS).start()
    except MedplumServerError as exc:  # pragma: no cover - no Node.js on this machine
        pytest.skip(f"FHIR test server unavailable: {exc}")
    allopurinol = med_request("519", "allopurinol 300 MG Oral Tablet", id="mr-allopurinol", daily_mg=300, status="active")
    condition = {"resourceType": "Condition", "id": "cond-crohn",
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                "code": "active"}]},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "34000006"}], "text": "Crohn's disease"},
                 "subject": {"reference": f"Patient/{PID}"}}
    server.load(_transaction(patient(), weight(70), genotype_ig("TPMT", "*1/*3A"), genotype_ig("NUDT15", "*1/*1"),
                             lab("26464-8", 6.1, "10*9/L", id="lab-wbc"), allopurinol, condition))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = tmp_path_factory.mktemp("concurrency") / "feedback.sqlite3"
    app = create_app({"auth_required": False, "fhir_deadline": 10.0, "database_url": f"sqlite:///{db}",
                      "fhir_allow_loopback": True})
    return app.test_client()


def _call(client, fhir) -> dict:
    resp = client.post(f"/cds-services/{SERVICE['order-sign']}", json=hook_request(fhir_server=fhir.base_url, token=TOKEN))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def _expected_queries() -> int:
    """One query per data group the call needs, as the pipeline works it out: the service's prefetch keys
    that ``rules.groups_needed`` keeps for this order and that are fetched when not prefetched."""
    service = SERVICES[SERVICE["order-sign"]]
    orders = order_facts([med_request()])
    needed = rules.groups_needed(orders, service.prefetch)
    assert needed and needed <= set(service.prefetch)
    return sum(1 for k in needed if service.prefetch[k].on_missing is not OnMissing.OMIT)


def _overlapping(entries: list[dict]) -> bool:
    """Every request arrived before the first answer was sent: all were in flight together."""
    return max(e["start_ms"] for e in entries) < min(e["end_ms"] for e in entries)


def test_one_call_sends_all_its_fhir_queries_at_once(client, fhir):
    fhir.reset_log()
    body = _call(client, fhir)
    log = fhir.request_log()
    assert len(log) == _expected_queries(), [e["path"] + "?" + e["query"] for e in log]
    assert all(e["status"] == 200 and e["authorization_present"] for e in log), log
    assert _overlapping(log), sorted((e["start_ms"], e["end_ms"], e["path"]) for e in log)
    rules = {c["source"]["topic"]["code"] for c in body["cards"]}
    # every group arrived and was read: no card says data was missing (the genotypes were found)
    assert not rules & {"pgx-unavailable", "pgx-test-missing", "data-incomplete"}, rules


def test_concurrent_calls_do_not_queue_behind_each_other(client, fhir):
    """Four hook calls at once (as gunicorn's threads serve them): all their queries in flight together,
    so a busy worker does not queue one call's FHIR queries behind another's."""
    fhir.reset_log()
    results, errors = [], []

    def one():
        try:
            results.append(_call(client, fhir))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 4
    log = fhir.request_log()
    assert len(log) == 4 * _expected_queries()
    assert _overlapping(log), sorted((e["start_ms"], e["end_ms"], e["path"]) for e in log)
