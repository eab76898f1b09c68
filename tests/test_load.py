"""Under load, a real ``serve`` stays answerable: calls that queued longer than
``AZA_CDS_MAX_QUEUE_SECONDS`` get a fast 503 with ``Retry-After`` (their deadline started when
they arrived), discovery keeps answering, and clients that drip their request are cut off.

Only loose upper bounds (tens of seconds, far from what passing needs) guard against hangs.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.builders import SERVICE, hook_request
from tests.test_serving import _OPENER, Serve

SIGN = f"/cds-services/{SERVICE['order-sign']}"


class SlowFhir(ThreadingHTTPServer):
    """Every query answered after ``delay`` seconds (an empty searchset)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.delay = delay
        self.release = threading.Event()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle_error(self, *a) -> None:
        pass


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowFhir

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.release.wait(self.server.delay)
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


@pytest.fixture
def slow_fhir():
    server = SlowFhir(delay=1.0)
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _call(base: str, fhir: str) -> tuple[int, dict]:
    req = urllib.request.Request(base + SIGN, data=json.dumps(hook_request(fhir_server=fhir)).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Connection": "close"})
    try:
        with _OPENER.open(req, timeout=60) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, dict(err.headers)


def test_a_long_queue_answers_503_with_retry_after_and_discovery_still_answers(tmp_path, slow_fhir):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "2",
                env={"AZA_CDS_FHIR_DEADLINE": "1.0", "AZA_CDS_MAX_QUEUE_SECONDS": "0.3"})
    fhir = f"http://127.0.0.1:{slow_fhir.server_address[1]}/fhir"
    try:
        with ThreadPoolExecutor(12) as pool:
            calls = [pool.submit(_call, srv.base, fhir) for _ in range(10)]
            time.sleep(0.3)
            with _OPENER.open(srv.base + "/cds-services", timeout=60) as resp:
                assert resp.status == 200
            results = [c.result() for c in calls]
    finally:
        srv.close()
    statuses = sorted(s for s, _ in results)
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
    assert set(statuses) <= {200, 503}
    assert all(h.get("Retry-After") for s, h in results if s == 503)


def test_clients_that_drip_their_request_are_cut_off_and_do_not_starve_the_server(tmp_path):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "2",
                env={"AZA_CDS_CLIENT_SECONDS": "2"})
    slow = []
    try:
        for _ in range(4):  # twice as many as there are threads
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(b"POST " + SIGN.encode() + b" HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            slow.append(s)
        closed = [False] * len(slow)
        started = time.monotonic()
        while not all(closed) and time.monotonic() - started < 40:
            for i, s in enumerate(slow):
                if closed[i]:
                    continue
                try:
                    s.sendall(b"x")  # one byte every 0.2 s: never a complete request
                    s.settimeout(0.01)
                    if s.recv(1) == b"":
                        closed[i] = True
                except (TimeoutError, socket.timeout):
                    pass
                except OSError:
                    closed[i] = True
                finally:
                    s.settimeout(30)
            time.sleep(0.2)
        assert all(closed), "the server kept dripping clients' connections open"
        with _OPENER.open(srv.base + "/cds-services", timeout=30) as resp:
            assert resp.status == 200
    finally:
        for s in slow:
            s.close()
        srv.close()


def test_slow_request_heads_and_bodies_occupy_no_thread(tmp_path):
    """Twice as many dripping clients as threads, some stuck in their headers, some in a body
    after complete headers: discovery and a hook call are still answered while they drip."""
    from tests.builders import prefetch

    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "2", env={"AZA_CDS_CLIENT_SECONDS": "60"})
    heads = [b"POST " + SIGN.encode() + b" HTTP/1.1\r\nHost: a\r\nX-Slow: ",
             b"POST " + SIGN.encode() + b" HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
             b"Content-Length: 50000\r\n\r\n{"]
    slow = []
    try:
        for i in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(heads[i % 2])
            slow.append(s)
        time.sleep(0.5)
        for s in slow:
            s.sendall(b" ")
        with _OPENER.open(srv.base + "/cds-services", timeout=5) as resp:
            assert resp.status == 200
        req = urllib.request.Request(srv.base + SIGN, data=json.dumps(hook_request(pre=prefetch())).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with _OPENER.open(req, timeout=5) as resp:
            assert resp.status == 200 and "cards" in json.loads(resp.read())
    finally:
        for s in slow:
            s.close()
        srv.close()
