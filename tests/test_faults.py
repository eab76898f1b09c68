"""Fault injection: the EHR's FHIR server fails in every way we could think of.

A small faulty FHIR server runs on a loopback port (``FaultyFhir``); each case of the matrix
makes every request (or every request for one data group) fail one way. For each case the
service must answer 200 within its FHIR deadline plus a small margin, and its cards must say
which data it could not get and what the clinician must check by hand: never an empty "all
clear" when it could not look.
"""
from __future__ import annotations

import functools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

import pytest

from outbound.fhir_client import Deadline, FhirBadResponse, FhirClient, FhirSettings, FhirTimeout
from outbound.netguard import EgressPolicy
from service import create_app
from tests.builders import PID, RXNORM, SERVICE, bundle, hook_request, med_request, normal_pgx, patient, weight
from tests.conftest import assert_valid_response

LOCAL = EgressPolicy(allow_loopback=True)  # the faulty server is on 127.0.0.1
DEADLINE = 0.6  # seconds of FHIR work per hook call in these tests (configurable: fhir_deadline)
# What the service may add to the deadline (mapping, rules, cards, Flask) on a loaded 2-core machine.
# Generous on purpose: every fault that the deadline must cut short lasts 5 s or more (DEADLINE + 5),
# so the assertion still fails if the deadline does not hold, but never because the machine is busy.
MARGIN = 1.5
FHIR_TOKEN = "fhir-access-token-for-fault-tests"
TIMINGS: dict[str, float] = {}  # case -> seconds, printed at the end of the module

OO = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                     "diagnostics": "Patient Jane Faultcase not found"}]}


# ------------------------------------------------------------------ the faulty server

class FaultyFhir(ThreadingHTTPServer):
    """Serves a healthy patient unless ``fault`` says otherwise. ``only``: the data group
    (prefetch key) the fault applies to; None = every request."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops parallel connects under load (a 1 s SYN retry)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fault: str = "none"
        self.only: str | None = None
        self.release = threading.Event()  # ends sleeping handlers at teardown
        self.requests: list[str] = []
        self.drip_stopped: list[float] = []  # when a dripping response found its client gone
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up on a slow or huge answer is what these tests expect

    def start(self) -> "FaultyFhir":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


def group_of(path: str, query: dict) -> str:
    """The prefetch key a request belongs to."""
    rtype = path.split("/fhir/", 1)[-1].split("/")[0]
    codes = ",".join(query.get("code", []))
    if rtype == "Patient":
        return "patient"
    if rtype == "MedicationRequest":
        return "medications"
    if rtype == "Condition":
        return "conditions"
    if rtype == "AllergyIntolerance":
        return "allergies"
    if "29463-7" in codes:
        return "weight"
    if "84413-4" in codes:
        return "pgx"
    if "82810-3" in codes:
        return "pregnancy"
    return "labs"


def healthy(group: str) -> dict:
    return {
        "patient": patient(),
        "weight": bundle(weight(70)),
        "pgx": bundle(*normal_pgx()),
    }.get(group, bundle())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyFhir

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        group = group_of(parts.path, query)
        with self.server.lock:
            self.server.requests.append(group)
        fault = self.server.fault if self.server.only in (None, group) else "none"
        getattr(self, "fault_" + fault.replace("-", "_"))(group, parts, query)

    # -- helpers
    def send(self, status: int, body: bytes, ctype: str = "application/fhir+json", length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def send_json(self, status: int, obj) -> None:
        self.send(status, json.dumps(obj).encode())

    # -- behaviours
    def fault_none(self, group, parts, query) -> None:
        self.send_json(200, healthy(group))

    def fault_timeout(self, group, parts, query) -> None:
        self.server.release.wait(DEADLINE + 5)  # never answers within the deadline
        self.close_connection = True

    def fault_slow(self, group, parts, query) -> None:
        self.server.release.wait(DEADLINE + 5)  # answers, but long after the deadline
        self.send_json(200, healthy(group))

    def fault_drip(self, group, parts, query) -> None:
        body = json.dumps(healthy(group)).encode() + b" " * 4000
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(len(body)):  # one byte every 20 ms: each read is quick, the whole is not
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if self.server.release.wait(0.02):
                    return
        except OSError:
            with self.server.lock:
                self.server.drip_stopped.append(time.monotonic())
        self.close_connection = True

    def fault_drip_headers(self, group, parts, query) -> None:
        # the status line and headers a byte every 20 ms: a per-read timeout never fires
        body = json.dumps(healthy(group)).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nX-Padding: {'p' * 400}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            for i in range(len(head)):
                self.wfile.write(head[i:i + 1])
                self.wfile.flush()
                if self.server.release.wait(0.02):
                    return
            self.wfile.write(body)
        except OSError:
            with self.server.lock:
                self.server.drip_stopped.append(time.monotonic())
        self.close_connection = True

    def fault_gzip_bomb(self, *a) -> None:
        # 64 KiB on the wire, 1 GiB once decompressed, no Content-Length
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(gzip_bomb())
        except OSError:
            pass
        self.close_connection = True

    def _status(self, status: int) -> None:
        self.send_json(status, OO)

    def fault_http_401(self, *a) -> None:
        self._status(401)

    def fault_http_403(self, *a) -> None:
        self._status(403)

    def fault_http_404(self, *a) -> None:
        self._status(404)

    def fault_http_500(self, *a) -> None:
        self._status(500)

    def fault_http_503(self, *a) -> None:
        self._status(503)

    def fault_redirect(self, *a) -> None:
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def fault_invalid_json(self, *a) -> None:
        self.send(200, b'{"resourceType": "Bundle", "entry": [')

    def fault_html(self, *a) -> None:
        self.send(200, b"<html><body>Login required</body></html>", ctype="text/html")

    def fault_not_a_resource(self, *a) -> None:
        self.send_json(200, [{"resourceType": "Patient"}])

    def fault_non_bundle(self, group, *a) -> None:
        # a resource, but not what was asked for: a Basic for a search, a Bundle for a read
        self.send_json(200, bundle(patient()) if group == "patient" else {"resourceType": "Basic", "id": "x"})

    def fault_operation_outcome(self, *a) -> None:
        self.send_json(200, OO)

    def fault_malformed_bundle(self, group, *a) -> None:
        self.send_json(200, {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": patient()},
                             "link": "next"} if group != "patient" else patient())

    def fault_deep_json(self, *a) -> None:
        self.send(200, b"[" * 200_000 + b"]" * 200_000)

    def fault_endless_next(self, group, parts, query) -> None:
        if group == "patient":
            return self.send_json(200, patient())
        page = int(query.get("page", ["0"])[0])
        nxt = f"{self.server.base}{parts.path[len('/fhir'):]}?{parts.query.split('&page=')[0]}&page={page + 1}"
        body = healthy(group) if page == 0 else bundle()
        self.send_json(200, {**body, "link": [{"relation": "next", "url": nxt}]})

    def fault_huge(self, *a) -> None:
        # 21 MB declared and sent: over the client's 20 MB limit
        self.send(200, huge_body())

    def fault_huge_unannounced(self, *a) -> None:
        # the same 21 MB, with no Content-Length: the limit must hold while reading
        self.send(200, huge_body(), length=False)
        self.close_connection = True


@functools.cache
def gzip_bomb() -> bytes:
    """~64 KiB of gzip that decompresses to 64 MiB (four times the client's per-response limit)."""
    import zlib

    enc = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [enc.compress(b'{"resourceType":"Bundle","type":"searchset","entry":[')]
    zeros = b" " * (1024 * 1024)
    parts += [enc.compress(zeros) for _ in range(64)]
    parts.append(enc.flush())
    return b"".join(parts)


@functools.cache
def huge_body() -> bytes:
    """A 21 MB searchset Bundle of 20,000 Observations (built once: the server shares our GIL)."""
    filler = {"resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "x" * 1000}}
    entries = json.dumps([{"resource": filler}] * 20_000).encode()
    return b'{"resourceType":"Bundle","type":"searchset","entry":' + entries + b"}"


@pytest.fixture(scope="module")
def faulty():
    huge_body()
    server = FaultyFhir().start()
    yield server
    server.stop()


@pytest.fixture
def fhir(faulty):
    faulty.fault, faulty.only = "none", None
    faulty.requests.clear()
    faulty.drip_stopped.clear()
    faulty.release.clear()
    yield faulty
    faulty.release.set()  # let sleeping handlers of this case finish


@pytest.fixture(scope="module")
def client():
    app = create_app({"auth_required": False, "fhir_deadline": DEADLINE, "database_url": "sqlite://",
                      "fhir_allow_loopback": True})
    return app.test_client()


@pytest.fixture(scope="module")
def patient_client():
    """For tests about what the cards say, not about time: a deadline that a loaded machine meets."""
    app = create_app({"auth_required": False, "fhir_deadline": 3.0, "database_url": "sqlite://",
                      "fhir_allow_loopback": True})
    return app.test_client()


@pytest.fixture(scope="module")
def limit_client():
    """For the wording of a size or page limit: a deadline so long that the limit is always reached first."""
    app = create_app({"auth_required": False, "fhir_deadline": 60.0, "database_url": "sqlite://",
                      "fhir_allow_loopback": True})
    return app.test_client()


@pytest.fixture(scope="module")
def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now: connection refused
    return port


@pytest.fixture(scope="module", autouse=True)
def print_timings():
    yield
    if TIMINGS:
        rows = "\n".join(f"  {case:<28} {secs * 1000:7.0f} ms" for case, secs in TIMINGS.items())
        print(f"\nfault matrix answer times (FHIR deadline {DEADLINE * 1000:.0f} ms):\n{rows}")


def request_for(server: str, hook: str = "order-sign") -> dict:
    """An azathioprine order with nothing prefetched: everything comes from the FHIR server."""
    return hook_request(hook, fhir_server=server, token=FHIR_TOKEN)


def timed_call(client, req: dict, hook: str = "order-sign"):
    started = time.monotonic()
    resp = client.post(f"/cds-services/{SERVICE[hook]}", json=req)
    return resp, time.monotonic() - started


def assert_says_what_it_could_not_check(cards: list[dict], groups: set[str]) -> None:
    """Not an all-clear: a warning names every missing group and says to check by hand."""
    assert cards, "an empty answer although data could not be read"
    assert any(c["indicator"] in ("warning", "critical") for c in cards)
    text = "\n".join(c["summary"] + "\n" + c.get("detail", "") for c in cards)
    assert "by hand" in text
    for group in groups:
        if group == "pgx":
            pgx = [c for c in cards if c["source"]["topic"]["code"] == "pgx-unavailable"]
            assert pgx and pgx[0]["indicator"] == "warning", [c["source"]["topic"]["code"] for c in cards]
            assert "TPMT" in pgx[0]["summary"] and "by hand" in pgx[0]["detail"]
        else:
            incomplete = [c for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
            assert incomplete, [c["source"]["topic"]["code"] for c in cards]
            detail = incomplete[0]["detail"].lower()
            words = {"patient": "demographics", "medications": "active medications", "weight": "body weight",
                     "labs": "blood counts", "conditions": "conditions", "allergies": "allergies",
                     "pregnancy": "pregnancy"}[group]
            assert words in detail, (group, detail)


EVERY_GROUP = {"patient", "medications", "weight", "pgx", "labs", "conditions", "allergies", "pregnancy"}

# case -> (fault, expected reason words in the card text)
MATRIX = {
    "connection refused": ("refused", "could not be reached"),
    "timeout (no answer)": ("timeout", "did not answer in time"),
    "slow answer past deadline": ("slow", "did not answer in time"),
    "slow drip body": ("drip", "did not answer in time"),
    "401 unauthorized": ("http-401", "refused the access token"),
    "403 forbidden": ("http-403", "denied access"),
    "404 not found": ("http-404", "error status"),
    "500 server error": ("http-500", "error status"),
    "503 unavailable": ("http-503", "error status"),
    "302 redirect": ("redirect", "error status"),
    "invalid JSON": ("invalid-json", "not a FHIR resource"),
    "HTML page": ("html", "not a FHIR resource"),
    "JSON but not a resource": ("not-a-resource", "not a FHIR resource"),
    "non-Bundle for a search": ("non-bundle", "not a FHIR resource of the type asked for"),
    "OperationOutcome (200)": ("operation-outcome", "not a FHIR resource"),
    "malformed Bundle": ("malformed-bundle", "not a FHIR resource"),
    "JSON nested 200k deep": ("deep-json", "too large"),  # 200k arrays cost more than the call's budget (CONTAINER_COST)
    "endless next chain": ("endless-next", "more than"),
    "huge bundle (21 MB)": ("huge", "too large"),
    "huge bundle, no length": ("huge-unannounced", "too large"),
    "status line and headers dripped": ("drip-headers", "did not answer in time"),
}
# Cases cut short by a limit of their own (pages, bytes) that a loaded machine may not reach before
# the deadline: within the deadline either reason is right; test_limit_is_named checks the wording.
LIMITED = {"endless next chain", "huge bundle (21 MB)", "huge bundle, no length"}
IN_TIME = "did not answer in time"


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault_matrix(client, fhir, dead_port, case):
    fault, reason = MATRIX[case]
    server = f"http://127.0.0.1:{dead_port}/fhir" if fault == "refused" else fhir.base
    fhir.fault = fault
    resp, took = timed_call(client, request_for(server))
    TIMINGS[case] = took
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert took < DEADLINE + MARGIN, f"{case}: answered after {took:.3f} s"
    body = resp.get_json()
    assert_valid_response(body)
    cards = body["cards"]
    if fault == "endless-next":
        # newest-first groups keep the pages read; unsorted groups cannot be trusted when cut short
        lost = {"pgx", "medications", "conditions", "allergies"}
    elif fault == "malformed-bundle":
        lost = EVERY_GROUP - {"patient"}  # the Patient read is answered properly
    else:
        lost = EVERY_GROUP
    assert_says_what_it_could_not_check(cards, lost)
    text = "\n".join(c.get("detail", "") for c in cards)
    assert reason in text or (case in LIMITED and IN_TIME in text), text
    assert "Jane Faultcase" not in text  # the server's free text is not passed on


@pytest.mark.parametrize("case", sorted(LIMITED))
def test_limit_is_named(limit_client, fhir, case):
    """With time to spare, a bundle too large or a next chain too long is named as such."""
    fault, reason = MATRIX[case]
    fhir.fault = fault
    resp, _ = timed_call(limit_client, request_for(fhir.base))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = resp.get_json()["cards"]
    text = "\n".join(c.get("detail", "") for c in cards)
    assert reason in text and IN_TIME not in text, text
    if fault == "endless-next":
        assert "beyond the first" in text  # the sorted groups say they were cut short


@pytest.mark.parametrize("group", ["pgx", "medications", "patient", "labs", "weight"])
def test_one_group_failing_is_named(patient_client, fhir, group):
    fhir.fault, fhir.only = "http-500", group
    resp, took = timed_call(patient_client, request_for(fhir.base))
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    assert_says_what_it_could_not_check(cards, {group})
    if group != "pgx":  # the pharmacogenomic results were read: no "could not be retrieved" for them
        assert "pgx-unavailable" not in [c["source"]["topic"]["code"] for c in cards]


@pytest.mark.parametrize("hook", list(SERVICE))
def test_every_hook_answers_in_time_when_the_server_hangs(client, fhir, hook):
    fhir.fault = "timeout"
    resp, took = timed_call(client, request_for(fhir.base, hook), hook)
    assert resp.status_code == 200 and took < DEADLINE + MARGIN
    assert_says_what_it_could_not_check(resp.get_json()["cards"], EVERY_GROUP)


def test_a_healthy_server_gives_no_incomplete_card(patient_client, fhir):
    resp, took = timed_call(patient_client, request_for(fhir.base))
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    codes = [c["source"]["topic"]["code"] for c in cards]
    assert "data-incomplete" not in codes and "pgx-unavailable" not in codes, \
        [c["detail"][:400] for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]
    assert set(fhir.requests) >= {"patient", "medications", "weight", "pgx", "labs"}


def test_fhir_token_is_sent_and_the_server_is_asked_in_parallel(client, fhir):
    fhir.fault = "slow"  # every request takes longer than the deadline: run serially they would take 7x
    resp, took = timed_call(client, request_for(fhir.base))
    assert took < DEADLINE + MARGIN
    assert len(set(fhir.requests)) >= 6


@pytest.mark.parametrize("drip", ["drip", "drip-headers"])
def test_drip_feeding_server_does_not_hold_a_worker_past_the_deadline(client, fhir, drip):
    """The answer is on time, and the FHIR worker thread also lets go at the deadline
    (else a slow server would use up the shared pool and starve later calls), whether the
    server drips its body or its status line and headers (which no per-read timeout catches)."""
    fhir.fault, fhir.only = drip, "pgx"
    started = time.monotonic()
    resp, _ = timed_call(client, request_for(fhir.base))
    assert resp.status_code == 200
    for _ in range(400):
        if fhir.drip_stopped:
            break
        time.sleep(0.05)
    assert fhir.drip_stopped, "the client kept reading the dripping response"
    assert fhir.drip_stopped[0] - started < DEADLINE + MARGIN


def test_later_calls_are_not_starved_after_a_hanging_server(client, fhir, monkeypatch):
    fhir.fault = "timeout"
    for _ in range(3):  # 3 x 8 hanging requests: more than the FHIR thread pool
        timed_call(client, request_for(fhir.base))
    fhir.fault = "none"  # the hanging handlers are not released: the pool's threads must have let go by themselves
    env = client.application.extensions["aza_hook_env"]
    monkeypatch.setattr(env, "deadline_seconds", 3.0)  # same pool; a deadline a loaded machine meets
    resp, took = timed_call(client, request_for(fhir.base))
    cards = resp.get_json()["cards"]
    codes = [c["source"]["topic"]["code"] for c in cards]
    assert "data-incomplete" not in codes and "pgx-unavailable" not in codes, \
        [c["detail"][:400] for c in cards if c["source"]["topic"]["code"] == "data-incomplete"]


# ------------------------------------------------------------------ the client on its own

def test_client_refuses_a_response_over_the_size_limit(fhir):
    fhir.fault = "huge"
    client = FhirClient(FhirSettings(max_bytes=1024 * 1024))
    with pytest.raises(FhirBadResponse, match="^too-large$"):
        client.search(fhir.base, f"Observation?patient={PID}", None, Deadline(2, policy=LOCAL))


def test_client_decompresses_within_the_limit_a_gzip_bomb_is_refused(fhir):
    import tracemalloc

    fhir.fault = "gzip-bomb"
    client = FhirClient(FhirSettings(max_bytes=2 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(FhirBadResponse, match="^too-large$"):
            client.search(fhir.base, f"Observation?patient={PID}", None, Deadline(10, policy=LOCAL))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, f"{peak / 1e6:.0f} MB held for a 2 MB limit (the bomb is 64 MB)"


def test_the_call_budget_caps_bytes_across_its_queries(fhir):
    deadline = Deadline(10, policy=LOCAL, max_bytes=1024 * 1024)
    fhir.fault = "huge"  # 21 MB each
    with pytest.raises(FhirBadResponse, match="^too-large$"):
        FhirClient(FhirSettings(max_bytes=40 * 1024 * 1024)).search(fhir.base, f"Observation?patient={PID}", None, deadline)
    assert deadline.bytes_left is not None and deadline.bytes_left < 0


def test_client_reads_a_large_bundle_under_the_limit(fhir):
    fhir.fault = "huge"
    client = FhirClient(FhirSettings(max_bytes=40 * 1024 * 1024))
    result = client.search(fhir.base, f"Observation?patient={PID}", None, Deadline(60, policy=LOCAL))
    assert len(result["entry"]) == 20_000


def test_client_deadline_already_spent(fhir):
    with pytest.raises(FhirTimeout):
        FhirClient().get_json(fhir.base + "/Patient/x", None, Deadline(0, policy=LOCAL))


def test_read_must_answer_its_own_type(fhir):
    fhir.fault = "non-bundle"
    with pytest.raises(FhirBadResponse, match="^invalid-response$"):
        FhirClient().search(fhir.base, f"Patient/{PID}", None, Deadline(2, policy=LOCAL))


@pytest.mark.parametrize("fault", ["http-500", "timeout", "none-and-no-server"])
def test_drug_named_only_by_an_unreadable_reference_is_not_an_all_clear(client, fhir, fault):
    """A draft order whose drug is a reference the service cannot read might be a thiopurine."""
    order = {k: v for k, v in med_request().items() if k != "medicationCodeableConcept"}
    order["medicationReference"] = {"reference": "Medication/aza-50"}
    if fault == "none-and-no-server":
        req = hook_request(orders=[order], pre={"patient": patient(), "medications": bundle()})
    else:
        fhir.fault = fault
        req = hook_request(orders=[order], fhir_server=fhir.base, token=FHIR_TOKEN)
    resp, took = timed_call(client, req)
    assert resp.status_code == 200 and took < DEADLINE + MARGIN
    cards = resp.get_json()["cards"]
    assert cards and cards[0]["indicator"] == "warning", cards
    assert "Medication/aza-50" in cards[0]["detail"] and "by hand" in cards[0]["detail"]


def test_drug_reference_that_is_read_is_used(patient_client, fhir):
    """The same order, with the Medication readable: recognised as azathioprine (no 'unidentified' card)."""
    order = {k: v for k, v in med_request().items() if k != "medicationCodeableConcept"}
    order["medicationReference"] = {"reference": "Medication/aza-50"}
    aza = {"resourceType": "Medication", "id": "aza-50",
           "code": {"coding": [{"system": RXNORM, "code": "197388", "display": "azathioprine 50 MG Oral Tablet"}]}}
    req = hook_request(orders=[order], pre={"patient": patient(), "medications": bundle(aza), "pgx": bundle(*normal_pgx())})
    resp, _ = timed_call(patient_client, req)
    cards = resp.get_json()["cards"]
    assert not any("could not be identified" in c["summary"] for c in cards), cards


def test_gather_waits_once_for_all_keys_not_once_per_key():
    """Eight fetches that never finish: gather returns at the deadline (plus one grace period),
    not after a grace period per key, and names every key."""
    from concurrent.futures import ThreadPoolExecutor

    from hooks.gather import FhirAccess, gather
    from hooks.prefetch import PREFETCH

    stuck = threading.Event()

    class Stuck:
        pool = ThreadPoolExecutor(max_workers=len(PREFETCH))

        def search(self, *args):
            stuck.wait(10)
            return {}

    try:
        started = time.monotonic()
        data, gaps = gather(cast(FhirClient, Stuck()), FhirAccess("http://127.0.0.1:9/fhir", None), PREFETCH, frozenset(),
                            {"patientId": PID}, {}, Deadline(0.3, policy=LOCAL))
        took = time.monotonic() - started
    finally:
        stuck.set()
        Stuck.pool.shutdown(wait=False)
    assert took < 0.3 + MARGIN, took  # the stuck search would take 10 s
    assert all(v is None for v in data.values()) and {g.key for g in gaps} == set(PREFETCH)
