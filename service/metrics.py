"""Prometheus metrics (``GET /metrics``), with prometheus-client's multiprocess mode under gunicorn.

Under ``azathioprine-cds serve`` every gunicorn worker writes its samples to files in one directory
(``metrics_dir``, a fresh temporary directory by default) and ``/metrics``, whichever worker answers
it, adds up the files of all workers; a worker that exits is marked dead (its live gauges drop out).
The development server and in-process apps (tests, ``check``) count in the process's own registry.

What is counted (all names start with ``aza_cds_``):

- ``http_request_duration_seconds{route,service,status}`` histogram of every request;
- ``fhir_queries_total{outcome}``: one series per ``outbound.fhir_client.FhirOutcome`` (ok,
  not-allowed, unreachable, timeout, error-status, invalid-response, too-large), the categories the
  cards and logs name;
- ``cards_total{rule,indicator}``: cards returned (an info card merging several rules counts once per rule);
- ``feedback_total{outcome}``: feedback items received (accepted, overridden);
- ``card_queue_depth`` (cards waiting to be written to the feedback store, summed over live
  workers) and ``card_records_dropped_total`` (cards not recorded because that queue was full);
- ``jwt_refusals_total{reason}``: refused tokens, one series per ``service.auth.Refusal`` (missing,
  malformed, algorithm, issuer, key, signature, claims, audience, expired, lifetime, subject,
  tenant, replay, error), never the token or its claims;
- ``worker_start_time_seconds`` (one series per live worker, label ``pid``).

Label values are closed sets or come from this service (rule ids, service ids, route templates),
never from the caller, so the number of series stays bounded.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from outbound.fhir_client import OUTCOME_LISTENERS, FhirOutcome

from .auth import REFUSAL_LISTENERS, Refusal
from .storage.feedback import Outcome as FeedbackOutcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when it is imported


class Metrics:
    """The service's metrics; one per process (prometheus-client keeps them in module state)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.multiprocess_dir = multiprocess_dir
        self.requests = Histogram("aza_cds_http_request_duration_seconds", "Requests, by route, service and status",
                                  ["route", "service", "status"],
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0))
        self.fhir = Counter("aza_cds_fhir_queries", "FHIR queries to the EHR's server, by outcome", ["outcome"])
        self.cards = Counter("aza_cds_cards", "Cards returned, by rule and indicator", ["rule", "indicator"])
        self.feedback = Counter("aza_cds_feedback", "Feedback items received, by outcome", ["outcome"])
        self.queue_depth = Gauge("aza_cds_card_queue_depth", "Card records waiting to be written to the store",
                                 multiprocess_mode="livesum")
        self.dropped = Counter("aza_cds_card_records_dropped", "Card records not written because the queue was full")
        self.jwt_refusals = Counter("aza_cds_jwt_refusals", "Refused JWTs, by reason category", ["reason"])
        self.worker_start = Gauge("aza_cds_worker_start_time_seconds", "When this worker process started",
                                  multiprocess_mode="liveall")
        self._started_in: int | None = None
        # labelled children by label values, looked up once: ``labels()`` costs more than the increment
        # (the label sets are closed, so these stay small)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._card_children: dict[tuple[str, str], Any] = {}
        for outcome in FhirOutcome:  # every known series from the start, at 0
            self.fhir.labels(outcome.value)
        for refusal in Refusal:
            self.jwt_refusals.labels(refusal.value)
        for fb in typing.get_args(FeedbackOutcome):
            self.feedback.labels(fb)
        # the FHIR client and the authenticator name each outcome and refusal; counted here, once
        # per process (this object is one per process), whichever app in it made the call
        OUTCOME_LISTENERS.append(self.fhir_query)
        REFUSAL_LISTENERS.append(self.jwt_refused)

    def worker_started(self) -> None:
        if self._started_in != os.getpid():  # once per process, also in a forked worker
            self._started_in = os.getpid()
            self.worker_start.set(time.time())

    # -- what the app reports -----------------------------------------------------------------------
    def request(self, *, route: str, service: str, status: int, seconds: float) -> None:
        self.worker_started()
        child = self._request_children.get((route, service, status))
        if child is None:
            child = self._request_children[(route, service, status)] = self.requests.labels(route, service, str(status))
        child.observe(seconds)

    def fhir_query(self, outcome: FhirOutcome) -> None:
        self.fhir.labels(outcome.value).inc()

    def cards_returned(self, cards: Iterable[dict]) -> None:
        for card in cards:
            topic = (card.get("source") or {}).get("topic") or {}
            merged = ((card.get("extension") or {}).get("azathioprine-cds") or {}).get("mergedRuleIds")
            # an info card that carries several rules' notes (the info-card cap) counts for each of them
            for rule in merged if isinstance(merged, list) and merged else [topic.get("code") or "unknown"]:
                key = (str(rule), str(card.get("indicator")))
                child = self._card_children.get(key)
                if child is None:
                    child = self._card_children[key] = self.cards.labels(*key)
                child.inc()

    def feedback_received(self, items: Iterable[dict]) -> None:
        for item in items:
            outcome = item.get("outcome") if isinstance(item, dict) else None
            if outcome in typing.get_args(FeedbackOutcome):
                self.feedback.labels(outcome).inc()

    def card_queue_observer(self) -> Callable[[int, int], None]:
        """For one feedback store (its ``observer``): told the queue length now and how many card
        records the store has dropped since it opened."""
        seen = 0

        def observe(depth: int, dropped_total: int) -> None:
            nonlocal seen
            self.queue_depth.set(depth)
            if dropped_total > seen:
                self.dropped.inc(dropped_total - seen)
            seen = max(seen, dropped_total)

        return observe

    def jwt_refused(self, refusal: Refusal) -> None:
        self.jwt_refusals.labels(refusal.value).inc()

    # -- exposition ----------------------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        if not self.multiprocess_dir:
            return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST


_METRICS: Metrics | None = None


def metrics(multiprocess_dir: str | None = None) -> Metrics:
    """The process's metrics (prometheus-client registers each name once per process)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = Metrics(multiprocess_dir)
    return _METRICS


# -- gunicorn -------------------------------------------------------------------------------------------

def prepare_multiprocess(directory: str | None) -> str:
    """Before the app is built in the gunicorn master: the directory of the workers' sample files,
    emptied (prometheus-client: stale files from an earlier run would be added in), and handed to
    prometheus-client. Without ``directory`` a temporary one, removed when the master exits."""
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="aza-cds-metrics-"))
        master = os.getpid()

        def remove() -> None:
            if os.getpid() == master:  # forked workers inherit this handler: only the master removes
                shutil.rmtree(path, ignore_errors=True)

        import atexit

        atexit.register(remove)
    os.environ[MULTIPROC_ENV] = str(path)  # prometheus-client reads it when first imported
    return str(path)


def gunicorn_hooks(directory: str) -> dict[str, Callable[[Any, Any], None]]:
    """gunicorn settings: the master's live gauges (made when the app was preloaded, never set)
    do not count once a worker runs, nor do a worker's once it is gone."""
    from prometheus_client import multiprocess

    def post_fork(server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(server.pid, directory)

    def child_exit(server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid, directory)

    return {"post_fork": post_fork, "child_exit": child_exit}
