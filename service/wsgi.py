"""Production serving with gunicorn (``azathioprine-cds serve`` without ``--dev``).

- ``gthread`` workers (``--threads`` > 1): one thread per in-flight hook call, so
  a call waiting on the EHR's FHIR server does not hold up the others.
- The app is built once, in the master, before the workers are forked
  (``preload_app``): imports, knowledge files, compiled schemas and the
  feedback store's migration happen once, so a cold start costs one app build
  (not one per worker, competing for the same cores) and the workers share those
  pages copy-on-write. Nothing that cannot cross a fork exists at that point:
  no thread is started (the FHIR pool and the card writer start theirs on first
  use, in the worker) and the store's pooled database connections are closed
  before the fork (``_before_fork``), so each worker opens its own.
- SIGTERM is a graceful stop: the master closes the listening socket, each
  worker stops accepting, finishes the calls in flight (up to
  ``graceful_timeout`` seconds), answers a request already sent on a kept-alive
  connection with ``Connection: close``, and exits; the master exits 0.
  SIGINT / SIGQUIT stop at once.
- Logs: the app writes the access log itself, one JSON line per request
  (``service.logs``: method, route, status, latency, service, card count, rule
  ids; never a token or patient data); gunicorn's own messages (start, worker
  boot/exit, timeouts) go out in the same JSON line format on stderr.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from .config import Config

GRACEFUL_TIMEOUT = 20  # seconds a stopping worker has to finish the calls in flight


def gunicorn_settings(*, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings of ``serve``; the benchmark's reference app is served with the same."""
    threads = max(1, threads)
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": max(1, workers),
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "accesslog": None,  # the app writes one structured line per request
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": _json_logger_class(),
        "preload_app": True,
        "proc_name": "azathioprine-cds",
        "control_socket_disable": True,  # no runtime control socket (one shared path per user otherwise)
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        # lifecycle lines, in the structured format
        "when_ready": lambda arbiter: arbiter.log.info("listening", extra={"event": "server-ready"}),
        "post_worker_init": lambda worker: worker.log.info("worker ready", extra={"event": "worker-ready"}),
        "worker_exit": lambda arbiter, worker: arbiter.log.info("worker exited", extra={"event": "worker-exit"}),
        "on_exit": lambda arbiter: arbiter.log.info("stopped", extra={"event": "server-stop"}),
    }


def _json_logger_class():
    from gunicorn import glogging

    from .logs import JsonFormatter

    class JsonGunicornLogger(glogging.Logger):
        """gunicorn's own messages as JSON lines; its access log off (the app writes that one)."""

        def setup(self, cfg) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

        @property
        def access_log_enabled(self) -> bool:  # no per-request log atoms built for nothing
            return False

        def access(self, resp, req, environ, request_time) -> None:
            return None

    return JsonGunicornLogger


def serve_wsgi(app_factory: Callable[[], Any], *, host: str, port: int, workers: int, threads: int,
               settings: dict[str, Any] | None = None) -> int:
    """Serve the WSGI app that ``app_factory()`` builds (once per worker) with gunicorn; returns at shutdown."""
    from gunicorn.app.base import BaseApplication

    merged = {**gunicorn_settings(host=host, port=port, workers=workers, threads=threads), **(settings or {})}

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in merged.items():
                if value is not None or key == "accesslog":
                    self.cfg.set(key, value)

        def load(self):
            return app_factory()

    Server().run()
    return 0


def run_gunicorn(cfg: Config, *, host: str, port: int, workers: int, threads: int) -> int:
    settings: dict[str, Any] = {}
    if cfg.metrics:  # prometheus-client's multiprocess mode: every worker's samples, added up by /metrics
        from dataclasses import replace

        from .metrics import gunicorn_hooks, prepare_multiprocess

        metrics_dir = prepare_multiprocess(cfg.metrics_dir)
        cfg = replace(cfg, metrics_dir=metrics_dir)
        settings.update(gunicorn_hooks(metrics_dir))

    def factory():
        from . import create_app

        return _before_fork(create_app(cfg))

    return serve_wsgi(factory, host=host, port=port, workers=workers, threads=threads, settings=settings)


def _before_fork(app):
    """Close what must not be shared by forked workers: the feedback store's pooled database
    connections (the migration opened one). Each worker opens its own on first use."""
    store = app.extensions.get("aza_feedback_store")
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()
    return app


def app():  # pragma: no cover - for `gunicorn 'service.wsgi:app()'`
    from . import create_app

    return create_app()
