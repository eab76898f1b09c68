"""End to end against a real FHIR R4 server: Medplum's in-memory FHIR router (tests/fhir_server/).

The server is started on a free loopback port for this module (``npm ci`` runs first if
``node_modules`` is missing) and loaded with the synthetic patients of ``tests/fixtures_fhir/``
(transaction bundles). The service is called with a CDS Hooks JWT, no prefetch, and the
server's URL and access token, so every piece of data comes through its FHIR fallback path:
searches with token/date/reference parameters, ``_include``, ``_sort``, paging through ``next``
links, and reads of referenced Medications.

These tests are never skipped: if Node.js or npm is missing they fail and say so.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from hooks.prefetch import PREFETCH, render
from service import create_app
from tests.builders import SERVICE, hook_request, med_request
from tests.conftest import assert_valid_response
from tests.fhir_server.medplum import MedplumServer

FIXTURES = Path(__file__).with_name("fixtures_fhir")
FHIR_TOKEN = "medplum-access-token-" + uuid.uuid4().hex
EVALUATION_DATE = "2026-11-20"  # the fixtures' dates are around this day
DEADLINE = 3.0  # generous: a real server on a 2-core CI machine
ISS = "https://ehr.integration.example.org"


@pytest.fixture(scope="module")
def medplum():
    with MedplumServer(token=FHIR_TOKEN) as server:
        for name in ["medications"] + sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem != "medications"):
            server.load(json.loads((FIXTURES / f"{name}.json").read_text()))
        yield server


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "itest-1", "use": "sig", "alg": "ES384"}
    trust = tmp_path_factory.mktemp("trust") / "trust.json"
    trust.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    return key, trust


def make_client(trust: Path, deadline: float = DEADLINE):
    app = create_app({"auth_required": True, "trust": str(trust), "public_base_url": "http://localhost", "fhir_allow_loopback": True,
                      "fhir_deadline": deadline,
                      "evaluation_date": EVALUATION_DATE, "database_url": "sqlite://"})
    return app.test_client()


@pytest.fixture(scope="module")
def client(signing_key):
    return make_client(signing_key[1])


def jwt_for(key, path: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "sub": "integration-ehr", "aud": "http://localhost" + path, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "itest-1", "typ": "JWT"})


def aza_order(pid: str, **kw) -> dict:
    return med_request(pid=pid, id=f"draft-aza-{pid}", daily_mg=150, **kw)


def request(server, pid: str, hook: str = "order-sign", orders: list[dict] | None = None, token: str = FHIR_TOKEN) -> dict:
    req = hook_request(hook, orders=orders or [aza_order(pid)], fhir_server=server.base_url, token=token)
    req["context"]["patientId"] = pid
    return req


def call(client, key, req: dict, status: int = 200) -> tuple[list[dict], float]:
    path = f"/cds-services/{SERVICE[req['hook']]}"
    started = time.monotonic()
    resp = client.post(path, json=req, headers={"Authorization": f"Bearer {jwt_for(key, path)}"})
    took = time.monotonic() - started
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert_valid_response(body)
    return body["cards"], took


def codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def card(cards: list[dict], code: str) -> dict:
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert found, f"no {code} card in {codes(cards)}"
    return found[0]


# ------------------------------------------------------------------ each patient, through the FHIR server

def test_normal_patient_needs_no_pharmacogenomic_card(medplum, client, signing_key):
    medplum.reset_log()
    cards, _ = call(client, signing_key[0], request(medplum, "itest-normal"))
    assert not [c for c in codes(cards) if c.startswith("pgx-")], codes(cards)
    assert "data-incomplete" not in codes(cards), codes(cards)  # every query answered within the deadline
    log = medplum.request_log()
    assert log and all(r["authorization_present"] and r["status"] == 200 for r in log), log
    queried = {(r["path"].rsplit("/fhir/", 1)[1].split("/")[0]) for r in log}
    assert queried >= {"Patient", "MedicationRequest", "Observation", "Condition", "AllergyIntolerance"}
    assert any("_include=MedicationRequest%3Amedication" in r["query"] or "_include=MedicationRequest:medication" in r["query"]
               for r in log)


def test_tpmt_intermediate_core_style_weight_in_pounds(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-tpmt-im"))
    pgx = [c for c in cards if c["source"]["topic"]["code"] in ("pgx-reduce-dose", "pgx-dose-in-reduced-range")]
    assert pgx, codes(cards)
    assert "TPMT" in pgx[0]["detail"] and "intermediate" in pgx[0]["detail"].lower()
    assert "79.8 kg" in pgx[0]["detail"]  # 176 [lb_av] read from the server and converted


def test_tpmt_poor_coded_phenotype_is_critical(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-tpmt-pm"))
    poor = card(cards, "pgx-poor-metabolizer")
    assert poor["indicator"] == "critical" and "TPMT" in poor["summary"]


def test_untested_patient_is_told_to_test(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-untested"))
    assert card(cards, "pgx-test-missing")["indicator"] == "warning"


def test_unknown_allele_and_unknown_unit_are_reported_not_passed(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-odd"))
    assert "*1/*99" in card(cards, "pgx-uninterpretable")["detail"]
    assert "furlongs" in card(cards, "data-incomplete")["detail"]


def test_result_on_the_second_page_is_found(medplum, client, signing_key):
    medplum.reset_log()
    cards, _ = call(client, signing_key[0], request(medplum, "itest-paged"))
    poor = card(cards, "pgx-poor-metabolizer")
    assert "NUDT15" in poor["summary"]
    assert any("_offset=20" in r["query"] for r in medplum.request_log()), "the next link was not followed"


def test_medication_reference_and_include_are_resolved(medplum, client, signing_key):
    """The draft order names its drug only by reference (read from the server), and the active
    allopurinol comes through ``_include``; the azathioprine allergy comes from its own search."""
    order = aza_order("itest-allopurinol")
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/aza-50"}
    medplum.reset_log()
    cards, _ = call(client, signing_key[0], request(medplum, "itest-allopurinol", orders=[order]))
    assert "interaction-xanthine-oxidase" in codes(cards), codes(cards)
    assert "hypersensitivity" in codes(cards), codes(cards)
    assert any(r["path"].endswith("/Medication/aza-50") for r in medplum.request_log())


@pytest.mark.parametrize("hook", list(SERVICE))
def test_every_hook_uses_the_fallback(medplum, client, signing_key, hook):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-tpmt-pm", hook=hook))
    assert "pgx-poor-metabolizer" in codes(cards)


# ------------------------------------------------------------------ fallback == prefetch

def prefetch_from(medplum, pid: str) -> dict:
    """What an EHR would prefetch: each template rendered and fetched, every page."""
    out = {}
    for key, template in PREFETCH.items():
        value = medplum.get("/fhir/" + (render(template, {"patientId": pid}) or ""))
        if value.get("resourceType") == "Bundle":
            entries, page = list(value.get("entry", [])), value
            while nxt := next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None):
                page = medplum.get(nxt)
                entries += page.get("entry", [])
            value = {**value, "entry": entries}
            value.pop("link", None)
        out[key] = value
    return out


@pytest.mark.parametrize("pid", ["itest-normal", "itest-tpmt-im", "itest-tpmt-pm", "itest-untested", "itest-odd",
                                 "itest-paged", "itest-allopurinol"])
def test_fallback_gives_the_same_cards_as_prefetch(medplum, client, signing_key, pid):
    fetched, _ = call(client, signing_key[0], request(medplum, pid))
    req = hook_request(orders=[aza_order(pid)], pre=prefetch_from(medplum, pid))
    req["context"]["patientId"] = pid
    prefetched, _ = call(client, signing_key[0], req)

    def shape(cards):
        return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards)

    assert shape(fetched) == shape(prefetched)


# ------------------------------------------------------------------ the real server failing

def test_wrong_fhir_token_is_reported(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-normal", token="not-the-token"))
    assert "refused the access token" in card(cards, "pgx-unavailable")["detail"] + card(cards, "data-incomplete")["detail"]
    assert card(cards, "data-incomplete")["indicator"] == "warning"


def test_unknown_patient_is_not_an_all_clear(medplum, client, signing_key):
    cards, _ = call(client, signing_key[0], request(medplum, "itest-nobody"))
    assert "demographics" in card(cards, "data-incomplete")["detail"]
    assert "pgx-test-missing" in codes(cards)  # the search worked and found no result


def test_slow_real_server_answers_within_the_deadline(signing_key):
    deadline = 0.8
    with MedplumServer(token=FHIR_TOKEN, delay_ms=int(deadline * 1000) + 5000) as slow:
        client = make_client(signing_key[1], deadline=deadline)
        cards, took = call(client, signing_key[0], request(slow, "itest-normal"))
    assert took < deadline + 3, took  # the server answers after 5.8 s: only the deadline explains an earlier answer
    assert card(cards, "pgx-unavailable")["indicator"] == "warning"
    incomplete = card(cards, "data-incomplete")
    assert incomplete["indicator"] == "warning" and "did not answer in time" in incomplete["detail"]
