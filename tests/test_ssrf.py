"""``fhirServer`` is caller input: the service must not be aimed at this machine or its network.

A plain TCP listener on a loopback port records every connection. In production mode (no
``fhir_allow_loopback``) a hook call whose ``fhirServer`` points there, however the address is
spelt, must leave it untouched and answer cards that say only that the server is not allowed.
The same listener receives the call when loopback is allowed (``serve --dev``), which proves it
would have noticed. An issuer's ``fhir_servers`` allow-list admits exactly its bases. A failed
FHIR server's cards name the category and nothing the server sent.
"""
from __future__ import annotations

import json
import socket
import threading

import pytest

from outbound.netguard import EgressPolicy, EgressRefused, address_allowed
from service import create_app
from tests.builders import SERVICE, hook_request
from tests.test_faults import FaultyFhir
from tests.test_trust import PUBLIC_JWK, SANDBOX_ISS, example_trust, sandbox_token, write

NOT_ALLOWED = "not one this service may contact"
SIGN = f"/cds-services/{SERVICE['order-sign']}"


class Listener:
    """Accepts TCP connections on 127.0.0.1 and counts them (answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def production_client(**over):
    cfg = {"auth_required": False, "fhir_deadline": 0.6, "database_url": "sqlite://"} | over
    return create_app(cfg).test_client()


def cards_for(client, server: str, headers: dict | None = None) -> list[dict]:
    resp = client.post(SIGN, json=hook_request(fhir_server=server, token="fhir-token-ssrf"), headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def text_of(cards: list[dict]) -> str:
    return "\n".join(c["summary"] + "\n" + c.get("detail", "") for c in cards)


SPELLINGS = ["http://127.0.0.1:{port}/fhir", "http://localhost:{port}/fhir", "http://[::ffff:127.0.0.1]:{port}/fhir",
             "http://2130706433:{port}/fhir", "http://127.1:{port}/fhir", "http://[::1]:{port}/fhir",
             "http://LOCALHOST:{port}/fhir"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_loopback_in_any_spelling_receives_nothing(listener, spelling):
    cards = cards_for(production_client(), spelling.format(port=listener.port))
    assert NOT_ALLOWED in text_of(cards)
    assert listener.connections == 0


def test_userinfo_is_refused(listener):
    cards = cards_for(production_client(fhir_allow_loopback=True),
                      f"http://ehr.example.org:80@127.0.0.1:{listener.port}/fhir")
    assert NOT_ALLOWED in text_of(cards) and listener.connections == 0


def test_the_listener_does_receive_when_loopback_is_allowed(listener):
    """The control: with ``--dev``'s loopback permission the same call reaches the listener."""
    cards_for(production_client(fhir_allow_loopback=True), f"http://127.0.0.1:{listener.port}/fhir")
    assert listener.connections > 0


@pytest.mark.parametrize("url", ["http://10.1.2.3/fhir", "http://192.168.0.10/fhir", "http://172.16.0.1/fhir",
                                 "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/fhir",
                                 "http://[fd00::1]/fhir", "http://[fe80::1]/fhir", "http://0.0.0.0/fhir",
                                 "http://224.0.0.1/fhir", "ftp://ehr.example.org/fhir", "file:///etc/passwd"])
def test_private_link_local_unique_local_and_odd_schemes_are_refused_before_connecting(url):
    with pytest.raises(EgressRefused):
        EgressPolicy().check_url(url)
    if url.startswith("http"):  # other schemes are a 400 already (the request schema)
        assert NOT_ALLOWED in text_of(cards_for(production_client(), url))


def test_public_addresses_pass_and_loopback_only_with_permission():
    assert address_allowed("93.184.216.34") and address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    assert not address_allowed("127.0.0.1") and address_allowed("127.0.0.1", allow_loopback=True)
    assert not address_allowed("::ffff:10.0.0.1") and not address_allowed("fc00::1")
    EgressPolicy().check_url("https://ehr.example.org/fhir")  # a name: its addresses are checked at connect


def test_closed_listening_and_hanging_loopback_ports_read_the_same(listener):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    client = production_client()
    a = [c["detail"] for c in cards_for(client, f"http://127.0.0.1:{dead}/fhir")]
    b = [c["detail"] for c in cards_for(client, f"http://127.0.0.1:{listener.port}/fhir")]
    assert a == b


# ------------------------------------------------------------------ per-issuer allow-list

@pytest.fixture
def fhir():
    server = FaultyFhir().start()
    yield server
    server.stop()


def allow_listed_client(tmp_path, bases: list[str]):
    doc = example_trust()
    doc["issuers"][0]["jwks"] = {"keys": [PUBLIC_JWK]}
    doc["issuers"][0]["fhir_servers"] = bases
    return create_app({"auth_required": True, "trust": str(write(tmp_path, doc)), "fhir_deadline": 3.0,
                       "public_base_url": "http://localhost", "database_url": "sqlite://"}).test_client()


def test_an_issuer_allow_list_admits_its_bases_only(tmp_path, fhir, listener):
    client = allow_listed_client(tmp_path, [fhir.base])
    auth = lambda: {"Authorization": f"Bearer {sandbox_token('http://localhost' + SIGN)}"}  # noqa: E731
    cards = cards_for(client, fhir.base, auth())  # loopback, but named by the trust file
    assert NOT_ALLOWED not in text_of(cards) and fhir.requests
    before = len(fhir.requests)
    for other in (fhir.base + "-other", fhir.base.replace("/fhir", "/admin"), f"http://127.0.0.1:{listener.port}/fhir",
                  "https://ehr.example.org/fhir", fhir.base + "/../admin", fhir.base + "/%2e%2e/admin",
                  fhir.base.replace("127.0.0.1", "localhost")):
        assert NOT_ALLOWED in text_of(cards_for(client, other, auth())), other
    assert len(fhir.requests) == before and listener.connections == 0
    assert SANDBOX_ISS


# ------------------------------------------------------------------ nothing the server sent

@pytest.mark.parametrize("fault", ["http-500", "http-404", "operation-outcome", "non-bundle", "html"])
def test_a_failed_server_is_named_by_category_only(fhir, fault):
    fhir.fault = fault
    text = text_of(cards_for(production_client(fhir_allow_loopback=True, fhir_deadline=3.0), fhir.base))
    assert "could not be done" in text.lower() or "could not" in text
    for sent in ("Jane", "Faultcase", "500", "404", "Basic", "OperationOutcome", "Login required", "html"):
        assert sent not in text, (fault, sent)
    assert json.dumps(text)


def test_a_kept_alive_connection_opened_under_an_allow_list_serves_no_call_without_one(fhir):
    """The FHIR client pools connections per host: one an allow-list admitted (loopback here) must
    not be reused by a call whose policy refuses that address."""
    from outbound.fhir_client import Deadline, FhirClient, FhirNotAllowed

    client = FhirClient()
    base = fhir.base.replace("127.0.0.1", "localhost")  # a name: passes the URL check, so the pool is reached
    allowed = Deadline(3, policy=EgressPolicy(allowed_bases=(base,)))
    assert client.get_json(base + "/Patient/p1", None, allowed)["resourceType"] == "Patient"
    before = len(fhir.requests)
    with pytest.raises(FhirNotAllowed):
        client.get_json(base + "/Patient/p1", None, Deadline(3))  # the same pooled host, no allow-list
    assert len(fhir.requests) == before


@pytest.mark.parametrize("args, env, reaches", [
    (("--dev",), {"AZA_CDS_FHIR_ALLOW_LOOPBACK": ""}, True),
    (("--insecure-no-auth", "--workers", "1"), {"AZA_CDS_FHIR_ALLOW_LOOPBACK": ""}, False),
], ids=["serve --dev", "serve (production)"])
def test_only_serve_dev_reaches_a_loopback_fhir_server(tmp_path, fhir, args, env, reaches):
    from tests.test_serving import Serve

    srv = Serve(tmp_path, *args, env=env)
    try:
        status, body = srv.post(hook_request(fhir_server=fhir.base, token="fhir-token-ssrf"))
    finally:
        srv.close()
    assert status == 200
    assert (NOT_ALLOWED not in text_of(body["cards"])) is reaches
    assert bool(fhir.requests) is reaches
