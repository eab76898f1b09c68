"""The FHIR client's lean path (issue 13, scenario (b)) does what requests' full path did.

- ``encode_url`` gives the URL ``PreparedRequest.prepare_url`` gives, for any URL;
- the guarded adapter's pool cache, request target and response building agree with
  ``HTTPAdapter``'s own and fall back to it with a proxy or other TLS settings;
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
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest

from hooks import netguard
from hooks.fhir_client import Deadline, FhirClient, encode_url
from hooks.netguard import EgressPolicy


def _prepared(url: str) -> str:
    p = PreparedRequest()
    try:
        p.prepare_url(url, None)
    except Exception as exc:  # noqa: BLE001 - the same exception type is what must agree
        return f"raises {type(exc).__name__}"
    return str(p.url)


def _ours(url: str) -> str:
    try:
        return encode_url(url)
    except Exception as exc:  # noqa: BLE001
        return f"raises {type(exc).__name__}"


PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]


@pytest.mark.parametrize("char", PRINTABLE)
def test_every_printable_character_is_encoded_as_prepare_url_encodes_it(char):
    for url in (f"http://127.0.0.1:8080/fhir/a{char}b?x=1", f"http://h/fhir/Observation?code=a{char}b",
                f"https://fhir.example.org/r4/{char}", f"http://h:65535/a?{char}", f"http://h/{char}{char}?{char}"):
        assert _ours(url) == _prepared(url), url


@settings(max_examples=3000, deadline=None)
@given(scheme=st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
       host=st.text(alphabet="abcXYZ019.-_*[]:%@ü", max_size=10),
       port=st.one_of(st.none(), st.integers(-1, 70000).map(str), st.text(alphabet="0123456789a ", max_size=6)),
       middle=st.sampled_from(["", "/", "/.", "/..", "/./x", "/a/../b", "?", "#", "//", "/fhir/Observation?"]),
       rest=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("ü\t\n%"),
                    max_size=40))
def test_any_url_is_encoded_as_prepare_url_encodes_it(scheme, host, port, middle, rest):
    url = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + middle + rest
    assert _ours(url) == _prepared(url)


def test_the_service_s_own_queries_take_the_one_pass_path(monkeypatch):
    """The realistic queries (long code lists with '|') are encoded without prepare_url."""
    from hooks.prefetch import render
    from hooks.registry import SERVICES

    calls = []
    real = PreparedRequest.prepare_url
    def counted(self, *args):
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(PreparedRequest, "prepare_url", counted)
    templates = {p.template for s in SERVICES.values() for p in s.prefetch.values()}
    assert templates
    for template in templates:
        url = "http://127.0.0.1:8080/fhir/" + str(render(template, {"patientId": "pt-1"}))
        assert "%7C" in encode_url(url) or "|" not in url
    assert calls == []


# ------------------------------------------------------------------ the guarded adapter


@pytest.fixture
def adapter():
    session = netguard.guarded_session()
    yield session.get_adapter("http://")
    session.close()


def _request(url: str) -> PreparedRequest:
    p = PreparedRequest()
    p.prepare(method="GET", url=url)
    return p


def test_the_pool_of_a_server_is_looked_up_once_and_again_after_it_closed(adapter):
    first = adapter.get_connection_with_tls_context(_request("http://127.0.0.1:9/fhir/Patient/1"), True)
    again = adapter.get_connection_with_tls_context(_request("http://127.0.0.1:9/fhir/Observation?x=1"), True)
    other = adapter.get_connection_with_tls_context(_request("http://127.0.0.1:10/fhir/Patient/1"), True)
    assert first is again and other is not first
    assert isinstance(first, netguard.GuardedHTTPPool)
    assert first is HTTPAdapter.get_connection_with_tls_context(adapter, _request("http://127.0.0.1:9/x"), True)
    adapter.poolmanager.clear()
    first.close()
    fresh = adapter.get_connection_with_tls_context(_request("http://127.0.0.1:9/fhir/Patient/1"), True)
    assert fresh is not first and fresh.pool is not None
    for port in range(100, 120):  # more servers than the pool manager keeps pools for
        adapter.get_connection_with_tls_context(_request(f"http://127.0.0.1:{port}/fhir/Patient/1"), True)
    assert 0 < len(adapter._pools) <= adapter._max_pools == 8


def test_https_pools_verify_certificates(adapter):
    pool = adapter.get_connection_with_tls_context(_request("https://fhir.example.org/r4/Patient/1"), True)
    assert isinstance(pool, netguard.GuardedHTTPSPool)
    assert pool.cert_reqs == "CERT_REQUIRED"
    unverified = adapter.get_connection_with_tls_context(_request("https://fhir.example.org/r4/Patient/1"), False)
    assert unverified is not pool  # other TLS settings: requests' own lookup, never the cached pool


def test_a_proxy_is_left_to_requests(adapter):
    url = "http://fhir.example.org/r4/Patient/1"
    proxies = {"http": "http://proxy.example.org:3128"}
    assert adapter.request_url(_request(url), proxies) == HTTPAdapter.request_url(adapter, _request(url), proxies)
    pool = adapter.get_connection_with_tls_context(_request(url), True, proxies=proxies)
    assert pool is not adapter.get_connection_with_tls_context(_request(url), True)


@pytest.mark.parametrize("url", ["http://h/fhir/Patient/1", "http://h//fhir//Observation?code=a%7Cb&x=1",
                                 "http://h", "https://h:8443/r4/Observation?patient=p&_count=5"])
def test_the_request_target_is_requests_own(adapter, url):
    assert adapter.request_url(_request(url), {}) == HTTPAdapter.request_url(adapter, _request(url), {})


def test_the_response_is_built_as_requests_builds_it_without_cookies(adapter):
    import io

    from urllib3.response import HTTPResponse

    def raw():
        return HTTPResponse(body=io.BytesIO(b"{}"), headers={"Content-Type": "application/fhir+json; charset=utf-8",
                                                             "Set-Cookie": "s=1; Path=/"},
                            status=200, reason="OK", preload_content=False)

    req = _request("http://127.0.0.1:9/fhir/Patient/1")
    ours, theirs = adapter.build_response(req, raw()), HTTPAdapter.build_response(adapter, req, raw())
    for attr in ("status_code", "encoding", "reason", "url", "request", "connection"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert dict(ours.headers) == dict(theirs.headers)
    assert len(ours.cookies) == 0  # not parsed: nobody reads them


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
