"""Logs: one structured line per request, and nothing from the record or the caller in any line.

Full scenarios run with a patient whose name, identifiers, tokens and free text are easy to
recognise: prefetch, the FHIR fallback (a loopback server that answers and fails), every kind of
error answer, authentication failures, feedback with a comment, and an unexpected exception.
Every line the service writes (its JSON lines, formatted as in production) and every record any
other logger writes at INFO or above must be free of all of them.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from service import create_app
from service.logs import JsonFormatter
from tests.builders import (SERVICE, bundle, genotype_ig, hook_request, lab, med_request, patient, prefetch,
                            weight)

GIVEN, FAMILY = "Zebulon", "Quixotewright"
PID = "pt-zq-4711"
MRN = "MRN-98765-XYZ"
FHIR_TOKEN = "fhir-SECRET-token-8c1f0e"
USER = "Practitioner/dr-quincy-secretary"
DIAGNOSIS = "Zebulon's undisclosed myasthenia"
COMMENT = "Overrode because Zebulon Quixotewright's TPMT was retested"
SECRETS = [GIVEN, FAMILY, PID, MRN, FHIR_TOKEN, "dr-quincy-secretary", "undisclosed myasthenia", "retested"]
ISS = "https://ehr.logs.example.org"
KEY = ec.generate_private_key(ec.SECP384R1())


def zq_patient() -> dict:
    p = patient(PID)
    p["name"] = [{"given": [GIVEN], "family": FAMILY, "text": f"{GIVEN} {FAMILY}"}]
    p["identifier"] = [{"system": "urn:oid:1.2.3", "value": MRN}]
    return p


def zq_condition() -> dict:
    return {"resourceType": "Condition", "id": "cond-zq", "subject": {"reference": f"Patient/{PID}"},
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": DIAGNOSIS}}


def zq_prefetch() -> dict:
    pre = prefetch(pt=zq_patient(), pgx=[genotype_ig("TPMT", "*1/*3A"), genotype_ig("NUDT15", "*1/*1")],
                   conditions=[zq_condition()], labs=[lab("6690-2", 5, "furlongs")])
    for value in pre.values():
        for e in value.get("entry", []):
            e["resource"].setdefault("subject", {"reference": f"Patient/{PID}"})
    return pre


def zq_request(hook: str = "order-sign", **kw) -> dict:
    order = med_request(pid=PID, id=f"mr-{PID}", display=f"azathioprine for {GIVEN} {FAMILY}")
    req = hook_request(hook, orders=[order], **kw)
    req["context"]["patientId"] = PID
    req["context"]["userId"] = USER
    return req


# ------------------------------------------------------------------ a FHIR server that knows Zebulon

class ZebulonFhir(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if "/Patient/" in path:
            body, status = zq_patient(), 200
        elif "/Condition" in path:
            body, status = bundle(zq_condition()), 200
        elif "/MedicationRequest" in path:
            body, status = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                                            "diagnostics": f"no access to {GIVEN} {FAMILY} ({MRN})"}]}, 500
        elif "29463-7" in self.path:
            body, status = bundle(weight(70)), 200
        else:
            body, status = f"<html>{GIVEN} {FAMILY} {MRN}</html>", 200  # type: ignore[assignment]  # not JSON
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


@pytest.fixture(scope="module")
def fhir():
    server = _Server(("127.0.0.1", 0), ZebulonFhir)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ capture

class Capture(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured():
    """(service lines as written in production, every other logger's INFO+ records with tracebacks)."""
    service = Capture(JsonFormatter())
    others = Capture(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    others.setLevel(logging.INFO)
    aza, root = logging.getLogger("aza_cds"), logging.getLogger()
    old_level = aza.level
    aza.addHandler(service)
    aza.setLevel(logging.DEBUG)  # even debug lines must be clean
    root.addHandler(others)
    yield service, others
    aza.removeHandler(service)
    aza.setLevel(old_level)
    root.removeHandler(others)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    jwk = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": "logs-1", "use": "sig"}
    trust = tmp_path_factory.mktemp("trust") / "trust.json"
    trust.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    app = create_app({"auth_required": True, "trust": str(trust), "public_base_url": "http://localhost", "fhir_allow_loopback": True,
                      "fhir_deadline": 0.8,
                      "database_url": "sqlite://"})
    return app.test_client()


def token(path: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISS, "sub": f"client-of-{GIVEN}", "aud": "http://localhost" + path, "iat": now, "exp": now + 300,
            "jti": str(uuid.uuid4()), "patient": PID, **claims}
    return jwt.encode(body, KEY, algorithm="ES384", headers={"kid": "logs-1"})


def post(client, path: str, body=None, *, auth: str | None = "valid", **kw):
    headers = {}
    if auth == "valid":
        headers["Authorization"] = "Bearer " + token(path)
    elif auth is not None:
        headers["Authorization"] = auth
    if body is not None:
        kw["json"] = body
    return client.post(path, headers=headers, **kw)


def run_scenarios(client, fhir) -> tuple[list[str], list[int]]:
    """Every kind of call; returns the JWTs used and the statuses seen."""
    sign = f"/cds-services/{SERVICE['order-sign']}"
    tokens, statuses = [], []

    def send(path, body=None, **kw):
        if kw.get("auth", "valid") == "valid":
            kw["auth"] = "Bearer " + token(path)
            tokens.append(kw["auth"][7:])
        resp = post(client, path, body, **kw)
        statuses.append(resp.status_code)
        return resp

    # cards from prefetch, in every hook
    for hook, service in SERVICE.items():
        assert send(f"/cds-services/{service}", zq_request(hook, pre=zq_prefetch())).status_code == 200
    # the FHIR fallback: answers with the name, fails with the name in an OperationOutcome and in HTML
    resp = send(sign, zq_request(fhir_server=fhir, token=FHIR_TOKEN))
    assert resp.status_code == 200 and resp.get_json()["cards"]
    issued_card = resp.get_json()["cards"][0]["uuid"]  # feedback is taken only about cards this service issued
    # a hookInstance that is not a UUID, and holds the name
    req = zq_request(pre=zq_prefetch())
    req["hookInstance"] = f"{GIVEN}-{FAMILY}-{MRN}"
    assert send(sign, req).status_code == 200
    # errors: schema, hook mismatch, 412, unknown service (the name in the path), 415, 413-like depth, bad JSON
    bad = zq_request(pre=zq_prefetch())
    bad["fhirServer"] = f"ftp://{GIVEN}.example.org"
    assert send(sign, bad).status_code == 400
    assert send(f"/cds-services/{SERVICE['order-select']}", zq_request(pre=zq_prefetch())).status_code == 400
    assert send(sign, zq_request(pre={"pgx": bundle()})).status_code == 412
    assert send(f"/cds-services/{GIVEN}-{MRN}", zq_request()).status_code == 404
    assert send(sign, data=f"{GIVEN} {FAMILY}", content_type="text/plain").status_code == 415
    assert send(sign, data='{"hook": "' + FAMILY, content_type="application/json").status_code == 400
    # authentication failures: no token, a token with the name in it for another URL, garbage with the MRN
    assert send(sign, zq_request(pre=zq_prefetch()), auth=None).status_code == 401
    wrong = token("/elsewhere", name=f"{GIVEN} {FAMILY}")
    tokens.append(wrong)
    assert send(sign, zq_request(pre=zq_prefetch()), auth="Bearer " + wrong).status_code == 401
    assert send(sign, zq_request(), auth=f"Bearer {MRN}.{GIVEN}.{FAMILY}").status_code == 401
    # feedback with a free-text comment
    feedback = {"feedback": [{"card": issued_card, "outcome": "overridden", "outcomeTimestamp": "2026-01-11T10:05:31Z",
                              "overrideReason": {"userComment": COMMENT}}]}
    assert send(f"{sign}/feedback", feedback).status_code == 200
    return tokens, statuses


def assert_clean(lines: list[str], tokens: list[str]) -> None:
    joined = "\n".join(lines)
    for secret in SECRETS:
        assert secret not in joined, f"{secret!r} was logged"
    for tok in tokens:
        for part in tok.split("."):
            assert part not in joined, "a part of a JWT was logged"


def test_no_phi_or_tokens_in_any_log_line(client, fhir, captured):
    service, others = captured
    tokens, statuses = run_scenarios(client, fhir)
    assert service.lines, "the service wrote no log lines"
    assert_clean(service.lines, tokens)
    assert_clean(others.lines, tokens)


def test_one_structured_line_per_request(client, fhir, captured):
    service, _ = captured
    tokens, statuses = run_scenarios(client, fhir)
    records = [json.loads(line) for line in service.lines]
    access = [r for r in records if r.get("event") == "request"]
    assert [r["status"] for r in access] == statuses  # exactly one line per request, in order
    for r in access:
        assert isinstance(r["latency_ms"], (int, float)) and r["latency_ms"] >= 0
        assert r["path"] in ("/cds-services/<service_id>", "/cds-services/<service_id>/feedback")
    served = [r for r in access if r["status"] == 200 and "cards" in r]
    assert served
    for r in served:
        assert r["service"] in SERVICE.values()
        assert isinstance(r["cards"], int) and isinstance(r["rule_ids"], list)
        assert r["hook_instance"]
        assert all(isinstance(i, str) and i.replace("-", "").isalnum() for i in r["rule_ids"])
    assert any(len(r["rule_ids"]) == r["cards"] and r["cards"] > 0 for r in served)
    # a non-UUID hookInstance is logged as a hash; unknown service ids are not echoed
    assert any(str(r.get("hook_instance", "")).startswith("sha256:") for r in access)
    assert all(r.get("service") in (*SERVICE.values(), "(unknown)", None) for r in access)
    assert {r.get("reason") for r in access if r["status"] == 401} >= {"missing bearer token",
                                                                        "audience does not match the called URL"}


def test_unexpected_exception_is_logged_by_class_only(client, captured, monkeypatch):
    import rules

    def explode(*a, **k):
        raise RuntimeError(f"{GIVEN} {FAMILY} {MRN} {FHIR_TOKEN}")

    monkeypatch.setattr(rules, "evaluate", explode)
    path = f"/cds-services/{SERVICE['order-sign']}"
    resp = post(client, path, zq_request(pre=zq_prefetch()))
    assert resp.status_code == 500
    assert GIVEN not in resp.get_data(as_text=True)
    service, others = captured
    assert any('"exception": "RuntimeError"' in line or '"error": "RuntimeError"' in line for line in service.lines)
    assert_clean(service.lines + others.lines, [])
