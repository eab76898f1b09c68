"""The SMART on FHIR companion app (``/smart/``), opened from the cards' ``smart`` links.

The browser does the SMART App Launch 2.0 dance with the fhirclient library (discovery from
``iss``, ``launch``, ``aud``, ``state``, PKCE S256, code exchange) and reads the patient's record
from the EHR's FHIR server with its own token, running the very queries the CDS services
prefetch (``GET /smart/api/queries``). It then posts what it read to ``POST /smart/api/picture``,
which runs the hook pipeline on it (``hooks.pipeline.evaluate``: the same mappers, the same rules,
the same cards) and answers the cards plus the patient's picture (``rules.picture``). The token
never reaches this service and this endpoint makes no outbound call: it computes on what it is
sent, like ``azathioprine-cds check``.

Static files come from ``smart_app/static``; the two browser libraries are served straight from
``smart_app/node_modules`` (``npm ci`` there; ``make run`` does it): no bundler, no generated file
in the repository.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request, send_from_directory

from hooks import SERVICES, HookEnv
from fhir_mappers import build_facts
from hooks.errors import HookError
from outbound.fhir_client import Deadline
from hooks.gather import FhirAccess, gather
from hooks.pipeline import evaluate
from hooks.prefetch import render

from .wire import json_response, read_json_body
from .errors import ApiError

bp = Blueprint("smart", __name__, url_prefix="/smart")

APP_DIR = Path(__file__).resolve().parent.parent / "smart_app"
STATIC = APP_DIR / "static"
# the browser libraries, by the name the pages load them under: (package folder, file)
VENDOR = {
    "fhir-client.js": ("fhirclient/build", "fhir-client.pure.min.js"),
    "chart.js": ("chart.js/dist", "chart.umd.min.js"),
}
SERVICE_ID = "thiopurine-order-select"  # the app evaluates the orders as order-select would
CLIENT_ID = "azathioprine-cds-smart-app"


def launch_url() -> str:
    """Absolute URL of the app's launch page, for the cards' links."""
    cfg = current_app.config["AZA"]
    base = cfg.public_base_url[0] if cfg.public_base_url else request.url_root
    return base.rstrip("/") + "/smart/launch"


@bp.get("/launch")
def launch_page() -> Response:
    return _static("launch.html")


@bp.get("/")
def app_page() -> Response:
    return _static("index.html")


@bp.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return _static(name)


def _static(name: str) -> Response:
    response = send_from_directory(STATIC, name, max_age=0)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self' http: https:; frame-ancestors *")  # an EHR may open the app in a frame
    return response


@bp.get("/vendor/<name>")
def vendor(name: str) -> Response:
    if name not in VENDOR:
        raise ApiError(404, "Not found")
    folder, file = VENDOR[name]
    path = APP_DIR / "node_modules" / folder
    if not (path / file).is_file():
        raise ApiError(503, "The SMART app's libraries are not installed: run `make smart-app` "
                            "(npm ci in smart_app/)")
    return send_from_directory(path, file, max_age=3600, mimetype="text/javascript")


@bp.get("/api/config")
def config() -> Response:
    """What the launch page needs: the client id and the scopes (one read scope per resource type
    the queries ask for, as the services' discovery says)."""
    from hooks.services import scopes

    service = SERVICES[SERVICE_ID]
    return json_response({"clientId": CLIENT_ID,
                           "scope": " ".join(["launch", "launch/patient", "openid", "fhirUser",
                                              *scopes(service.prefetch)])})


@bp.get("/api/queries")
def queries() -> Response:
    """The FHIR queries the services prefetch, for this patient: the app runs these with its token."""
    patient = request.args.get("patient", "")
    if not patient or len(patient) > 64:
        raise ApiError(400, "patient (a FHIR id) is required", field="patient")
    service = SERVICES[SERVICE_ID]
    rendered = {key: render(p.template, {"patientId": patient}) for key, p in service.prefetch.items()}
    return json_response({"queries": {k: q for k, q in rendered.items() if q}})


@bp.post("/api/picture")
def picture() -> Response:
    """Cards, findings and the picture for what the app read (``prefetch``: key -> FHIR JSON) and
    the orders the card named (``appContext.draftOrders``); without them (a standalone launch),
    the patient's active thiopurine orders."""
    from rules.picture import picture as build_picture

    body = read_json_body()
    patient = body.get("patientId")
    prefetch = body.get("prefetch")
    raw_context = body.get("appContext")
    context: dict = raw_context if isinstance(raw_context, dict) else {}
    if not isinstance(patient, str) or not patient:
        raise ApiError(400, "patientId is required", field="patientId")
    if not isinstance(prefetch, dict):
        raise ApiError(400, "prefetch must be an object of FHIR resources", field="prefetch")
    drafts = _orders(context.get("draftOrders"), prefetch)
    # the FHIR server the app read the record from (never contacted here): absolute references are compared with
    # it (round-11 H2)
    server = body.get("fhirServer") if isinstance(body.get("fhirServer"), str) else None
    env: HookEnv = current_app.extensions["aza_hook_env"]
    service = SERVICES[SERVICE_ID]
    hook_request: dict[str, Any] = {
        "hook": service.hook, "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": patient, "userId": "Practitioner/smart-app",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": r} for r in drafts]}},
        "prefetch": prefetch,
    }
    kept: dict[str, Any] = {}
    try:
        result = evaluate(hook_request, env, service=service, drafts=drafts, keep=kept,  # the cards, as a hook call
                          reference_server=server)
    except HookError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    facts = _all_facts(env, drafts, patient, prefetch, server)
    opts = env.rule_options
    view = build_picture(facts, guideline=opts.guideline, weight_max_age_days=opts.weight_max_age_days)
    return json_response({"cards": result.response["cards"], "picture": view,
                           "findings": [f.rule_id for f in kept.get("findings", [])],
                           "named": context.get("findings") or [], "order": context.get("order") or ""})


def _all_facts(env: HookEnv, drafts: list[dict], patient: str, prefetch: dict, server: str | None = None):
    """Facts from every data group the app read, mapped as a hook call maps them (``gather`` with
    no FHIR server: a group not sent is a gap): the picture shows the whole record even where the
    cards needed only part of it (an order for allopurinol asks only whether a thiopurine is active)."""
    service = SERVICES[SERVICE_ID]
    templates = {k: p.template for k, p in service.prefetch.items()}
    data, gaps = gather(env.client, FhirAccess(None, None), templates, frozenset(), {"patientId": patient}, prefetch,
                        Deadline(env.deadline_seconds))
    return build_facts(drafts, data, today=env.today(), gaps=gaps, patient_id=patient,  # whose data: as the cards
                       fhir_server=server)


def _orders(from_card: Any, prefetch: dict) -> list[dict]:
    if from_card is not None and (not isinstance(from_card, list) or
                                  not all(isinstance(r, dict) and isinstance(r.get("resourceType"), str) for r in from_card)):
        raise ApiError(400, "appContext.draftOrders must be a list of FHIR resources", field="appContext.draftOrders")
    if from_card:
        return list(from_card)
    meds = prefetch.get("medications")
    active = [e.get("resource") for e in (meds or {}).get("entry") or [] if isinstance(e, dict)] \
        if isinstance(meds, dict) else []
    return [r for r in active if isinstance(r, dict) and r.get("resourceType") == "MedicationRequest"]
