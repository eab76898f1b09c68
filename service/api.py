"""HTTP endpoints (CDS Hooks 2.0): discovery, service calls, feedback."""
from __future__ import annotations

import logging

import msgspec

from flask import Blueprint, Response, current_app, g

from fhir_mappers.read_members import RESULT_KEYS, decode_results
from hooks import SERVICES, HookEnv
from hooks.errors import HookError
from hooks import envelope
from hooks.envelope import Prefetch
from hooks.pipeline import run as run_hook

from . import jsonbody
from .errors import ApiError
from .wire import json_response, parse_body, read_json_body, request_bytes
from .validation import first_error, has_context_schema

bp = Blueprint("cds", __name__)
log = logging.getLogger("aza_cds.api")



@bp.get("/cds-services")
@bp.get("/cds-services/")
def discovery() -> Response:
    from rules import knowledge_version

    env: HookEnv = current_app.extensions["aza_hook_env"]
    profile = {"guideline": env.rule_options.guideline, "knowledgeVersion": knowledge_version()}
    return json_response({"services": [{**s.discovery(), "extension": {"azathioprine-cds": profile}}
                                        for s in SERVICES.values()]})


class _PartReader:
    """Parses the parts of one request body that a call reads (its ``context``, a ``prefetch`` value) with
    the limits ``wire.parse_body`` puts on the whole body: the nesting depth, counted from the top of the body,
    and the objects and arrays parsed in this call, all parts together (413 past ``MAX_CONTAINERS``)."""

    __slots__ = ("depth_limit", "containers", "container_limit")

    def __init__(self, depth_limit: int) -> None:
        self.depth_limit = depth_limit
        self.containers = 0
        self.container_limit = jsonbody.container_limit()

    def read(self, raw: bytes, level: int, parse=jsonbody.parse) -> object:
        """The JSON value ``raw`` found ``level`` objects deep in the body (a top-level member: 1), parsed by
        ``parse`` (which raises ValueError or RecursionError for what is not JSON)."""
        # read once: for the container count and for the depth. The empty pairs of quotes are dropped first (the
        # strings with no bracket in them): every bracket is still there (the same count, the same depth, which
        # ``marks_deeper_than`` reads after dropping them itself), in a quarter of the bytes to count
        marks = jsonbody.marks_of(raw).replace(b'""', b"")
        if self.container_limit is not None:
            self.containers += jsonbody.containers_in(marks)
            if self.containers > self.container_limit:
                jsonbody.raise_too_many_containers(self.container_limit)
        try:
            value = parse(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "The body is not valid JSON") from None
        if jsonbody.nested_deeper_than(raw, value, self.depth_limit - level, marks):
            raise ApiError(400, f"The JSON body is nested deeper than {self.depth_limit} levels")
        return value

    def prefetch_value(self, raw, key: str) -> object:
        """A prefetch value. A results key (``read_members.RESULT_KEYS``) is read with only the members the
        mappers read of its resources (``fhir_mappers.read_members``), a shape that decoder does not take whole."""
        return self.read(bytes(raw), 2, _read_results if key in RESULT_KEYS else jsonbody.parse)


def _read_results(raw: bytes) -> object:
    try:
        return decode_results(raw)
    except (msgspec.DecodeError, RecursionError):  # a shape the typed decoder does not take: parsed whole
        return jsonbody.parse(raw)


def _typed_request(raw: bytes, service) -> dict | None:
    """The request as ``call_service`` uses it, read through the typed envelope (``hooks.envelope``): its
    ``prefetch`` a ``Prefetch`` that decodes a key only when the call reads it. None (the body is then read
    whole, as it always was, and any refusal is worded from it) unless the body is UTF-8 JSON that the
    envelope reads, its parts within the limits, valid against the request and context schemas and for
    this service's hook: every request this reads is one the whole-body reader reads the same way."""
    if not jsonbody.is_utf8(raw):
        return None
    try:
        env = envelope.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    reader = _PartReader(current_app.config["AZA"].max_json_depth)
    body: dict = {}
    try:
        for name in ("hook", "hookInstance", "fhirServer", "patient"):
            value = getattr(env, name)
            if value is not None:
                body[name] = value
        for name in ("fhirAuthorization", "context", "extension"):
            part = getattr(env, name)
            if part is not None:
                value = reader.read(bytes(part), 1)
                if value is not None:
                    body[name] = value
    except ApiError:
        return None  # the whole-body reader says why, as it always did
    if env.prefetch is not None:
        body["prefetch"] = Prefetch(env.prefetch, reader.prefetch_value)
    body = normalise_request(body)
    shape = body["prefetch"].shape() if "prefetch" in body else None
    if "prefetch" in body and shape is None:
        return None
    if first_error("ServiceRequest", {**body, "prefetch": shape} if "prefetch" in body else body):
        return None
    if body["hook"] != service.hook:
        return None
    if has_context_schema(service.hook) and first_error(f"hook:{service.hook}", body["context"]):
        return None
    return body


def normalise_request(body: dict) -> dict:
    """Accept CDS Hooks 1.0 clients: drop null top-level keys, move a top-level ``patient`` into the context."""
    body = {k: v for k, v in body.items() if v is not None}
    ctx = body.get("context")
    if isinstance(ctx, dict) and not ctx.get("patientId") and isinstance(body.get("patient"), str):
        body["context"] = {**ctx, "patientId": body["patient"]}
    return body


def _validated(body: dict, service, service_id: str) -> dict:
    g.hook_instance = body.get("hookInstance") if isinstance(body.get("hookInstance"), str) else None
    problem = first_error("ServiceRequest", body)
    if problem:
        raise ApiError(400, problem[0], field=problem[1])
    if body["hook"] != service.hook:
        raise ApiError(400, f"Service '{service_id}' answers hook '{service.hook}', not '{body['hook']}'", field="$.hook")
    if has_context_schema(service.hook):
        problem = first_error(f"hook:{service.hook}", body["context"])
        if problem:
            raise ApiError(400, problem[0].replace("$", "$.context", 1), field=problem[1].replace("$", "$.context", 1))
    return body


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = SERVICES.get(service_id)
    g.service_id = service_id if service_id in SERVICES else "(unknown)"  # never log caller text
    if service is None:
        raise ApiError(404, f"No CDS service '{service_id}'")
    raw = request_bytes()
    body = _typed_request(raw, service)
    if body is None:  # not a body the envelope reads: the whole body, as it always was (and any error from it)
        body = _validated(normalise_request(parse_body(raw)), service, service_id)
    g.hook_instance = body.get("hookInstance") if isinstance(body.get("hookInstance"), str) else None
    from .smart import launch_url

    # every card links the SMART app (its URL is worked out only when a card is rendered)
    env: HookEnv = msgspec.structs.replace(current_app.extensions["aza_hook_env"], request_deadline=g.get("deadline"),
                           app_launch_url=launch_url)
    try:
        result = run_hook(service, body, env)
    except HookError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    store = current_app.extensions.get("aza_feedback_store")
    if store is not None and result.response["cards"]:
        store.record_cards(service_id=service_id, hook=service.hook, hook_instance=g.hook_instance or "",
                           cards=result.response["cards"])
    if "aza_metrics" in current_app.extensions:
        current_app.extensions["aza_metrics"].cards_returned(result.response["cards"])
    g.card_count = len(result.response["cards"])
    g.rule_ids = result.rule_ids
    g.fhir_ms = round(result.fhir_ms, 1)
    return json_response(result.response)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    g.service_id = service_id if service_id in SERVICES else "(unknown)"  # never log caller text
    if service_id not in SERVICES:
        raise ApiError(404, f"No CDS service '{service_id}'")
    body = read_json_body()
    problem = first_error("FeedbackRequest", body)
    if problem:
        raise ApiError(400, problem[0], field=problem[1])
    from .storage import FeedbackInvalid, FeedbackQuota, QuotaExceeded, StorageError, parse_feedback

    g.feedback_items = len(body["feedback"])
    try:
        parse_feedback(body["feedback"])  # what the schema cannot say: timestamps, sizes
        store = current_app.extensions.get("aza_feedback_store")
        if store is None:
            return json_response({})
        if store.pending:  # cards this worker issued moments ago are written first, with their rule
            store.flush()
        # only about cards this service issued (any replica: they share the store), once per card and
        # outcome, within the issuer's quota (issue 18 R5; without authentication, loopback only, there is
        # no issuer and so no quota)
        issuer = g.get("issuer") or None
        quota = current_app.extensions.get("aza_feedback_quota", FeedbackQuota()) if issuer else None
        result = store.record_feedback(service_id, body["feedback"], issuer=issuer, require_issued=True, quota=quota)
        if "aza_metrics" in current_app.extensions:
            current_app.extensions["aza_metrics"].feedback_received(body["feedback"])
    except FeedbackInvalid as exc:
        raise ApiError(400, exc.message, field=exc.field) from None
    except QuotaExceeded as exc:
        raise ApiError(429, exc.message, headers={"Retry-After": str(exc.retry_after)}) from None
    except StorageError:
        raise ApiError(503, "The feedback could not be stored now; send it again later (it is stored once)",
                       headers={"Retry-After": "5"}) from None
    return json_response({"stored": result.stored, "duplicates": result.duplicates})


@bp.get("/openapi.json")
def openapi() -> Response:
    """OpenAPI 3.1 description of these endpoints (no token needed, like discovery)."""
    from .openapi import openapi_document

    return json_response(openapi_document())
