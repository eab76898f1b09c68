"""OpenAPI 3.1 description of the service, served at ``/openapi.json``.

Generated from the service registry and the JSON Schemas the service validates
with (``schemas/``), so it cannot drift from what the endpoints accept: every
``$defs`` entry becomes a ``components/schemas`` entry (context schemas are
prefixed ``context-``), and each service gets its own path whose request body
pins ``hook`` and its hook's ``context`` schema. OpenAPI 3.1 uses JSON Schema
2020-12, so the schemas are copied as they are, with only ``$ref`` rewritten.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

_SCHEMAS = Path(__file__).with_name("schemas")
_ERROR_STATUSES = {
    "400": "Invalid JSON, or the body violates the request schema (the OperationOutcome names the field)",
    "401": "Missing or invalid CDS Hooks JWT (no detail is given; the reason is logged)",
    "404": "No such service",
    "413": "The request body is too large",
    "415": "Content-Type is not application/json",
}

OPERATION_OUTCOME = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def _rewrite(node: Any, prefix: str) -> Any:
    """Copy of a schema with ``#/$defs/X`` references pointing at ``#/components/schemas/<prefix>X``."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = "#/components/schemas/" + prefix + v[len("#/$defs/"):]
            else:
                out[k] = _rewrite(v, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite(v, prefix) for v in node]
    return node


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: str, extra: dict | None = None) -> dict:
    out = {}
    for status in statuses:
        response: dict = {"description": (extra or {}).get(status) or _ERROR_STATUSES[status],
                          "content": {"application/fhir+json": {"schema": _ref("OperationOutcome")}}}
        if status == "401":
            response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        if status in ("429", "503"):
            response["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
        out[status] = response
    return out


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _accepted_request(strict: dict) -> dict:
    """What the service accepts: CDS Hooks 1.0 clients send ``null`` for absent optional
    top-level fields (e.g. ``"fhirAuthorization": null``); the service drops them before
    validating (``service.api.normalise_request``), so the description allows them too."""
    schema = copy.deepcopy(strict)
    required = set(schema.get("required", []))
    for name, prop in list(schema.get("properties", {}).items()):
        if name not in required:
            schema["properties"][name] = {"anyOf": [prop, {"type": "null"}]}
    if schema.pop("dependentRequired", None):
        schema["if"] = {"required": ["fhirAuthorization"], "properties": {"fhirAuthorization": {"type": "object"}}}
        schema["then"] = {"required": ["fhirServer"], "properties": {"fhirServer": {"type": "string"}}}
    return schema


def _operations_paths() -> dict[str, Any]:
    """/healthz, /readyz, /metrics (service/operations.py): for load balancers and Prometheus, no token."""
    status = {"type": "object", "required": ["status"], "properties": {
        "status": {"type": "string"},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}}}}
    json_status = {"application/json": {"schema": status}}
    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness: the process answers", "security": [],
                             "responses": {"200": {"description": "Alive", "content": json_status}}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: knowledge loaded, feedback store reachable",
                            "security": [],
                            "responses": {"200": {"description": "Ready", "content": json_status},
                                          **_errors("503", extra={"503": "Not ready; each failed check is named"})}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (text exposition format)",
                             "security": [],
                             "responses": {"200": {"description": "Metrics",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           **_errors("404", extra={"404": "Metrics are switched off (AZA_CDS_METRICS)"})}}},
    }


@cache
def openapi_document() -> dict:
    from hooks import SERVICES

    main = json.loads((_SCHEMAS / "cds-hooks-2.0.1.schema.json").read_text(encoding="utf-8"))
    contexts = json.loads((_SCHEMAS / "contexts.schema.json").read_text(encoding="utf-8"))
    schemas: dict[str, Any] = {name: _rewrite(s, "") for name, s in main["$defs"].items()}
    schemas.update({f"context-{name}": _rewrite(s, "context-") for name, s in contexts["$defs"].items()})
    schemas["OperationOutcome"] = copy.deepcopy(OPERATION_OUTCOME)

    security: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}]
    paths: dict[str, Any] = {
        "/cds-services": {"get": {
            "operationId": "discovery",
            "summary": "CDS Hooks discovery",
            "security": [],
            "responses": {"200": {"description": "The services this endpoint offers",
                                  "content": {"application/json": {"schema": _ref("DiscoveryResponse")}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This description",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        **_operations_paths(),
    }
    schemas["ServiceRequestAccepted"] = _accepted_request(schemas["ServiceRequest"])
    for service in sorted(SERVICES.values(), key=lambda s: s.id):
        request = {"allOf": [_ref("ServiceRequestAccepted"), {
            "type": "object",
            "properties": {"hook": {"const": service.hook}},
        }]}
        if f"context-{service.hook}" in schemas:
            request["allOf"][1]["properties"]["context"] = _ref(f"context-{service.hook}")
        paths[f"/cds-services/{service.id}"] = {"post": {
            "operationId": f"call-{service.id}",
            "summary": service.title,
            "description": service.description + "\n\n" + service.usage_requirements,
            "security": security,
            "requestBody": _json_body(request),
            "responses": {
                "200": {"description": "Cards (an empty list when there is nothing to say)",
                        "content": {"application/json": {"schema": _ref("ServiceResponse")}}},
                **_errors("400", "401", "413", "415"),
                **_errors("412", extra={"412": "Required data (patient, medications) was neither prefetched "
                                                "nor fetchable (no fhirServer)"}),
            },
        }}
        paths[f"/cds-services/{service.id}/feedback"] = {"post": {
            "operationId": f"feedback-{service.id}",
            "summary": f"Feedback on the cards of {service.id}",
            "security": security,
            "requestBody": _json_body(_ref("FeedbackRequest")),
            "responses": {
                "200": {"description": "Feedback accepted",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                **_errors("400", "401", "413", "415"),
                **_errors("429", extra={"429": "The issuer's feedback quota (per minute or in total) is used up; "
                                               "Retry-After says when to try again"}),
                **_errors("503", extra={"503": "The feedback could not be stored now; send it again later"}),
            },
        }}

    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Thiopurine safety CDS Hooks service",
            "version": "1.0",
            "description": ("CDS Hooks 2.0 service for thiopurine (azathioprine, mercaptopurine, thioguanine) "
                            "prescribing safety. Service and feedback calls need a CDS Hooks JWT "
                            "(Authorization: Bearer) unless the service runs with --dev."),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"cdsHooksJwt": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "CDS Hooks 2.0: a JWT signed by a trusted CDS Client (ES384 or RS384), "
                               "aud = the URL called, a fresh jti each call",
            }},
        },
    }
