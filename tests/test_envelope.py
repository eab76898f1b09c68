"""The service envelope's hot path (issue 13): what was made cheaper still answers the same."""
from __future__ import annotations

import json
import random
import time
import uuid

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from service import jsonbody, validation
from service.auth import Authenticator, AuthError, Issuer, parse_jwks
from service.storage import FeedbackStore
from service.storage.models import cards

# -- depth check on the raw bytes ------------------------------------------------------------------

_AWKWARD = ["a[b", "}", "]{", "", '"[\\"]', "\\", "\\\\[", "{}[]", "x\"y", "]]]]", "[[", "é[ü", 5, None, True]


def _random_json(rng: random.Random, depth: int):
    r = rng.random()
    if depth > 14 or r < 0.3:
        return rng.choice(_AWKWARD)
    if r < 0.65:
        return {rng.choice(["a", "[", "]", "{", "}", '"', "\\", ""]) + str(i): _random_json(rng, depth + 1)
                for i in range(rng.randint(0, 3))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]


@pytest.mark.parametrize("seed", range(4))
def test_depth_on_the_bytes_agrees_with_the_tree(seed):
    """Brackets, quotes and backslashes inside keys and strings never count as nesting."""
    rng = random.Random(seed)
    for _ in range(400):
        value = {"k": _random_json(rng, 1)}
        for ascii_only in (True, False):
            raw = json.dumps(value, ensure_ascii=ascii_only).encode()
            parsed = json.loads(raw)
            marks = jsonbody.marks_of(raw)
            # the container count read from the marks is the count on the raw bytes (the 413 limit)
            assert jsonbody.containers_in(marks) == jsonbody.containers(raw)
            for limit in (1, 2, 3, 5, 8, 13):
                want = jsonbody._tree_depth(parsed, limit) > limit
                assert jsonbody.nested_deeper_than(raw, parsed, limit) == want
                assert jsonbody.nested_deeper_than(raw, parsed, limit, marks) == want


def test_depth_of_strings_with_brackets_only():
    raw = b'{"a": "[[[[[[", "b": {"c": "]]]]]]]"}, "d": ["{", "}"]}'
    assert jsonbody.nested_deeper_than(raw, json.loads(raw), 2) is False
    assert jsonbody.nested_deeper_than(raw, json.loads(raw), 1) is True


# -- the compiled validator is always there --------------------------------------------------------

@pytest.mark.parametrize("definition", ["ServiceRequest", "FeedbackRequest", "hook:order-sign", "hook:order-select",
                                        "hook:medication-prescribe"])
def test_every_definition_has_a_compiled_validator(definition):
    for formats in (True, False):
        fast = validation.fast_validator(definition, formats)
        assert fast is not None and hasattr(fast, "is_valid") and hasattr(fast, "iter_errors")
    assert validation.first_error(definition, []) is not None  # not an object: an error either way


# -- the card writer -------------------------------------------------------------------------------

def test_cards_queued_while_the_writer_is_woken_are_written_without_a_flush(tmp_path):
    store = FeedbackStore.open(f"sqlite:///{tmp_path}/f.sqlite3", flush_interval=0.05)
    try:
        for n in range(5):  # the first wakes the writer; the others find it woken and do not set it again
            store.record_cards(service_id="s", hook="order-sign", hook_instance=f"h{n}",
                               cards=[{"uuid": f"c{n}", "indicator": "info", "source": {"topic": {"code": "r"}}}])
        stop = time.monotonic() + 20
        while store.pending and time.monotonic() < stop:
            time.sleep(0.02)
        assert store.pending == 0
        with store.read() as conn:
            assert sorted(r.card_uuid for r in conn.execute(sa.select(cards))) == [f"c{n}" for n in range(5)]
    finally:
        store.close()


# -- the JWT: decoded twice (unverified, then verified), not three times ---------------------------

ISS, KID, AUD = "https://ehr.test", "k1", "https://cds.test/cds-services/x"


@pytest.fixture()
def signer():
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "alg": "ES384"})
    auth = Authenticator(required=True, public_base_url="https://cds.test",
                         issuers=[Issuer(iss=ISS, inline_keys=parse_jwks({"keys": [public]}))])

    def sign(**claims):
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(body, key, algorithm="ES384", headers={"kid": KID})

    return auth, sign


def test_a_token_is_decoded_twice(signer, monkeypatch):
    auth, sign = signer
    loads = []
    real = jwt.api_jws.PyJWS._load

    def counting(self, token):
        loads.append(1)
        return real(self, token)

    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", counting)
    token = sign()
    assert auth.verify(token, AUD)["iss"] == ISS
    assert len(loads) == 2
    with pytest.raises(AuthError) as replay:
        auth.verify(token, AUD)
    assert replay.value.refusal.value == "replay"


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "eyJhbGciOiJFUzM4NCJ9.bm90IGpzb24.c2ln",
                                   "bm90IGpzb24.eyJpc3MiOiJ4In0.c2ln"])
def test_malformed_tokens_are_refused_as_malformed(signer, token):
    auth, _ = signer
    with pytest.raises(AuthError) as refused:
        auth.verify(token, AUD)
    assert refused.value.refusal.value == "malformed"


# -- the single-threaded worker (--threads 1) cuts a dripping client too ---------------------------

def test_sync_worker_cuts_a_dripping_client_at_client_seconds(tmp_path):
    """``--threads 1`` serves with gunicorn's sync worker: one thread, so a client that drips its
    request head would hold the whole worker until gunicorn's 30 s worker timeout kills it. The
    watchdog shuts that client's socket after AZA_CDS_CLIENT_SECONDS, and the worker answers on."""
    import socket

    from tests.test_serving import _OPENER, Serve

    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "1", env={"AZA_CDS_CLIENT_SECONDS": "1"})
    try:
        drip = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
        drip.sendall(b"POST /cds-services/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        started = time.monotonic()
        drip.settimeout(0.3)
        closed = False
        while not closed and time.monotonic() - started < 20:  # gunicorn's own timeout: 30 s
            try:
                drip.sendall(b"a")
                closed = drip.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        drip.close()
        assert closed, "the dripping client still held the worker after 20 s"
        with _OPENER.open(srv.base + "/cds-services", timeout=20) as resp:
            assert resp.status == 200
        assert "WORKER TIMEOUT" not in srv.stderr()
    finally:
        srv.close()
