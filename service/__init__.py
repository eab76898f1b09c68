"""The Flask application: ``create_app(config=None)``.

Heavy things happen once here: schemas compiled, knowledge loaded, the FHIR
HTTP session pooled. Nothing happens at import time.
"""
from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from flask import Flask, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from outbound.fhir_client import Deadline
from outbound.netguard import EgressPolicy

from .config import Config
from .errors import ApiError, error_response

log = logging.getLogger("aza_cds.access")


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    from hooks import HookEnv
    from hooks.wording import check as check_wording
    from outbound.fhir_client import FhirClient, FhirSettings
    from rules import RuleOptions, check_catalogue
    from rules.knowledge_base import load as load_knowledge

    from . import logs
    from .api import bp
    from .auth import Authenticator
    from .validation import fast_validator

    if isinstance(config, Config):
        cfg = config
    else:
        cfg = Config.from_env().with_overrides(config)
    logs.configure()

    app = Flask(__name__)
    app.config["AZA"] = cfg
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's setting

    # once per process: knowledge, schemas, HTTP pool
    load_knowledge()
    check_catalogue()  # knowledge typed and cited, every emitted rule id in the catalogue
    check_wording()  # every template renders with its sample values, every knowledge path resolves
    for name in ("ServiceRequest", "FeedbackRequest", "hook:order-sign", "hook:order-select", "hook:medication-prescribe"):
        fast_validator(name)  # jsonschema-rs, compiled here once; jsonschema only when a body is refused
    client = FhirClient(FhirSettings(deadline_seconds=cfg.fhir_deadline, max_pages=cfg.fhir_max_pages,
                                     max_bytes=cfg.fhir_max_response_bytes, max_call_bytes=cfg.fhir_max_call_bytes))
    registry = None
    if cfg.metrics:
        from .metrics import metrics

        registry = app.extensions["aza_metrics"] = metrics(cfg.metrics_dir)
    app.extensions["aza_hook_env"] = HookEnv(
        client=client,
        deadline_seconds=cfg.fhir_deadline,
        rule_options=RuleOptions(weight_max_age_days=cfg.weight_max_age_days, guideline=cfg.guideline),
        max_info_cards=cfg.max_info_cards,
    )
    if cfg.evaluation_date:
        fixed = date.fromisoformat(cfg.evaluation_date)
        app.extensions["aza_hook_env"].today = lambda: fixed
    # feedback store: SQLite in the data dir or AZA_CDS_DATABASE_URL; migrated here, once per worker.
    # It also holds the JWT replay table every worker and instance shares.
    from .storage import open_store

    app.extensions["aza_feedback_store"] = store = open_store(cfg)
    if registry is not None:
        store.observer = registry.card_queue_observer()
    try:
        app.extensions["aza_auth"] = Authenticator.from_config(cfg, store=store)
    except ValueError:
        store.close()
        raise

    # CORS on every path, unknown ones included (a 404 without CORS headers reads as "All clear!" in
    # the sandbox); Chrome's private-network preflight (a public page calling 127.0.0.1) is allowed.
    # Registered before CORS, so it runs after flask-cors (after_request runs in reverse order).
    app.after_request(_private_network_once)
    CORS(app, resources={r"/.*": {"origins": cfg.cors_origins}}, allow_private_network=True,
         allow_headers=["Authorization", "Content-Type"], methods=["GET", "POST", "OPTIONS"], max_age=86400)
    app.register_blueprint(bp)
    from .operations import bp as operations_bp

    app.register_blueprint(operations_bp)
    from .smart import bp as smart_bp

    app.register_blueprint(smart_bp)
    _install_hooks(app)
    return app


def _install_hooks(app: Flask) -> None:
    cfg: Config = app.config["AZA"]

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        req = request._get_current_object()  # type: ignore[attr-defined]  # once, not through the proxy each time
        if req.method == "OPTIONS" and req.headers.get("Access-Control-Request-Method"):
            return app.response_class(status=200)  # a CORS preflight, on any path: flask-cors adds the headers
        path = req.path
        if req.method == "OPTIONS" or path.rstrip("/") == "/cds-services" or not path.startswith("/cds-services/"):
            return None  # discovery, health, readiness and metrics need no token
        g.service_id = _service_of(path)
        # one deadline for everything this call does (JWKS, FHIR), from when the request arrived
        arrived = request.environ.get("aza.arrived")
        now = time.monotonic()
        start = arrived if isinstance(arrived, float) and arrived <= now else now
        if now - start > cfg.max_queue_seconds:
            g.queued_ms = round((now - start) * 1000, 1)
            raise ApiError(503, "The service is overloaded; try again shortly", headers={"Retry-After": "2"})
        deadline = Deadline(app.extensions["aza_hook_env"].deadline_seconds, start=start, max_bytes=cfg.fhir_max_call_bytes,
                            max_entries=cfg.max_entries_per_key)
        issuer = app.extensions["aza_auth"].check(req, deadline)
        g.issuer = issuer.iss if issuer else ""  # feedback quotas are per issuer
        deadline.policy = EgressPolicy(allowed_bases=issuer.fhir_servers if issuer else (),
                                       allow_loopback=cfg.fhir_allow_loopback)
        g.deadline = deadline
        return None

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {404: "Not found", 405: "Method not allowed", 413: "The request body is too large",
                    415: "Unsupported media type"}
        allow = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}  # RFC 9110: a 405 names the methods
        return error_response(exc.code or 500, messages.get(exc.code or 0, exc.name), headers=allow)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error("unhandled error", exc_info=exc, extra={"error": type(exc).__name__})
        return error_response(500, "Internal error; the safety check could not be completed")

    @app.after_request
    def _access_log(response):
        attrs = vars(g._get_current_object())  # what g.get reads, looked up once
        started = attrs.get("started")
        seconds = time.perf_counter() - (started if started is not None else time.perf_counter())
        latency = seconds * 1000
        response.headers.setdefault("Cache-Control", "no-store")
        req = request._get_current_object()  # type: ignore[attr-defined]
        rule = req.url_rule
        route = rule.rule if rule is not None else "(unmatched)"
        status = response.status_code
        registry = app.extensions.get("aza_metrics")
        if registry is not None:
            registry.request(route=route, service=attrs.get("service_id") or "", status=status, seconds=seconds)
        if route in _QUIET_ROUTES and status == 200:
            return response  # probes and scrapes every few seconds: not worth a log line each
        extra = {"event": "request", "method": req.method, "path": route, "status": status,
                 "latency_ms": round(latency, 2)}
        for key, attr in _LOGGED_G:
            value = attrs.get(attr)
            if value is not None:
                extra[key] = value
        log.info("request", extra=extra)
        return response


def _private_network_once(response):
    """Every preflight allows the private network with exactly one header: flask-cors adds one
    when the browser asks (Access-Control-Request-Private-Network), this sets it otherwise too,
    replacing rather than adding, so a browser never sees the header twice."""
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Private-Network"] = "true"
    return response


_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# (access-log field, attribute of g)
_LOGGED_G = (("service", "service_id"), ("hook_instance", "hook_instance"), ("cards", "card_count"),
             ("rule_ids", "rule_ids"), ("fhir_ms", "fhir_ms"), ("feedback_items", "feedback_items"),
             ("reason", "auth_failure"), ("refusal", "auth_refusal"), ("queued_ms", "queued_ms"))


def _service_of(path: str) -> str:
    """The service id a path names, for the log; never caller text."""
    from hooks import SERVICES

    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[2] in SERVICES else "(unknown)"
