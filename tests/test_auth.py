"""CDS Hooks 2.0 JWT authentication: what passes, every way a token can fail, JWKS fetching.

Keys are generated at test time; JWKS URLs are served by ``responses`` (nothing leaves the
machine). The app under test has auth on, with a temporary trust file.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service import auth, create_app
from service.auth import Authenticator, parse_trust
from service.logs import JsonFormatter
from tests.builders import SERVICE, hook_request, prefetch

ROOT = Path(__file__).resolve().parent.parent
EHR = "https://ehr.example.org"
REMOTE = "https://remote-ehr.example.org"
REMOTE_JWKS = "https://remote-ehr.example.org/.well-known/jwks.json"
REMOTE_JKU = "https://keys.remote-ehr.example.org/jwks"
EVIL_JKU = "https://attacker.example.net/jwks.json"
TENANT_ISS = "https://tenant-ehr.example.org"
P256_ISS = "https://p256-ehr.example.org"
SIGN = "/cds-services/thiopurine-order-sign"
AUD = "http://localhost" + SIGN  # the URL the Flask test client calls


# ------------------------------------------------------------------ keys and tokens

class Signer:
    """A private key, its kid and its public JWK."""

    def __init__(self, kind: str) -> None:
        self.kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "rsa":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS384"
            self.public_jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            curve = {"p384": ec.SECP384R1(), "p256": ec.SECP256R1()}[kind]
            ec_key = ec.generate_private_key(curve)
            self.private = ec_key  # type: ignore[assignment]  # RSA or EC: jwt.encode takes either
            self.alg = "ES384" if kind == "p384" else "ES256"
            self.public_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
        self.public_jwk.update({"kid": self.kid, "use": "sig"})

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk]}


@pytest.fixture(scope="module")
def keys() -> dict[str, Signer]:
    return {"es384": Signer("p384"), "rs384": Signer("rsa"), "other": Signer("p384"), "p256": Signer("p256"),
            "remote": Signer("p384"), "rotated": Signer("p384"), "jku": Signer("rsa"), "tenant": Signer("p384")}


def claims(**over) -> dict:
    """A valid claim set for EHR calling the order-sign service; ``name=None`` drops a claim."""
    now = int(time.time())
    c = {"iss": EHR, "sub": "ehr-client-1", "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def token(signer: Signer, payload: dict | None = None, *, alg: str | None = None, kid: str | None = "default",
          headers: dict | None = None) -> str:
    hdr = {"kid": signer.kid if kid == "default" else kid, "typ": "JWT"}
    if kid is None:
        hdr.pop("kid")
    hdr.update(headers or {})
    return sign(payload or claims(), signer.private, alg or signer.alg, hdr)


def sign(payload, key, alg: str, headers: dict) -> str:
    """A JWS over any JSON payload (PyJWT's ``jwt.encode`` refuses odd claim types; attackers do not)."""
    return jwt.PyJWS().encode(json.dumps(payload).encode(), key, algorithm=alg, headers=headers)


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def b64(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ------------------------------------------------------------------ app

@pytest.fixture(scope="module")
def trust(keys, tmp_path_factory) -> Path:
    doc = {
        "_comment": "test trust file",
        "issuers": [
            {"iss": EHR, "jwks": {"keys": [keys["es384"].public_jwk, keys["rs384"].public_jwk, keys["p256"].public_jwk]}},
            {"iss": REMOTE, "jwks_url": REMOTE_JWKS, "jku_allow": [REMOTE_JKU]},
            {"iss": TENANT_ISS, "jwks": keys["tenant"].jwks(), "tenant": "hospital-a", "sub": ["ehr-client-1"]},
            {"iss": P256_ISS, "jwks": keys["p256"].jwks(), "algorithms": ["ES256"]},
        ],
    }
    path = tmp_path_factory.mktemp("trust") / "trust.json"
    path.write_text(json.dumps(doc))
    return path


def make_app(trust: Path, **over):
    cfg = {"auth_required": True, "trust": str(trust), "fhir_deadline": 0.5, "database_url": "sqlite://",
           "public_base_url": "http://localhost"}
    cfg.update(over)
    return create_app(cfg)


@pytest.fixture
def app(trust):
    return make_app(trust)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def mocked():
    """Every outgoing requests call is answered by ``responses`` (an unregistered URL fails)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


class Lines(logging.Handler):
    """The JSON lines the service would write, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def log_lines():
    handler = Lines()
    logger = logging.getLogger("aza_cds")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def call(client, headers: dict | None = None, path: str = SIGN):
    return client.post(path, json=hook_request(pre=prefetch()), headers=headers or {})


def assert_refused(resp) -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Authentication required"  # no detail for the caller


# ------------------------------------------------------------------ what passes

@pytest.mark.parametrize("which", ["es384", "rs384"])
def test_valid_token_passes(client, keys, which):
    resp = call(client, bearer(token(keys[which])))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "cards" in resp.get_json()


def test_every_service_and_feedback_needs_a_token(client, keys):
    for hook, service in SERVICE.items():
        path = f"/cds-services/{service}"
        assert_refused(client.post(path, json=hook_request(hook, pre=prefetch())))
        ok = client.post(path, json=hook_request(hook, pre=prefetch()),
                         headers=bearer(token(keys["es384"], claims(aud="http://localhost" + path))))
        assert ok.status_code == 200, ok.get_data(as_text=True)
    card = str(uuid.uuid4())
    from tests.issued import issue

    issue(client.application.extensions["aza_feedback_store"], card)  # feedback only about issued cards
    feedback = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-01-11T10:05:31Z"}]}
    path = f"{SIGN}/feedback"
    assert_refused(client.post(path, json=feedback))
    ok = client.post(path, json=feedback, headers=bearer(token(keys["es384"], claims(aud="http://localhost" + path))))
    assert ok.status_code == 200, ok.get_data(as_text=True)


def test_discovery_openapi_and_preflight_need_no_token(client):
    assert client.get("/cds-services").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    pre = client.options(SIGN, headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()


def test_a_401_still_carries_cors_headers(client):
    resp = client.post(SIGN, json=hook_request(pre=prefetch()), headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert_refused(resp)
    assert resp.headers["Access-Control-Allow-Origin"]


def test_aud_may_be_a_list_and_trailing_slash_is_tolerated(client, keys):
    assert call(client, bearer(token(keys["es384"], claims(aud=["https://x.example.org", AUD])))).status_code == 200
    assert call(client, bearer(token(keys["es384"], claims(aud=AUD + "/")))).status_code == 200


def test_small_clock_skew_is_tolerated(client, keys):
    now = int(time.time())
    skewed = claims(iat=now + 20, exp=now + 300)
    assert call(client, bearer(token(keys["es384"], skewed))).status_code == 200
    just_expired = claims(iat=now - 300, exp=now - 10)
    assert call(client, bearer(token(keys["es384"], just_expired))).status_code == 200


def test_public_base_url_is_the_audience_behind_a_proxy(trust, keys):
    client = make_app(trust, public_base_url="https://cds.example.org/aza/").test_client()
    public = "https://cds.example.org/aza" + SIGN
    assert call(client, bearer(token(keys["es384"], claims(aud=public)))).status_code == 200
    assert_refused(call(client, bearer(token(keys["es384"], claims(aud=AUD)))))


def test_tenant_and_sub_checks_pass_when_they_match(client, keys):
    ok = claims(iss=TENANT_ISS, tenant="hospital-a")
    assert call(client, bearer(token(keys["tenant"], ok))).status_code == 200


def test_es256_only_where_configured(client, keys):
    assert call(client, bearer(token(keys["p256"], claims(iss=P256_ISS)))).status_code == 200
    assert_refused(call(client, bearer(token(keys["p256"], claims(iss=EHR)))))  # EHR: ES384/RS384 only


def test_trust_file_from_environment(trust, keys, monkeypatch):
    monkeypatch.setenv("AZA_CDS_TRUST", str(trust))
    monkeypatch.setenv("AZA_CDS_PUBLIC_BASE_URL", "http://localhost")
    client = create_app({"database_url": "sqlite://"}).test_client()  # auth is on by default
    assert_refused(call(client))
    assert call(client, bearer(token(keys["es384"]))).status_code == 200


def test_dev_mode_needs_no_token():
    client = create_app({"auth_required": False, "database_url": "sqlite://"}).test_client()
    assert call(client).status_code == 200


# ------------------------------------------------------------------ token faults

def _alg_none(k):
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': k['es384'].kid})}.{b64(claims())}."


def _hmac_with_public_key(k):
    # the classic key-confusion attack: HS256 "signed" with the issuer's public key as the secret
    pem = json.dumps(k["rs384"].public_jwk).encode()
    signing = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': k['rs384'].kid})}.{b64(claims())}"
    import hashlib
    import hmac
    sig = hmac.new(pem, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def _tampered(k):
    head, _, sig = token(k["es384"]).split(".")
    return f"{head}.{b64(claims(sub='admin'))}.{sig}"


def _signed_by_other_key_same_kid(k):
    return jwt.encode(claims(), k["other"].private, algorithm="ES384", headers={"kid": k["es384"].kid})


def _rs_header_on_ec_key(k):
    # an RS384 token whose kid names the issuer's EC key
    return jwt.encode(claims(), k["rs384"].private, algorithm="RS384", headers={"kid": k["es384"].kid})


TOKEN_FAULTS = {
    "no Authorization header": lambda k: None,
    "Basic scheme": lambda k: "Basic " + base64.b64encode(b"user:pass").decode(),
    "empty Bearer": lambda k: "Bearer ",
    "not a JWT": lambda k: "Bearer not-a-jwt",
    "three garbage segments": lambda k: "Bearer aaa.bbb.ccc",
    "alg none": _alg_none,
    "HS256 with the public key as secret": _hmac_with_public_key,
    "HS384 with a guessed secret": lambda k: sign(claims(), "s3cret" * 10, "HS384", {"kid": k["es384"].kid}),
    "PS384 (not allowed)": lambda k: jwt.encode(claims(), k["rs384"].private, algorithm="PS384", headers={"kid": k["rs384"].kid}),
    "ES256 for an ES384/RS384 issuer": lambda k: token(k["p256"]),
    "untrusted issuer": lambda k: token(k["es384"], claims(iss="https://evil.example.net")),
    "issuer missing": lambda k: token(k["es384"], claims(iss=None)),
    "signed by another key under a trusted kid": _signed_by_other_key_same_kid,
    "tampered payload": _tampered,
    "unknown kid": lambda k: token(k["other"]),
    "no kid": lambda k: token(k["es384"], kid=None),
    "RS384 header on an EC key": _rs_header_on_ec_key,
    "expired": lambda k: token(k["es384"], claims(iat=int(time.time()) - 900, exp=int(time.time()) - 600)),
    "issued in the future": lambda k: token(k["es384"], claims(iat=int(time.time()) + 600, exp=int(time.time()) + 900)),
    "not before in the future": lambda k: token(k["es384"], claims(nbf=int(time.time()) + 600)),
    "lifetime too long": lambda k: token(k["es384"], claims(exp=int(time.time()) + 7200)),
    "exp is a string": lambda k: token(k["es384"], claims(exp=str(int(time.time()) + 300))),
    "exp before iat": lambda k: token(k["es384"], claims(iat=int(time.time()) + 20, exp=int(time.time()) + 10)),
    "aud of another service": lambda k: token(k["es384"], claims(aud="http://localhost/cds-services/thiopurine-order-select")),
    "aud of another host": lambda k: token(k["es384"], claims(aud="https://other-cds.example.org" + SIGN)),
    "aud missing": lambda k: token(k["es384"], claims(aud=None)),
    "exp missing": lambda k: token(k["es384"], claims(exp=None)),
    "iat missing": lambda k: token(k["es384"], claims(iat=None)),
    "sub missing where the issuer names client ids": lambda k: token(k["tenant"], claims(iss=TENANT_ISS, tenant="hospital-a", sub=None)),
    "jti missing": lambda k: token(k["es384"], claims(jti=None)),
    "jti not a string": lambda k: token(k["es384"], claims(jti=12345)),
    "jku not on the allow-list": lambda k: token(k["remote"], claims(iss=REMOTE), headers={"jku": EVIL_JKU}),
    "jku on another issuer's list": lambda k: token(k["es384"], headers={"jku": REMOTE_JKU}),
    "tenant mismatch": lambda k: token(k["tenant"], claims(iss=TENANT_ISS, tenant="hospital-b")),
    "tenant missing": lambda k: token(k["tenant"], claims(iss=TENANT_ISS)),
    "sub not allowed": lambda k: token(k["tenant"], claims(iss=TENANT_ISS, tenant="hospital-a", sub="intruder")),
    "token too large": lambda k: token(k["es384"], claims(pad="x" * 20000)),
    "payload not an object": lambda k: f"{b64({'alg': 'ES384', 'kid': k['es384'].kid})}.{b64([1, 2])}.{b64(b'sig')}",
}


@pytest.mark.parametrize("fault", list(TOKEN_FAULTS))
def test_token_fault_is_refused(client, keys, mocked, log_lines, fault):
    mocked.get(EVIL_JKU, json=keys["remote"].jwks())  # served, to prove it is never fetched
    mocked.get(REMOTE_JKU, json=keys["jku"].jwks())
    mocked.get(REMOTE_JWKS, json=keys["remote"].jwks())
    made = TOKEN_FAULTS[fault](keys)
    if made is None:
        headers = {}
    elif made.split(" ", 1)[0] in ("Basic", "Bearer"):
        headers = {"Authorization": made}
    else:
        headers = bearer(made)
    resp = call(client, headers)
    assert_refused(resp)
    assert not any(c.request.url == EVIL_JKU for c in mocked.calls), "a jku off the allow-list was fetched"
    access = [r for r in log_lines.records() if r.get("event") == "request"]
    assert len(access) == 1 and access[0]["status"] == 401 and access[0]["reason"]
    secret = headers.get("Authorization", "").partition(" ")[2]
    for line in log_lines.lines:
        for part in [p for p in secret.split(".") if len(p) > 8]:
            assert part not in line, "a token part was logged"


def test_at_least_twelve_token_faults():
    assert len(TOKEN_FAULTS) >= 12


def test_replayed_token_is_refused(client, keys):
    tok = token(keys["es384"])
    assert call(client, bearer(tok)).status_code == 200
    assert_refused(call(client, bearer(tok)))
    # the same jti from another issuer is another token
    assert call(client, bearer(token(keys["tenant"], claims(iss=TENANT_ISS, tenant="hospital-a",
                                                           jti=jwt.decode(tok, options={"verify_signature": False})["jti"])))).status_code == 200


def test_reasons_are_logged_without_the_token(client, keys, log_lines):
    tok = token(keys["es384"], claims(aud="https://elsewhere.example.org"))
    assert_refused(call(client, bearer(tok)))
    [line] = [r for r in log_lines.records() if r.get("event") == "request"]
    assert line["reason"] == "audience does not match the called URL"
    assert all(tok not in raw and tok.split(".")[2] not in raw for raw in log_lines.lines)


def test_alg_is_named_in_the_log_only_when_it_is_a_known_name(client, keys, log_lines):
    forged = f"{b64({'alg': 'Jane Doe 1970-01-01', 'kid': 'k'})}.{b64(claims())}.{b64(b'x')}"
    assert_refused(call(client, bearer(forged)))
    assert_refused(call(client, bearer(_alg_none(keys))))
    reasons = [r["reason"] for r in log_lines.records() if r.get("event") == "request"]
    assert reasons == ["algorithm unrecognised not allowed", "algorithm none not allowed"]
    assert not any("Jane" in line for line in log_lines.lines)


# ------------------------------------------------------------------ JWKS fetching

def test_jwks_url_is_fetched_with_a_timeout_and_cached(client, keys, mocked):
    mocked.get(REMOTE_JWKS, json=keys["remote"].jwks())
    for _ in range(3):
        assert call(client, bearer(token(keys["remote"], claims(iss=REMOTE)))).status_code == 200
    assert len(mocked.calls) == 1
    timeout = mocked.calls[0].request.req_kwargs["timeout"]
    assert timeout is not None and all(0 < t <= 5 for t in (timeout if isinstance(timeout, tuple) else (timeout,)))


def test_unknown_kid_refreshes_at_most_once_a_minute(client, keys, mocked, monkeypatch):
    mocked.get(REMOTE_JWKS, json=keys["remote"].jwks())
    assert call(client, bearer(token(keys["remote"], claims(iss=REMOTE)))).status_code == 200
    assert len(mocked.calls) == 1
    # the issuer rotates its key: the first unknown kid is looked up again ...
    mocked.replace(responses.GET, REMOTE_JWKS, json={"keys": [keys["remote"].public_jwk, keys["rotated"].public_jwk]})
    clock = [time.monotonic() + 61]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    assert call(client, bearer(token(keys["rotated"], claims(iss=REMOTE)))).status_code == 200
    assert len(mocked.calls) == 2
    # ... but a flood of unknown kids within the minute costs no more fetches
    for _ in range(5):
        assert_refused(call(client, bearer(token(keys["other"], claims(iss=REMOTE)))))
    assert len(mocked.calls) == 2  # the refresh a moment ago counts: no fetch within the minute
    clock[0] += 61
    assert_refused(call(client, bearer(token(keys["other"], claims(iss=REMOTE)))))
    assert len(mocked.calls) == 3


def test_jwks_endpoint_down_refuses_and_does_not_hammer_it(client, keys, mocked):
    mocked.get(REMOTE_JWKS, body=requests.ConnectionError("refused"))
    for _ in range(4):
        assert_refused(call(client, bearer(token(keys["remote"], claims(iss=REMOTE)))))
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("answer", [
    {"status": 500, "json": {"error": "x"}},
    {"status": 200, "body": "not json"},
    {"status": 200, "json": {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}},  # symmetric key: never used
    {"status": 302, "headers": {"Location": EVIL_JKU}},
])
def test_bad_jwks_answers_refuse(client, keys, mocked, answer):
    mocked.get(REMOTE_JWKS, **answer)
    mocked.get(EVIL_JKU, json=keys["remote"].jwks())
    assert_refused(call(client, bearer(token(keys["remote"], claims(iss=REMOTE)))))
    assert [c.request.url for c in mocked.calls] == [REMOTE_JWKS]


def test_allow_listed_jku_is_honoured(client, keys, mocked):
    mocked.get(REMOTE_JKU, json=keys["jku"].jwks())
    tok = token(keys["jku"], claims(iss=REMOTE), headers={"jku": REMOTE_JKU})
    assert call(client, bearer(tok)).status_code == 200
    assert [c.request.url for c in mocked.calls] == [REMOTE_JKU]


def test_symmetric_and_private_keys_in_a_trust_file_are_never_used(keys):
    private = ECAlgorithm.to_jwk(keys["other"].private, as_dict=True) | {"kid": "priv"}
    found = auth.parse_jwks({"keys": [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}, private, keys["es384"].public_jwk,
                                      {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}]})
    assert set(found) == {keys["es384"].kid}


# ------------------------------------------------------------------ trust file

@pytest.mark.parametrize("doc, message", [
    ([], "issuers"),
    ({"issuers": [{"jwks_url": "https://a.example.org/jwks"}]}, "needs 'iss'"),
    ({"issuers": [{"iss": "https://a.example.org"}]}, "jwks_url' or 'jwks'"),
    ({"issuers": [{"iss": "https://a.example.org", "jwks_url": "http://a.example.org/jwks"}]}, "https"),
    ({"issuers": [{"iss": "https://a.example.org", "jwks": {"keys": []}}]}, "no usable"),
    ({"issuers": [{"iss": "https://a.example.org", "jwks_url": "https://a.example.org/j", "algorithms": ["HS256"]}]}, "not allowed"),
    ({"algorithms": ["none"], "issuers": []}, "not allowed"),
    ({"issuers": [{"iss": "https://a.example.org", "jwks_url": "https://a.example.org/j"},
                  {"iss": "https://a.example.org", "jwks_url": "https://a.example.org/k"}]}, "twice"),
])
def test_bad_trust_files_are_rejected_at_start(doc, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        parse_trust(doc)
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError):
        make_app(path)


def test_hmac_can_never_be_configured():
    with pytest.raises(ValueError):
        Authenticator(required=True, algorithms=("HS256",))


def test_example_sandbox_trust_file(keys, mocked):
    path = ROOT / "examples" / "trust-sandbox.json"
    doc = json.loads(path.read_text())
    assert "testing only" in doc["_comment"].lower()
    shipped = json.loads((ROOT / "tests" / "fixtures" / "public" / "cds-hooks-sandbox" / "sandbox-public-jwks.json")
                         .read_text())
    assert doc["issuers"][0]["jwks"] == shipped  # the sandbox's published key, unchanged
    issuers, _ = parse_trust(doc)
    sandbox = issuers[0]
    assert sandbox.iss == "https://sandbox.cds-hooks.org"
    assert list(sandbox.inline_keys) == ["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]
    assert sandbox.allows_jku("https://sandbox.cds-hooks.org/.well-known/jwks.json")
    client = make_app(path).test_client()
    # a token that claims to be the sandbox, with its kid and jku but our key: bad signature, nothing fetched
    forged = jwt.encode(claims(iss="https://sandbox.cds-hooks.org"), keys["es384"].private, algorithm="ES384",
                        headers={"kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
                                 "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    assert_refused(call(client, bearer(forged)))
    assert len(mocked.calls) == 0


# ------------------------------------------------------------------ property: never a 5xx, never a pass

@pytest.fixture(scope="module")
def fuzz_client(trust):
    return make_app(trust).test_client()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(header=st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: "Bearer " + b.hex()),
                        st.lists(st.text(alphabet=st.characters(codec="ascii"), max_size=60), min_size=2, max_size=4)
                        .map(lambda parts: "Bearer " + ".".join(parts))))
def test_arbitrary_authorization_headers_are_refused_never_5xx(fuzz_client, header):
    try:
        resp = call(fuzz_client, {"Authorization": header})
    except ValueError:  # werkzeug refuses a header value with a newline before it is sent
        return
    assert resp.status_code == 401


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                        max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant"]),
                               _JSONISH, max_size=4),
       extra_header=st.dictionaries(st.sampled_from(["jku", "kid", "typ", "crit", "x5u"]), _JSONISH, max_size=2))
def test_signed_tokens_with_odd_claims_never_5xx(fuzz_client, keys, changes, extra_header):
    payload = claims()
    payload.update(changes)
    headers = {"kid": keys["es384"].kid, **extra_header}
    try:
        tok = sign(payload, keys["es384"].private, "ES384", headers)
    except (TypeError, ValueError, jwt.PyJWTError):
        return  # not encodable as a JWS at all
    resp = call(fuzz_client, bearer(tok))
    assert resp.status_code in (200, 401), resp.get_data(as_text=True)
    if resp.status_code == 200:  # only a token that really is valid passes
        now = time.time()
        auds = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
        assert payload["iss"] == EHR and any(isinstance(a, str) and a.rstrip("/") == AUD for a in auds)
        # ``sub`` is optional (CDS Hooks 2.0; docs/security.md) unless the issuer lists client ids, which this one does
        # not: any string passes, the empty one too (a non-string is refused by PyJWT)
        assert isinstance(payload["sub"], str)
        assert isinstance(payload["exp"], (int, float)) and payload["exp"] > now - 60
        assert isinstance(payload["jti"], str) and payload["jti"]
