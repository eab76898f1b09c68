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

from .config import Config
from .errors import ApiError, error_response

log = logging.getLogger("aza_cds.access")


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    from hooks import HookEnv
    from hooks.fhir_client import FhirClient, FhirSettings
    from rules import RuleOptions, check_catalogue
    from rules.knowledge_base import load as load_knowledge

    from . import logs
    from .api import bp
    from .auth import Authenticator
    from .validation import validator

    if isinstance(config, Config):
        cfg = config
    else:
        cfg = Config.from_env().with_overrides(config)
    logs.configure()

    app = Flask(__name__)
    app.config["AZA"] = cfg
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False

    # once per process: knowledge, schemas, HTTP pool
    load_knowledge()
    check_catalogue()  # every rule id worded, every template renders, every knowledge path resolves
    for name in ("ServiceRequest", "FeedbackRequest", "hook:order-sign", "hook:order-select", "hook:medication-prescribe"):
        validator(name)
    client = FhirClient(FhirSettings(deadline_seconds=cfg.fhir_deadline_seconds, max_pages=cfg.fhir_max_pages))
    app.extensions["aza_hook_env"] = HookEnv(
        client=client,
        deadline_seconds=cfg.fhir_deadline_seconds,
        rule_options=RuleOptions(weight_max_age_days=cfg.weight_max_age_days, guideline=cfg.guideline),
        max_info_cards=cfg.max_info_cards,
    )
    if cfg.evaluation_date:
        fixed = date.fromisoformat(cfg.evaluation_date)
        app.extensions["aza_hook_env"].today = lambda: fixed
    app.extensions["aza_auth"] = Authenticator.from_config(cfg)
    # feedback store: SQLite in the data dir or AZA_CDS_DATABASE_URL; migrated here, once per worker
    from .storage import open_store

    app.extensions["aza_feedback_store"] = open_store(cfg)

    CORS(app, resources={r"/cds-services*": {"origins": cfg.cors_origins}, r"/openapi.json": {"origins": "*"}},
         allow_headers=["Authorization", "Content-Type"], methods=["GET", "POST", "OPTIONS"], max_age=86400)
    app.register_blueprint(bp)
    _install_hooks(app)
    return app


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        if request.method == "OPTIONS" or request.path == "/cds-services" or not request.path.startswith("/cds-services/"):
            return None  # discovery and CORS preflight need no token
        app.extensions["aza_auth"].check(request)
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
        latency = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        response.headers.setdefault("Cache-Control", "no-store")
        extra = {"event": "request", "method": request.method, "path": _route_path(), "status": response.status_code,
                 "latency_ms": round(latency, 2)}
        for key, attr in (("service", "service_id"), ("hook_instance", "hook_instance"), ("cards", "card_count"),
                          ("rule_ids", "rule_ids"), ("fhir_ms", "fhir_ms"), ("feedback_items", "feedback_items"),
                          ("reason", "auth_failure")):
            if g.get(attr) is not None:
                extra[key] = g.get(attr)
        log.info("request", extra=extra)
        return response


def _route_path() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "(unmatched)"
