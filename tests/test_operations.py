"""For operators: /healthz, /readyz and /metrics, in-process and under two real gunicorn workers."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import responses
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from outbound.fhir_client import FhirOutcome
from service import create_app
from service.auth import Refusal
from service.metrics import metrics
from service.storage import FeedbackStore
from tests.builders import PID, bundle, hook_request, patient, phenotype_tpmt, prefetch
from tests.test_serving import Serve
from tests.test_trust import PUBLIC_JWK, SANDBOX_ISS, sandbox_token, write

SIGN = "/cds-services/thiopurine-order-sign"
PUBLIC = "http://localhost"  # the test client's base URL: the JWT audience
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client():
    return create_app({"auth_required": False, "database_url": "sqlite://", "fhir_deadline": 3.0,
                       "fhir_allow_loopback": True}).test_client()  # responses answers for 127.0.0.1


def auth_client(tmp_path):
    """JWT on, one issuer shaped like the sandbox with its key inline (nothing is fetched)."""
    trust = write(tmp_path, {"issuers": [{"iss": SANDBOX_ISS, "jwks": {"keys": [PUBLIC_JWK]}}]})
    return create_app({"auth_required": True, "trust": str(trust), "public_base_url": PUBLIC,
                       "database_url": "sqlite://", "fhir_deadline": 3.0}).test_client()


def scrape(client) -> str:
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    return resp.get_data(as_text=True)


# ------------------------------------------------------------------ health and readiness

def test_health_and_readiness_need_no_token():
    client = create_app({"auth_required": True, "database_url": "sqlite://",  # no trusted issuer
                         "public_base_url": PUBLIC}).test_client()
    assert client.post(SIGN, json=hook_request(pre=prefetch())).status_code == 401
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "checks": {"knowledge": "ok", "feedbackStore": "ok"}}
    assert client.get("/metrics").status_code == 200


def test_not_ready_when_the_feedback_store_is_unreachable(client, monkeypatch):
    store = client.application.extensions["aza_feedback_store"]

    def down():
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused to db.example.org"))

    monkeypatch.setattr(store, "read", down)
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Not ready: feedbackStore: unreachable"
    assert "example.org" not in resp.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_not_ready_when_the_knowledge_cannot_be_loaded(client, monkeypatch):
    import rules.knowledge_base

    def broken():
        raise ValueError("pgx.toml: bad table")

    monkeypatch.setattr(rules.knowledge_base, "load", broken)
    resp = client.get("/readyz")
    assert resp.status_code == 503 and "knowledge: failed" in resp.get_json()["issue"][0]["diagnostics"]


def test_metrics_can_be_switched_off():
    client = create_app({"auth_required": False, "database_url": "sqlite://", "metrics": False}).test_client()
    resp = client.get("/metrics", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"
    assert resp.headers["Access-Control-Allow-Origin"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints_follow_the_cors_and_error_rules(tmp_path, path):
    client = auth_client(tmp_path)
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    got = client.get(path, headers=origin)
    assert got.status_code == 200 and got.headers["Access-Control-Allow-Origin"]
    preflight = client.options(path, headers=origin | {"Access-Control-Request-Method": "GET",
                                                       "Access-Control-Request-Private-Network": "true"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Private-Network"] == "true"
    wrong = client.post(path, headers=origin)
    assert wrong.status_code == 405 and wrong.get_json()["resourceType"] == "OperationOutcome"
    assert wrong.headers["Access-Control-Allow-Origin"] and "GET" in wrong.headers["Allow"]


# ------------------------------------------------------------------ what is counted (one process)

def test_cards_feedback_and_latency_are_counted(client):
    before = scrape(client)
    resp = client.post(SIGN, json=hook_request(pre=prefetch(pgx=[phenotype_tpmt("Poor")])))
    card = resp.get_json()["cards"][0]
    assert card["source"]["topic"]["code"] == "pgx-poor-metabolizer"
    items = [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-20T09:30:00Z"},
             {"card": "another", "outcome": "accepted", "outcomeTimestamp": "2026-11-20T09:30:00Z",
              "acceptedSuggestions": [{"id": "s1"}]}]
    from tests.issued import issue

    issue(client.application.extensions["aza_feedback_store"], "another")  # feedback only about issued cards
    assert client.post(SIGN + "/feedback", json={"feedback": items}).status_code == 200
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("aza_cds_cards_total", rule="pgx-poor-metabolizer", indicator="critical") == 1
    assert delta("aza_cds_feedback_total", outcome="overridden") == 1
    assert delta("aza_cds_feedback_total", outcome="accepted") == 1
    route = "/cds-services/<service_id>"
    assert delta("aza_cds_http_request_duration_seconds_count", route=route, service="thiopurine-order-sign",
                 status="200") == 1
    assert delta("aza_cds_http_request_duration_seconds_count", route="/cds-services/<service_id>/feedback",
                 service="thiopurine-order-sign", status="200") == 1


def test_an_info_card_merging_several_rules_counts_for_each(client):
    from tests.builders import med_request

    pre = prefetch(weights=[], pt=patient(birth_date="1950-01-01"))  # elderly, no weight: two info notes
    before = scrape(client)
    cards = client.post(SIGN, json=hook_request(orders=[med_request(daily_mg=50)], pre=pre)).get_json()["cards"]
    merged = [r for c in cards for r in c["extension"]["azathioprine-cds"].get("mergedRuleIds", [])]
    assert len(merged) >= 2
    after = scrape(client)
    for rule in merged:
        assert value(after, "aza_cds_cards_total", rule=rule, indicator="info") \
            - value(before, "aza_cds_cards_total", rule=rule, indicator="info") == 1


def test_fhir_queries_are_counted_by_outcome(client):
    base = "http://127.0.0.1:9/fhir"  # never reached: responses answers
    before = scrape(client)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{base}/Patient/{PID}", json=patient())
        rsps.get(f"{base}/MedicationRequest", status=503, json={"resourceType": "OperationOutcome", "issue": []})
        rsps.get(f"{base}/Observation", json=bundle())
        rsps.get(f"{base}/Condition", body=b"<html>login</html>")
        rsps.get(f"{base}/AllergyIntolerance", body=ConnectionRefusedError("refused"))
        rsps.get(f"{base}/Immunization", json=bundle())
        client.post(SIGN, json=hook_request(fhir_server=base, token="t"))
    after = scrape(client)

    def delta(outcome):
        return value(after, "aza_cds_fhir_queries_total", outcome=outcome) - value(before, "aza_cds_fhir_queries_total",
                                                                                    outcome=outcome)

    assert delta("ok") >= 3  # the Patient read, the Observation and Immunization searches
    assert delta("error-status") == 1 and delta("invalid-response") == 1 and delta("unreachable") == 1


def test_jwt_refusals_are_counted_by_category():
    client = create_app({"auth_required": True, "database_url": "sqlite://", "public_base_url": PUBLIC}).test_client()
    before = scrape(client)
    client.post(SIGN, json=hook_request(pre=prefetch()))
    client.post(SIGN, json=hook_request(pre=prefetch()), headers={"Authorization": "Bearer not.a.jwt"})
    after = scrape(client)
    for reason in ("missing", "malformed"):
        assert value(after, "aza_cds_jwt_refusals_total", reason=reason) - \
            value(before, "aza_cds_jwt_refusals_total", reason=reason) == 1
    assert "not.a.jwt" not in after


def label_values(text: str, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels), _ in samples(text).items() if sample == name}


def test_fhir_outcome_and_jwt_refusal_counters_count_the_one_category_of_each(tmp_path):
    """The counters' series are FhirOutcome and Refusal, the categories cards and logs name: a call
    whose fhirServer this service may not contact counts not-allowed; the same token again counts
    replay; a token minted for another host counts audience."""
    client = auth_client(tmp_path)
    before = scrape(client)
    assert label_values(before, "aza_cds_fhir_queries_total", "outcome") == {o.value for o in FhirOutcome}
    assert label_values(before, "aza_cds_jwt_refusals_total", "reason") == {r.value for r in Refusal}
    token = sandbox_token(PUBLIC + SIGN, jku=None)
    call = hook_request(fhir_server="http://127.0.0.1:9/fhir", token="t")  # loopback: not allowed here
    first = client.post(SIGN, json=call, headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200
    assert "not one this service may contact" in "\n".join(c.get("detail", "") for c in first.get_json()["cards"])
    assert client.post(SIGN, json=call, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    elsewhere = sandbox_token("http://cds.attacker.invalid" + SIGN, jku=None)
    assert client.post(SIGN, json=call, headers={"Authorization": f"Bearer {elsewhere}"}).status_code == 401
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("aza_cds_fhir_queries_total", outcome=FhirOutcome.NOT_ALLOWED.value) >= 2  # one per key asked
    assert delta("aza_cds_fhir_queries_total", outcome=FhirOutcome.OK.value) == 0
    assert delta("aza_cds_jwt_refusals_total", reason=Refusal.REPLAY.value) == 1
    assert delta("aza_cds_jwt_refusals_total", reason=Refusal.AUDIENCE.value) == 1
    assert sum(delta("aza_cds_jwt_refusals_total", reason=r.value) for r in Refusal) == 2


def test_card_queue_depth_and_dropped_records(tmp_path):
    from prometheus_client import generate_latest

    store = FeedbackStore(f"sqlite:///{tmp_path / 'q.sqlite3'}", max_pending=2)
    store._start_writer = lambda: None  # type: ignore[method-assign]  # nothing drains: the queue only fills
    store.observer = metrics().card_queue_observer()
    before = value(generate_latest().decode(), "aza_cds_card_records_dropped_total")
    cards = [{"uuid": f"c{i}", "indicator": "info", "summary": "s", "source": {"label": "x", "topic": {"code": "r"}}}
             for i in range(2)]
    store.record_cards(service_id="s", hook="order-sign", hook_instance="h", cards=cards)
    store.record_cards(service_id="s", hook="order-sign", hook_instance="h", cards=cards)  # queue full: dropped
    text = generate_latest().decode()
    assert value(text, "aza_cds_card_queue_depth") == 2
    assert value(text, "aza_cds_card_records_dropped_total") - before == 2
    store._pending.clear()
    store.close()


# ------------------------------------------------------------------ two gunicorn workers

class SlowFhir(ThreadingHTTPServer):
    """Answers every FHIR query after ``delay`` seconds: a hook call keeps its worker busy meanwhile."""

    daemon_threads = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowFhir

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.release.wait(self.server.delay)
        body = json.dumps(patient() if "/Patient/" in self.path else bundle()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with _OPENER.open(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def test_metrics_add_up_across_two_gunicorn_workers(tmp_path):
    metrics_dir = tmp_path / "metrics"
    fhir = SlowFhir(delay=2.0)
    # sync workers (one thread each): a worker busy with a call accepts no other, so calls made at
    # the same time are answered by both workers
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "2", "--threads", "1",
                env={"AZA_CDS_METRICS_DIR": str(metrics_dir), "AZA_CDS_FHIR_DEADLINE": "20"})
    try:
        assert _get(srv.base + "/healthz")[0] == 200 and _get(srv.base + "/readyz")[0] == 200
        for _ in range(1200):  # both workers booted (each logs worker-ready), so both can take a call
            if srv.stderr().count('"worker-ready"') >= 2:
                break
            time.sleep(0.05)
        answers: list[tuple[int, dict]] = []
        calls = [threading.Thread(target=lambda: answers.append(srv.post(hook_request(fhir_server=fhir.base,
                                                                                      token="t"))))
                 for _ in range(4)]
        for t in calls:
            t.start()
        for t in calls:
            t.join(60)
        assert [status for status, _ in answers] == [200] * 4
        # every worker wrote its own samples: both served calls
        pids = {p.stem.rsplit("_", 1)[-1] for p in Path(metrics_dir).glob("histogram_*.db")}
        assert len(pids) >= 2, sorted(p.name for p in Path(metrics_dir).iterdir())
        # cards_total counts a merged info card once per rule it carries (service/metrics.py); a loaded
        # machine can slow a query into a data-incomplete card that is merged with another info card
        cards = sum(len(c["extension"]["azathioprine-cds"].get("mergedRuleIds") or [c]) for _, body in answers
                    for c in body["cards"])
        for _ in range(6):  # whichever worker answers the scrape, the totals are the same
            status, ctype, text = _get(srv.base + "/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            assert value(text, "aza_cds_http_request_duration_seconds_count", route="/cds-services/<service_id>",
                         service="thiopurine-order-sign", status="200") == 4
            got = sum(v for (name, _), v in samples(text).items() if name == "aza_cds_cards_total")
            assert got == cards and cards >= 4
            assert value(text, "aza_cds_fhir_queries_total", outcome="ok") >= 4 * 5
            workers = [k for k in samples(text) if k[0] == "aza_cds_worker_start_time_seconds"]
            assert len(workers) == 2, workers  # one series per live worker
    finally:
        fhir.release.set()
        fhir.shutdown()
        srv.close()
