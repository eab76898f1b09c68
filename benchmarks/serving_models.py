"""Which serving model survives slow clients? ``python benchmarks/serving_models.py``

Starts the app (auth off, in-memory store, prefetch-only calls) on a loopback port under each
model, opens SLOW connections that send a request line and then one header byte a second
(slowloris), and measures meanwhile what a normal client gets: discovery and a hook call with
full prefetch, one after another, each with a 5 s timeout. Prints a Markdown table.

Models: ``serve`` (gunicorn gthread with this service's worker: per-request watchdog,
AZA_CDS_CLIENT_SECONDS=10), stock gunicorn gthread, gunicorn gevent, waitress. gevent and
waitress are not dependencies of the service: ``pip install gevent waitress`` to run this.
Loopback only; nothing leaves the machine.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
THREADS = 4
SLOW = int(os.environ.get("SLOW_CLIENTS", "32"))
PROBE_SECONDS = float(os.environ.get("PROBE_SECONDS", "12"))

APP = "benchmarks.serving_models:wsgi_app"


def wsgi_app():  # the factory gunicorn and waitress load
    from service import create_app

    return create_app({"auth_required": False, "database_url": "sqlite://"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(port: int) -> dict[str, list[str]]:
    g = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "--log-level", "error"]
    return {
        "serve (gthread + watchdog)": [sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth", "--host",
                                       "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", str(THREADS)],
        "gunicorn gthread (stock)": g + ["-k", "gthread", "--threads", str(THREADS), f"{APP}()"],
        "gunicorn gevent": g + ["-k", "gevent", "--worker-connections", "1000", f"{APP}()"],
        "waitress": [str(BIN / "waitress-serve"), "--listen", f"127.0.0.1:{port}", "--threads", str(THREADS),
                     "--call", APP],
    }


def wait_up(port: int, proc) -> None:
    for _ in range(300):
        try:
            OPENER.open(f"http://127.0.0.1:{port}/cds-services", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited") from None
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def hook_body() -> bytes:
    from tests.builders import hook_request, prefetch

    return json.dumps(hook_request(pre=prefetch())).encode()


def probe(port: int, body: bytes) -> dict:
    lat, fails, n = [], 0, 0
    end = time.monotonic() + PROBE_SECONDS
    while time.monotonic() < end:
        for path, data in (("/cds-services", None), ("/cds-services/thiopurine-order-sign", body)):
            n += 1
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                         headers={"Content-Type": "application/json", "Connection": "close"})
            started = time.monotonic()
            try:
                OPENER.open(req, timeout=5).read()
                lat.append(time.monotonic() - started)
            except (OSError, urllib.error.URLError):
                fails += 1
    return {"calls": n, "failed": fails, "p50": statistics.median(lat) * 1000 if lat else None,
            "max": max(lat) * 1000 if lat else None}


def slowloris(port: int, n: int, body: bool = False) -> list[socket.socket]:
    socks = []
    head = b"POST /cds-services/thiopurine-order-sign HTTP/1.1\r\nHost: a\r\n"
    head += b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{" if body else b"X-Slow: "
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(head)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            break
    return socks


def run() -> None:
    body = hook_body()
    rows = []
    for name in commands(0):
        port = free_port()
        cmd = commands(port)[name]
        with tempfile.TemporaryDirectory() as data:
            env = {**os.environ, "AZA_CDS_DATA_DIR": data, "PYTHONPATH": str(ROOT)}
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_up(port, proc)
                quiet = probe(port, body)
                loaded = {}
                for kind in ("headers", "body"):
                    loaded[kind] = _under_slowloris(port, body, kind == "body")
            finally:
                proc.terminate()
                proc.wait(30)
        rows.append((name, quiet, loaded))
    print(f"{SLOW} slow clients (dripping one byte a second: headers, or a body after complete headers), "
          f"{THREADS} threads, 1 worker, {PROBE_SECONDS:.0f} s per probe; probe = discovery + order-sign with full "
          "prefetch, sequential, 5 s timeout each; cells: calls / failed / p50 ms / max ms\n")
    print("| model | alone | slow headers | slow bodies |")
    print("| --- | --- | --- | --- |")
    for name, a, b in rows:
        def cell(r):
            fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            return f"{r['calls']} / {r['failed']} / {fmt(r['p50'])} / {fmt(r['max'])}"
        print(f"| {name} | {cell(a)} | {cell(b['headers'])} | {cell(b['body'])} |")


def _under_slowloris(port: int, body: bytes, slow_body: bool) -> dict:
    import threading

    socks = slowloris(port, SLOW, slow_body)
    stop = threading.Event()

    def drip():
        while not stop.wait(1.0):
            for s in socks:
                try:
                    s.send(b" ")
                except OSError:
                    pass

    threading.Thread(target=drip, daemon=True).start()
    try:
        return probe(port, body)
    finally:
        stop.set()
        for s in socks:
            s.close()


if __name__ == "__main__":
    run()
