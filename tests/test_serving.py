"""The production server, as a real process: ``azathioprine-cds serve`` (gunicorn).

- SIGTERM is a graceful stop: a hook call in flight (waiting on a slow FHIR server) is answered
  in full, then the process exits 0; the port is closed afterwards.
- Every line on stderr is one JSON object (access log and gunicorn's own messages), and the
  access line says method, route, status and latency but never the token or the patient.
- ``--insecure-no-auth`` serves without a token (loopback only); without it the same server
  refuses a call that has no JWT (401).

Nothing here measures speed.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.builders import PID, SERVICE, hook_request

ROOT = Path(__file__).resolve().parent.parent
FHIR_TOKEN = "serving-test-fhir-token"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """``python -m service.cli serve ...`` on a free loopback port, stderr kept in a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict | None = None) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr_path = tmp_path / f"serve-{self.port}.log"
        self._stderr = open(self.stderr_path, "wb")
        full_env = {**os.environ, "AZA_CDS_DATA_DIR": str(tmp_path), "AZA_CDS_FHIR_ALLOW_LOOPBACK": "1", **(env or {})}
        full_env.pop("AZA_CDS_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=self._stderr)
        for _ in range(1200):
            try:
                _OPENER.open(self.base + "/cds-services", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve exited {self.proc.returncode}:\n{self.stderr()}") from None
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"serve did not start:\n{self.stderr()}")

    def post(self, body: dict, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + f"/cds-services/{SERVICE['order-sign']}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def _start(*args: str, env: dict | None = None) -> Serve:
        s = Serve(tmp_path, *args, env=env)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def slow_fhir():
    """The in-memory FHIR server, answering every query after 1.5 s: long enough to stop the
    service while a hook call waits on it."""
    from tests.fhir_server.medplum import MedplumServer, MedplumServerError

    try:
        server = MedplumServer(token=FHIR_TOKEN, delay_ms=1500).start()
    except MedplumServerError as exc:  # pragma: no cover - no Node.js on this machine
        pytest.skip(f"FHIR test server unavailable: {exc}")
    yield server
    server.stop()


def _json_lines(text: str) -> list[dict]:
    """The server's log lines: from the first JSON line on (before it, the command line prints
    its human-readable banner and the discovery URL), every line must be one JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if line.startswith("{")), len(lines))
    records = []
    for line in lines[first:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}")
    return records


def test_sigterm_answers_the_call_in_flight_then_exits_0(serve, slow_fhir):
    srv = serve("--insecure-no-auth", "--workers", "1", "--threads", "4", env={"AZA_CDS_FHIR_DEADLINE": "10"})
    slow_fhir.reset_log()
    outcome: dict = {}

    def call():
        try:
            outcome["answer"] = srv.post(hook_request(fhir_server=slow_fhir.base_url, token=FHIR_TOKEN))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    for _ in range(3000):  # wait until the call is in flight: its FHIR queries reached the server
        if slow_fhir.request_log():
            break
        time.sleep(0.02)
    else:
        pytest.fail("the hook call never reached the FHIR server")
    assert not outcome, outcome  # still waiting on the slow FHIR server
    srv.proc.send_signal(signal.SIGTERM)
    caller.join(30)
    assert "error" not in outcome, outcome.get("error")
    status, body = outcome["answer"]
    assert status == 200 and isinstance(body.get("cards"), list), body
    assert srv.proc.wait(30) == 0, srv.stderr()[-3000:]
    with pytest.raises(OSError):  # the port is closed once the server is gone
        _OPENER.open(srv.base + "/cds-services", timeout=2).read()
    events = [r.get("event") for r in _json_lines(srv.stderr())]
    assert "request" in events and events[-1] == "server-stop", events


def test_stderr_is_structured_json_without_tokens_or_patient_ids(serve):
    srv = serve("--insecure-no-auth", "--workers", "1", "--threads", "2")
    req = hook_request(pre={"patient": {"resourceType": "Patient", "id": PID}, "medications": {"resourceType": "Bundle",
                                                                                                "type": "searchset"}})
    status, _ = srv.post(req, headers={"Authorization": "Bearer not-a-real-token-abc123"})
    assert status == 200
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    text = srv.stderr()
    records = _json_lines(text)
    access = [r for r in records if r.get("event") == "request" and r.get("method") == "POST"]
    assert len(access) == 1, records
    line = access[0]
    assert line["status"] == 200 and line["service"] == SERVICE["order-sign"] and line["latency_ms"] >= 0
    assert line["path"] == "/cds-services/<service_id>"
    assert "not-a-real-token-abc123" not in text and PID not in text
    assert {"server-ready", "worker-ready", "server-stop"} <= {r.get("event") for r in records}


def test_auth_is_on_unless_insecure_no_auth(serve, tmp_path):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key()))
    key.update({"kid": "k1", "alg": "ES384", "use": "sig"})
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example", "jwks": {"keys": [key]}}]}))
    secure = serve("--trust", str(trust), "--workers", "1", "--threads", "2")
    open_ = serve("--insecure-no-auth", "--workers", "1", "--threads", "2")
    req = hook_request(pre={"patient": {"resourceType": "Patient", "id": PID},
                            "medications": {"resourceType": "Bundle", "type": "searchset"}})
    assert secure.post(req)[0] == 401
    assert open_.post(req)[0] == 200


def test_workers_option_starts_that_many_worker_processes(serve):
    srv = serve("--insecure-no-auth", "--workers", "3", "--threads", "2")
    children: list[str] = []
    for _ in range(1200):
        try:
            children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        except OSError:
            pytest.skip("no /proc on this system")
        if len(children) == 3:
            break
        time.sleep(0.05)
    assert len(children) == 3


_PREFLIGHT_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                      "Access-Control-Max-Age", "Access-Control-Allow-Private-Network")


@pytest.mark.parametrize("mode", [("--dev",), ("--insecure-no-auth", "--workers", "1", "--threads", "2")],
                         ids=["dev", "gunicorn"])
@pytest.mark.parametrize("asks_private_network", [True, False])
def test_every_preflight_carries_each_cors_header_exactly_once(serve, mode, asks_private_network):
    """A real process (dev server and gunicorn), raw response headers: a duplicated
    Access-Control-Allow-Private-Network reads as "true, true" to a browser."""
    import http.client

    srv = serve(*mode)
    asks = {"Access-Control-Request-Private-Network": "true"} if asks_private_network else {}
    for path in ("/cds-services", f"/cds-services/{SERVICE['order-sign']}", "/no-such-path"):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("OPTIONS", path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                               "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "authorization,content-type", **asks})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert 200 <= resp.status < 300, path
        names = [name.lower() for name, _ in resp.getheaders()]
        for header in _PREFLIGHT_HEADERS:
            assert names.count(header.lower()) == 1, (path, header, resp.getheaders())
        assert resp.getheader("Access-Control-Allow-Private-Network") == "true"


def test_dev_server_logs_no_query_string_header_or_werkzeug_line(serve):
    """``serve --dev``: our JSON access line only; a ?token=... and an Authorization header leave
    no trace in anything the process writes."""
    import http.client

    srv = serve("--dev")
    secret, jwt_text = "SECRET-q9x7", "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl"
    auth = {"Authorization": f"Bearer {jwt_text}"}
    body = json.dumps(hook_request(pre={"patient": {"resourceType": "Patient", "id": PID},
                                        "medications": {"resourceType": "Bundle", "type": "searchset"}}))
    for method, path, data in (("GET", f"/cds-services?token={secret}", None),
                               ("POST", f"/cds-services/{SERVICE['order-sign']}?token={secret}", body),
                               ("GET", f"/no-such-path?token={secret}", None)):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request(method, path, body=data, headers={**auth, "Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) == 0
    text = srv.stderr()
    assert secret not in text and jwt_text not in text and "token=" not in text, text
    tail = text[text.index("{"):]  # from the first JSON line on: JSON only (see _json_lines)
    assert "\x1b[" not in tail, tail  # no colourised Werkzeug access lines
    assert '"GET /' not in text and '"POST /' not in text, text
    access = [r for r in _json_lines(text) if r.get("event") == "request"]
    assert [r["method"] for r in access][-3:] == ["GET", "POST", "GET"], access  # after the start-up probes
