"""The wire: a request body read as JSON within the limits (415, 413, 400) and a JSON response written.

Used by the CDS Hooks endpoints (``api``) and the SMART app's back end (``smart``); below both, so neither imports
the other for it.
"""
from __future__ import annotations

import json

import orjson
from flask import Response, current_app, request

from . import jsonbody
from .errors import ApiError

JSON_TYPES = ("application/json", "application/fhir+json")


# orjson writes what json.dumps(ensure_ascii=False) writes, several times faster; for what it will not
# write the same way (a lone surrogate echoed from the request, an integer over 64 bits, any other
# type: passed through, so refused) the standard library below decides, as before.
_ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


def json_response(body: dict, status: int = 200) -> Response:
    try:
        return Response(orjson.dumps(body, option=_ORJSON_OPTIONS), status=status, mimetype="application/json")
    except TypeError:
        pass
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request (JSON allows "\ud800"): escape it
        data = json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    return Response(data, status=status, mimetype="application/json")


def read_json_body() -> dict:
    return parse_body(request_bytes())


def request_bytes() -> bytes:
    mimetype = (request.mimetype or "").lower()
    if mimetype not in JSON_TYPES:
        raise ApiError(415, f"Content-Type must be application/json (got '{mimetype or 'none'}')")
    return body_bytes(current_app.config["MAX_CONTENT_LENGTH"])


def parse_body(raw: bytes) -> dict:
    """The whole body, parsed: its JSON, nesting depth and container limits (400, 413)."""
    try:
        body = jsonbody.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "The body is not valid JSON") from None
    limit = current_app.config["AZA"].max_json_depth
    if jsonbody.nested_deeper_than(raw, body, limit):
        raise ApiError(400, f"The JSON body is nested deeper than {limit} levels")
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object")
    return body


def body_bytes(limit: int) -> bytes:
    """The body, at most ``limit`` bytes: a declared length over it is refused by Werkzeug (413);
    a chunked body (no Content-Length) is read up to one byte past the limit and refused too,
    never silently cut to a prefix that then fails as "not valid JSON"."""
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "The request body is too large")
    return data
