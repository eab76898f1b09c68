"""Memory bounded by design (issue 18, R7 and R8), measured on the real server.

``azathioprine-cds serve`` (gunicorn, one worker, 4 threads, production mode without a token) is
attacked from loopback, and the worker's peak resident memory (``VmHWM`` in /proc, the
high-water mark of its whole life) must stay at or below 200 MB:

- a FHIR server whose every answer is a gzip bomb: 256 MiB of zeros, or a valid Bundle of
  millions of empty objects, each in about 250 KiB on the wire; hook calls, 4 at a time, that
  make the service query it (8 prefetch keys each). The service inflates each answer as a stream
  against the call's byte budget, so it answers with a "too large" data-gap card, never 5xx;
- request bodies of 4.9 MB of empty objects (``[{},{},...]``), 4 at a time: refused with 413
  before they are parsed (each ``{`` counts against ``service.jsonbody.MAX_CONTAINERS``, 100,000).

Nothing here measures time.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.builders import SERVICE, hook_request, prefetch
from tests.test_serving import Serve

SIGN = f"/cds-services/{SERVICE['order-sign']}"
LIMIT_KB = 200 * 1000  # 200 MB, as /proc reports kB
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _gzip_stream(piece: bytes, total: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [packer.compress(head)]
    block = piece * (1024 * 1024 // len(piece))
    for _ in range(total // len(block)):
        out.append(packer.compress(block))
    out.append(packer.compress(tail))
    out.append(packer.flush())
    return b"".join(out)


ZEROS = _gzip_stream(b"\0", 256 * 1024 * 1024)
EMPTY_OBJECTS = _gzip_stream(b"{},", 96 * 1024 * 1024, head=b'{"resourceType":"Bundle","type":"searchset","entry":[',
                             tail=b"{}]}")


class BombServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.served = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                server.served += 1
                body = ZEROS if server.served % 2 else EMPTY_OBJECTS
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the service stopped reading: that is the point

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"


@pytest.fixture
def bombs():
    server = BombServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(c) for c in children]


def peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def post(base: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(base + SIGN, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def server(tmp_path):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "4")
    yield srv
    srv.close()


def test_gzip_bombs_from_the_fhir_server_keep_the_worker_under_200_mb(server, bombs):
    (worker,) = worker_pids(server.proc.pid)
    before = peak_kb(worker)
    bodies = [json.dumps(hook_request(fhir_server=bombs.base, token="t")).encode() for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: post(server.base, b), bodies))
    assert [status for status, _ in results] == [200] * 8, results
    for _, answer in results:  # each call says what it could not read, and why (too large; on a
        text = json.dumps(answer)  # loaded machine the deadline may come first: also never "no data")
        assert "data-incomplete" in text and ("too large" in text or "did not answer in time" in text), text[:2000]
    assert bombs.served >= 8
    after = peak_kb(worker)
    assert worker_pids(server.proc.pid) == [worker], "the worker was not replaced meanwhile"
    print(f"worker peak RSS {before} kB before, {after} kB after the attack")
    assert after <= LIMIT_KB, f"worker peak RSS {after} kB (before the attack {before} kB)"


def test_bodies_of_empty_objects_are_refused_before_parsing_and_keep_the_worker_under_200_mb(server):
    (worker,) = worker_pids(server.proc.pid)
    before = peak_kb(worker)
    body = b'{"hook":"order-sign","context":' + b"[" + b"{}," * (4_900_000 // 3 - 1) + b"{}]}"
    assert 4_800_000 < len(body) < 5 * 1024 * 1024
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: post(server.base, body), range(8)))
    assert [status for status, _ in results] == [413] * 8
    assert all(r["resourceType"] == "OperationOutcome" for _, r in results)
    assert "objects and arrays" in results[0][1]["issue"][0]["diagnostics"]
    after = peak_kb(worker)
    assert worker_pids(server.proc.pid) == [worker]
    print(f"worker peak RSS {before} kB before, {after} kB after the attack")
    assert after <= LIMIT_KB, f"worker peak RSS {after} kB"
    status, _ = post(server.base, json.dumps(hook_request(pre=prefetch())).encode())  # and it answers on
    assert status == 200


def test_workers_are_recycled_with_jitter_only_as_a_second_line():
    """Memory is bounded by the limits above; recycling a worker after many requests (each at its
    own count, so the workers do not restart together) only guards against slow creep."""
    from service.wsgi import MAX_REQUESTS, gunicorn_settings

    settings = gunicorn_settings(host="127.0.0.1", port=8080, workers=2, threads=4)
    assert settings["max_requests"] == MAX_REQUESTS >= 10_000
    assert 0 < settings["max_requests_jitter"] <= MAX_REQUESTS // 10
