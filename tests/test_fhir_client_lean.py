"""The FHIR client uses requests' public surface only (issue 20) and keeps its guarantees.

- the guarded adapter overrides only ``init_poolmanager``; nothing of requests is copied;
- the watchdog still shuts every socket at its deadline when it is woken only for an earlier one;
- no cookie a FHIR server sets is kept or sent with a later query (the session serves every EHR
  and patient of the process);
- ``responses`` still intercepts the FHIR client's GETs (unit tests of FHIR calls rely on it).
"""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest

from outbound import netguard
from outbound.fhir_client import Deadline, FhirClient
from outbound.netguard import EgressPolicy


# ------------------------------------------------------------------ the guarded adapter


def test_the_adapter_overrides_only_the_documented_pool_manager_hook():
    """Speed through public APIs only: no copy of requests' internals (``build_response``,
    ``request_url``, the pool lookup); the guard is installed through ``init_poolmanager``."""
    own = {name for name in vars(netguard.GuardedAdapter) if not name.startswith("__")}
    assert own == {"init_poolmanager"}
    session = netguard.guarded_session()
    try:
        adapter = session.get_adapter("http://")
        pool = adapter.get_connection_with_tls_context(_request("http://127.0.0.1:9/fhir/Patient/1"), True)
        assert isinstance(pool, netguard.GuardedHTTPPool)
        https = adapter.get_connection_with_tls_context(_request("https://fhir.example.org/r4/Patient/1"), True)
        assert isinstance(https, netguard.GuardedHTTPSPool) and https.cert_reqs == "CERT_REQUIRED"
    finally:
        session.close()


def test_the_fhir_client_copies_nothing_from_requests():
    import outbound.fhir_client as fc

    for name in ("encode_url", "_prepare", "build_response"):
        assert not hasattr(fc, name) and not hasattr(fc.FhirClient, name)


def _request(url: str) -> PreparedRequest:
    p = PreparedRequest()
    p.prepare(method="GET", url=url)
    return p


# ------------------------------------------------------------------ the watchdog


def test_the_watchdog_shuts_every_socket_at_its_deadline_whatever_the_order():
    pairs = [socket.socketpair() for _ in range(3)]
    now = time.monotonic()
    ends = [now + 30, now + 0.3, now + 0.6]  # a late one first: the watchdog sleeps until it
    tokens = [netguard.WATCHDOG.watch(a, end) for (a, _), end in zip(pairs, ends, strict=True)]
    try:
        for (a, _), end in list(zip(pairs, ends, strict=True))[1:]:
            a.settimeout(5)
            assert a.recv(1) == b""  # shut down by the watchdog (nothing was ever sent)
            assert time.monotonic() >= end - 0.01
            assert time.monotonic() < end + 2
        pairs[0][0].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs[0][0].recv(1)  # not yet at its deadline: still open
    finally:
        for t in tokens:
            netguard.WATCHDOG.cancel(t)
        for a, b in pairs:
            a.close()
            b.close()


# ------------------------------------------------------------------ cookies and responses


class _CookieServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.cookies_received: list[str | None] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805
                self.cookies_received.append(handler.headers.get("Cookie"))
                body = b'{"resourceType":"Patient","id":"p1"}'
                handler.send_response(200)
                handler.send_header("Content-Type", "application/fhir+json")
                handler.send_header("Set-Cookie", "JSESSIONID=of-the-first-caller; Path=/")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_cookie_set_by_a_fhir_server_is_not_sent_with_the_next_query():
    server = _CookieServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client = FhirClient()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/fhir/Patient/p1"
        policy = EgressPolicy(allow_loopback=True)
        for token in ("token-of-one-caller", "token-of-another"):
            assert client.get_json(url, token, Deadline(5, policy=policy))["id"] == "p1"
        assert server.cookies_received == [None, None]
        assert len(client.session.cookies) == 0
    finally:
        client.close()
        server.shutdown()
        server.server_close()


@responses.activate
def test_responses_intercepts_the_fhir_client():
    responses.get("http://127.0.0.1:9/fhir/Observation", json={"resourceType": "Bundle", "type": "searchset"},
                  content_type="application/fhir+json")
    client = FhirClient()
    try:
        bundle = client.search("http://127.0.0.1:9/fhir", "Observation?patient=p1&code=http://loinc.org|718-7",
                               "tok", Deadline(5, policy=EgressPolicy(allow_loopback=True)))
    finally:
        client.close()
    assert bundle["resourceType"] == "Bundle" and bundle["entry"] == []
    assert str(responses.calls[0].request.url).endswith("code=http://loinc.org%7C718-7")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer tok"


def test_requests_is_still_the_http_library():
    client = FhirClient()
    try:
        assert isinstance(client.session, requests.Session)
        assert isinstance(client.adapter, HTTPAdapter)
        assert client.adapter is client.session.get_adapter("http://h/") is client.session.get_adapter("https://h/")
    finally:
        client.close()
