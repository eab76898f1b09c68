"""Schemathesis against the app in process, driven by the service's own ``/openapi.json``.

The app runs as deployed: JWT authentication on, with a generated ES384 key in a temporary
trust file; each generated call gets a fresh token (a new ``jti``) for the URL it calls.
Every check schemathesis knows for a response runs: no 5xx, status codes, content types,
headers and bodies as the OpenAPI document describes them, and auth that cannot be skipped.

No request leaves the machine: generated ``fhirServer`` URLs are answered by ``responses``
(connection refused) and sockets may only connect to loopback.
"""
from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, settings
from jwt.algorithms import ECAlgorithm

from schemathesis.specs.openapi.checks import positive_data_acceptance
from service import create_app

PUBLIC = "https://cds.example.org"
ISS = "https://ehr.schemathesis.example.org"
KEY = ec.generate_private_key(ec.SECP384R1())


from tests.isolation import isolated  # noqa: E402,F401  (autouse fixture)


def _app():
    """The app as deployed (auth on), built at import: schemathesis needs the schema at collection."""
    import tempfile
    from pathlib import Path

    jwk = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": "st-1", "use": "sig"}
    trust = Path(tempfile.mkdtemp(prefix="aza-st-")) / "trust.json"
    trust.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    return create_app({"auth_required": True, "trust": str(trust), "public_base_url": PUBLIC,
                       "fhir_deadline": 0.3, "database_url": "sqlite://"})


APP = _app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def app():
    return APP


def bearer(path: str) -> dict:
    now = int(time.time())
    claims = {"iss": ISS, "sub": "schemathesis", "aud": PUBLIC + path, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "st-1"})}


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api(case):
    headers = bearer(case.formatted_path) if case.path.startswith("/cds-services/") else None
    excluded = []
    if case.path.endswith("/feedback"):
        # feedback is also checked for what JSON Schema cannot say (a timestamp in the future, sizes):
        # such schema-valid items get a 400 that names the field, on purpose
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers=headers, excluded_checks=excluded)


def test_openapi_document_is_3_1_and_covers_every_service(app):
    from hooks import SERVICES

    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    for service in SERVICES.values():
        assert f"/cds-services/{service.id}" in doc["paths"]
        assert f"/cds-services/{service.id}/feedback" in doc["paths"]
    assert doc["paths"]["/cds-services"]["get"]["security"] == []
