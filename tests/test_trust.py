"""Trusted by real clients, safe against hostile ones: the JWT rules of CDS Hooks 2.0 end to end.

- A token shaped exactly like the public CDS Hooks Sandbox's (ES384, its ``kid`` and ``jku``,
  no ``sub``, 300 s lifetime) gets cards with ``examples/trust-sandbox.json``, in process and
  through a real ``serve --trust`` whose JWKS comes from a loopback server standing in for
  the sandbox's host (nothing leaves the machine).
- A token is accepted once across two real gunicorn workers (the replay table is shared).
- ``aud`` is compared with the configured public base URL, never with the Host header.
- A JWKS endpoint that drips its answer is cut off at the request's deadline, and calls that
  need no fetch are not held up by it.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from service import create_app
from tests.builders import SERVICE
from tests.test_serving import Serve, _json_lines

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SIGN = f"/cds-services/{SERVICE['order-sign']}"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------ the sandbox, imitated

KEY = ec.generate_private_key(ec.SECP384R1())  # ephemeral; the sandbox's private key is not ours
PUBLIC_JWK = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": SANDBOX_KID, "use": "sig", "alg": "ES384"}


def sandbox_token(aud: str, *, jku: str | None = SANDBOX_JKU, jti: str | None = None, key=KEY,
                  iss: str = SANDBOX_ISS) -> str:
    """What the sandbox sends: ES384, its kid and jku, iss/aud/iat/exp(+300)/jti, no sub."""
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": jti or str(uuid.uuid4())}
    headers = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID} | ({"jku": jku} if jku else {})
    return jwt.encode(claims, key, algorithm="ES384", headers=headers)


def example_trust() -> dict:
    return json.loads((ROOT / "examples" / "trust-sandbox.json").read_text())


def example_request() -> dict:
    body = json.loads((ROOT / "examples" / "tpmt-intermediate-metabolizer.json").read_text())
    body.pop("fhirServer", None)  # the example names a public host: never contacted
    body.pop("fhirAuthorization", None)
    return body


def write(tmp_path: Path, doc: dict, name: str = "trust.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


class JwksServer(ThreadingHTTPServer):
    """Stands in for https://sandbox.cds-hooks.org/.well-known/jwks.json on a loopback port.
    ``drip``: seconds between the bytes of the status line and headers (0: answer at once)."""

    daemon_threads = True

    def __init__(self, jwks: dict, drip: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _JwksHandler)
        self.jwks, self.drip, self.hits = jwks, drip, 0
        self.release = threading.Event()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"

    def handle_error(self, request, client_address) -> None:
        pass

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits += 1
        body = json.dumps(self.server.jwks).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        if not self.server.drip:
            self.wfile.write(head + body)
            return
        for i in range(len(head)):
            if self.server.release.wait(self.server.drip):
                return
            try:
                self.wfile.write(head[i:i + 1])
                self.wfile.flush()
            except OSError:
                return


@pytest.fixture
def jwks_server():
    started = []

    def start(jwks: dict, drip: float = 0.0) -> JwksServer:
        s = JwksServer(jwks, drip)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# ------------------------------------------------------------------ the example trust file

def test_the_fixture_is_the_key_the_example_trust_file_holds():
    fixture = json.loads((ROOT / "tests" / "fixtures" / "public" / "cds-hooks-sandbox" / "sandbox-public-jwks.json").read_text())
    issuer = example_trust()["issuers"][0]
    assert issuer["iss"] == SANDBOX_ISS and issuer["jwks"] == fixture
    assert fixture["keys"][0]["kid"] == SANDBOX_KID and fixture["keys"][0]["alg"] == "ES384"
    assert SANDBOX_JKU in issuer["jku_allow"]


def test_a_sandbox_shaped_token_gets_cards_with_the_example_trust_file(tmp_path):
    doc = example_trust()
    # the same file, our public key in place of the sandbox's (same kid): only the key material differs
    doc["issuers"][0]["jwks"] = {"keys": [PUBLIC_JWK]}
    app = create_app({"auth_required": True, "trust": str(write(tmp_path, doc)),
                      "public_base_url": "http://127.0.0.1:8080", "database_url": "sqlite://",
                      "evaluation_date": "2026-11-23"})
    client = app.test_client()
    tok = sandbox_token("http://127.0.0.1:8080" + SIGN)
    assert "sub" not in jwt.decode(tok, options={"verify_signature": False})
    resp = client.post(SIGN, json=example_request(), headers={"Authorization": f"Bearer {tok}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "pgx-reduce-dose" in [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]]
    # and the real sandbox key refuses our signature: the example file trusts nobody else
    real = create_app({"auth_required": True, "trust": str(ROOT / "examples" / "trust-sandbox.json"),
                       "public_base_url": "http://127.0.0.1:8080", "database_url": "sqlite://"}).test_client()
    resp = real.post(SIGN, json=example_request(), headers={"Authorization": f"Bearer {sandbox_token('http://127.0.0.1:8080' + SIGN)}"})
    assert resp.status_code == 401


def test_serve_with_the_example_trust_file_fetches_the_jwks_from_the_jku_and_answers_cards(tmp_path, jwks_server):
    keys = jwks_server({"keys": [PUBLIC_JWK]})
    doc = example_trust()
    issuer = doc["issuers"][0]
    del issuer["jwks"]  # the key comes from the jku, as it would after a key rotation
    issuer["jwks_url"] = keys.url
    issuer["jku_allow"] = [keys.url]
    srv = Serve(tmp_path, "--trust", str(write(tmp_path, doc)), "--workers", "1", "--threads", "2")
    try:
        for base in (srv.base, f"http://localhost:{srv.port}"):  # either name of this machine is its address
            status, body = srv.post(example_request(), headers={
                "Authorization": f"Bearer {sandbox_token(base + SIGN, jku=keys.url)}"})
            assert status == 200, (body, srv.stderr())
            assert "pgx-reduce-dose" in [c["source"]["topic"]["code"] for c in body["cards"]]
        assert keys.hits == 1  # fetched once, then cached
    finally:
        srv.close()


# ------------------------------------------------------------------ replay, across workers

def _post(base: str, tok: str) -> int:
    req = urllib.request.Request(base + SIGN, data=json.dumps(example_request()).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {tok}",
                                          "Connection": "close"})
    try:
        with _OPENER.open(req, timeout=30) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


def test_a_token_is_accepted_once_across_two_gunicorn_workers(tmp_path):
    doc = example_trust()
    doc["issuers"][0]["jwks"] = {"keys": [PUBLIC_JWK]}
    srv = Serve(tmp_path, "--trust", str(write(tmp_path, doc)), "--workers", "2", "--threads", "2")
    try:
        tokens = [sandbox_token(srv.base + SIGN) for _ in range(15)]
        with ThreadPoolExecutor(6) as pool:  # each token twice, at once, on separate connections
            statuses = list(pool.map(lambda t: _post(srv.base, t), [t for t in tokens for _ in range(2)]))
        pairs = [sorted(statuses[i:i + 2]) for i in range(0, len(statuses), 2)]
        assert pairs == [[200, 401]] * len(tokens), pairs
        lines = [r for r in _json_lines(srv.stderr()) if r.get("event") == "request" and r.get("path") != "/cds-services"]
        assert len({r["pid"] for r in lines}) == 2, "both workers answered calls"
        assert {r.get("reason") for r in lines if r["status"] == 401} == {"token replayed (jti seen before)"}
    finally:
        srv.close()


# ------------------------------------------------------------------ aud, Host header

@pytest.fixture
def public_client(tmp_path):
    doc = example_trust()
    doc["issuers"][0]["jwks"] = {"keys": [PUBLIC_JWK]}
    return create_app({"auth_required": True, "trust": str(write(tmp_path, doc)),
                       "public_base_url": "https://cds.example.org, https://cds-b.example.org/aza",
                       "database_url": "sqlite://"}).test_client()


def test_aud_is_never_taken_from_the_host_header(public_client):
    attacker = "http://cds.attacker.invalid" + SIGN
    resp = public_client.post(SIGN, json=example_request(), base_url="http://cds.attacker.invalid",
                              headers={"Authorization": f"Bearer {sandbox_token(attacker)}"})
    assert resp.status_code == 401


@pytest.mark.parametrize("aud", ["https://cds.example.org" + SIGN, "HTTPS://CDS.Example.ORG:443" + SIGN,
                                 "https://cds-b.example.org/aza" + SIGN + "/"])
def test_aud_matches_a_configured_base_url_case_insensitively(public_client, aud):
    resp = public_client.post(SIGN, json=example_request(), headers={"Authorization": f"Bearer {sandbox_token(aud)}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_aud_path_is_compared_exactly(public_client):
    resp = public_client.post(SIGN, json=example_request(), headers={
        "Authorization": f"Bearer {sandbox_token('https://cds.example.org' + SIGN.upper())}"})
    assert resp.status_code == 401


def test_auth_without_a_public_base_url_refuses_to_start(tmp_path):
    trust = write(tmp_path, example_trust())
    with pytest.raises(ValueError, match="public base URL"):
        create_app({"auth_required": True, "trust": str(trust), "database_url": "sqlite://"})
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0", "--trust", str(trust)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "AZA_CDS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "AZA_CDS_PUBLIC_BASE_URL" in proc.stderr


# ------------------------------------------------------------------ JWKS inside the deadline

def test_a_dripping_jwks_endpoint_is_cut_off_at_the_deadline_and_blocks_nobody(tmp_path, jwks_server):
    drip = jwks_server({"keys": [PUBLIC_JWK]}, drip=0.3)  # ~30 s to send its headers
    other_key = ec.generate_private_key(ec.SECP384R1())
    other_jwk = ECAlgorithm.to_jwk(other_key.public_key(), as_dict=True) | {"kid": SANDBOX_KID, "use": "sig"}
    doc = {"issuers": [{"iss": SANDBOX_ISS, "jwks_url": drip.url},
                       {"iss": "https://ehr.example.org", "jwks": {"keys": [other_jwk]}}]}
    app = create_app({"auth_required": True, "trust": str(write(tmp_path, doc)), "fhir_deadline": 1.0,
                      "public_base_url": "http://localhost", "database_url": "sqlite://"})
    aud = "http://localhost" + SIGN
    results: dict[str, tuple[int, float]] = {}

    def call(name: str, tok: str) -> None:
        started = time.monotonic()
        resp = app.test_client().post(SIGN, json=example_request(), headers={"Authorization": f"Bearer {tok}"})
        results[name] = (resp.status_code, time.monotonic() - started)

    fetching = [threading.Thread(target=call, args=(f"drip-{i}", sandbox_token(aud, jku=drip.url))) for i in range(2)]
    for t in fetching:
        t.start()
    time.sleep(0.2)
    call("inline", sandbox_token(aud, key=other_key, iss="https://ehr.example.org", jku=None))  # needs no fetch
    for t in fetching:
        t.join(20)
    assert results["inline"][0] == 200
    for name in ("drip-0", "drip-1"):
        status, took = results[name]
        assert status == 401 and took < 6, results  # the drip would take ~30 s
    assert results["inline"][1] < 6
    assert drip.hits == 1  # the second caller waited for the one fetch in flight


def test_trust_entry_fhir_servers_are_validated(tmp_path):
    from service.auth import parse_trust

    issuers, _ = parse_trust({"issuers": [{"iss": "https://a.example.org", "jwks": {"keys": [PUBLIC_JWK]},
                                            "fhir_servers": ["https://fhir.a.example.org/r4"]}]})
    assert issuers[0].fhir_servers == ("https://fhir.a.example.org/r4",)
    with pytest.raises(ValueError, match="fhir_servers"):
        parse_trust({"issuers": [{"iss": "https://a.example.org", "jwks": {"keys": [PUBLIC_JWK]},
                                  "fhir_servers": ["https://user:pw@fhir.a.example.org/r4"]}]})
    assert copy.deepcopy(PUBLIC_JWK)["kid"] == SANDBOX_KID
