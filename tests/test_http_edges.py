"""Every error is a JSON OperationOutcome, gunicorn's own included; CORS as browsers need it.

The gunicorn cases talk raw HTTP to a real ``serve`` process (its own parser answers them before
the app sees anything); the rest use the Flask test client.
"""
from __future__ import annotations

import json
import socket

import pytest

from hooks import SERVICES
from tests.builders import SERVICE, hook_request, prefetch
from tests.test_serving import Serve, _json_lines

TOKEN = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlLm9yZyJ9.c2VjcmV0LXNpZ25hdHVyZS1tYXJrZXI"
SIGN = f"/cds-services/{SERVICE['order-sign']}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Serve(tmp_path_factory.mktemp("edges"), "--insecure-no-auth", "--workers", "1", "--threads", "2")
    yield srv
    srv.close()


def raw(srv: Serve, data: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _chunked(total: int) -> bytes:
    piece = b" " * 65536
    return b"".join(b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(total // len(piece) + 1)) + b"0\r\n\r\n"


CASES = {
    "request line too long": (b"GET /cds-services?" + b"x" * 6000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "header fields too large": (b"GET /cds-services HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
    "control byte in a header carrying a JWT": (
        b"GET /cds-services HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n", 400),
    "invalid header name before a JWT": (b"GET /cds-services HTTP/1.1\r\nHost: a\r\nBad(Name: " + TOKEN.encode() + b"\r\n\r\n", 400),
    "garbage request line": (b"\x16\x03\x01 hello " + TOKEN.encode() + b"\r\n\r\n", 400),
    "oversized chunked body": (f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode() + _chunked(6 * 1024 * 1024), 413),
}


@pytest.mark.parametrize("case", list(CASES))
def test_server_errors_are_json_operation_outcomes_and_logs_never_echo_headers(server, case):
    data, status = CASES[case]
    got, headers, body = raw(server, data)
    assert got == status, body[:300]
    assert headers["content-type"].startswith("application/fhir+json")
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    log = server.stderr()
    assert TOKEN not in log and "c2VjcmV0LXNpZ25hdHVyZS1tYXJrZXI" not in log and "y" * 100 not in log
    _json_lines(log)  # every line JSON


def test_lone_surrogate_in_patient_id_is_a_4xx(client):
    req = hook_request(pre={k: v for k, v in prefetch().items() if k != "labs"})
    req["context"]["patientId"] = "\ud800"
    req["fhirServer"] = "https://ehr.example.org/fhir"
    body = json.dumps(req, ensure_ascii=True)  # "\ud800" escaped: valid JSON, not valid text
    resp = client.post(SIGN, data=body, content_type="application/json")
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------ CORS

ORIGIN = {"Origin": "https://sandbox.cds-hooks.org"}


@pytest.mark.parametrize("path", ["/cds-services", "/cds-services/", SIGN, SIGN + "/feedback", "/no-such-path",
                                  "/cds-services/unknown-service"])
def test_preflight_on_any_path_allows_the_private_network(client, path):
    resp = client.options(path, headers={**ORIGIN, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization,content-type",
                                         "Access-Control-Request-Private-Network": "true"})
    assert 200 <= resp.status_code < 300
    assert resp.headers["Access-Control-Allow-Origin"]
    assert resp.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()


def test_discovery_with_a_trailing_slash_and_404s_carry_cors(client):
    slash = client.get("/cds-services/", headers=ORIGIN)
    assert slash.status_code == 200 and slash.get_json() == client.get("/cds-services").get_json()
    assert slash.headers["Access-Control-Allow-Origin"]
    missing = client.get("/nothing-here", headers=ORIGIN)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"]
    assert missing.get_json()["resourceType"] == "OperationOutcome"


def test_usage_requirements_name_every_scope_the_prefetch_needs(client):
    for service in client.get("/cds-services").get_json()["services"]:
        wanted = {t.split("?")[0].split("/")[0] for t in service["prefetch"].values()} | {"Medication"}
        for rtype in wanted:
            assert f"patient/{rtype}.read" in service["usageRequirements"], rtype
        assert "AllergyIntolerance" in service["usageRequirements"]
    assert SERVICES


def test_a_401_log_line_names_the_service(tmp_path):
    import logging

    from service import create_app
    from tests.test_auth import Lines

    trust = tmp_path / "t.json"
    trust.write_text(json.dumps({"issuers": [{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/j"}]}))
    app = create_app({"auth_required": True, "trust": str(trust), "public_base_url": "http://localhost",
                      "database_url": "sqlite://"})
    handler = Lines()
    logger = logging.getLogger("aza_cds")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # `check` (test_cli) quiets it to WARNING in this process
    try:
        assert app.test_client().post(SIGN, json=hook_request(pre=prefetch())).status_code == 401
        assert app.test_client().post("/cds-services/x-unknown", json={}).status_code == 401
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r for r in handler.records() if r.get("event") == "request"]
    assert [(r["status"], r["service"], r["refusal"]) for r in lines] == [
        (401, "thiopurine-order-sign", "missing"), (401, "(unknown)", "missing")]


def test_the_single_thread_worker_answers_json_errors_too(tmp_path):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "1")
    try:
        status, headers, body = raw(srv, CASES["request line too long"][0])
        assert status == 414 and json.loads(body)["resourceType"] == "OperationOutcome"
        assert "CdsSyncWorker" in srv.stderr()
    finally:
        srv.close()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_or_infinity_in_a_body_is_a_400_operation_outcome(client, constant):
    """Not JSON (RFC 8259): a dose or weight of NaN must never reach a rule."""
    req = hook_request(pre={k: v for k, v in prefetch().items() if k != "labs"})
    body = json.dumps(req).replace('"hookInstance": ', f'"x-extra": {constant}, "hookInstance": ', 1)
    assert constant in body
    resp = client.post(SIGN, data=body, content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    feedback = client.post(SIGN + "/feedback", data=f'{{"feedback": [{{"card": {constant}}}]}}',
                           content_type="application/json")
    assert feedback.status_code == 400 and feedback.get_json()["resourceType"] == "OperationOutcome"
