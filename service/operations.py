"""For operators: ``GET /healthz``, ``GET /readyz`` and ``GET /metrics``; no token needed.

- ``/healthz``: the process answers (a load balancer's liveness probe). Always 200.
- ``/readyz``: ready to answer hook calls: the clinical knowledge is loaded and the feedback store
  answers a trivial query within ``readiness_timeout`` seconds; otherwise 503 with an
  OperationOutcome (like every error of the service) naming each check that failed (never a
  database URL or an error text).

All three carry the CORS headers of every path and answer errors (404, 405) as OperationOutcomes.
- ``/metrics``: Prometheus text format (see ``service.metrics``); 404 when ``metrics`` is off.
  Like discovery it needs no token: it holds counts per rule, service and outcome, no patient data.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import sqlalchemy as sa
from flask import Blueprint, Response, current_app

from .errors import ApiError

bp = Blueprint("operations", __name__)
log = logging.getLogger("aza_cds.operations")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # answered without a token, like discovery
_PROBE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aza-readyz")  # a hung probe blocks only probes


def _json(body: dict, status: int = 200) -> Response:
    from flask import json

    return Response(json.dumps(body), status=status, mimetype="application/json")


@bp.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    checks = {"knowledge": _knowledge_check(), "feedbackStore": _store_check()}
    failed = [f"{name}: {state}" for name, state in checks.items() if state != "ok"]
    if failed:
        raise ApiError(503, "Not ready: " + ", ".join(failed), headers={"Retry-After": "5"})
    return _json({"status": "ready", "checks": checks})


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    registry = current_app.extensions.get("aza_metrics")
    if registry is None:
        raise ApiError(404, "Metrics are switched off (AZA_CDS_METRICS)")
    store = current_app.extensions.get("aza_feedback_store")
    if store is not None:
        store.observe()  # this worker's queue, as of now
    body, content_type = registry.exposition()
    return Response(body, status=200, content_type=content_type)


def _knowledge_check() -> str:
    from rules.knowledge_base import load

    try:
        load()
    except Exception as exc:  # noqa: BLE001 - a failure is the answer here
        log.error("readiness: knowledge not loaded", extra={"error": type(exc).__name__})
        return "failed"
    return "ok"


def _store_check() -> str:
    store = current_app.extensions.get("aza_feedback_store")
    if store is None:
        return "ok"  # no store configured: nothing to reach
    timeout = current_app.config["AZA"].readiness_timeout

    def ping() -> None:
        with store.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        _PROBE.submit(ping).result(timeout=timeout)
    except FutureTimeout:
        log.warning("readiness: feedback store did not answer in time", extra={"event": "readiness"})
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        log.warning("readiness: feedback store unreachable", extra={"event": "readiness", "error": type(exc).__name__})
        return "unreachable"
    return "ok"
