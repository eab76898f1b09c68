"""HTTP errors with FHIR OperationOutcome bodies; never a stack trace."""
from __future__ import annotations

from typing import Any

from flask import Response, json

# OperationOutcome issue-type codes (http://hl7.org/fhir/issue-type) per HTTP status
_ISSUE_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               412: "incomplete", 413: "too-costly", 414: "too-costly", 415: "not-supported", 429: "throttled", 431: "too-costly",
               500: "exception", 503: "transient"}


def operation_outcome(message: str, *, status: int, field: str = "") -> dict:
    issue: dict[str, Any] = {"severity": "error" if status < 500 else "fatal", "code": _ISSUE_CODE.get(status, "processing"),
             "diagnostics": message}
    if field:
        issue["expression"] = [field]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_response(status: int, message: str, *, field: str = "", headers: dict | None = None) -> Response:
    body = json.dumps(operation_outcome(message, status=status, field=field))
    resp = Response(body, status=status, mimetype="application/fhir+json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, field: str = "", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}

    def response(self) -> Response:
        return error_response(self.status, self.message, field=self.field, headers=self.headers)
