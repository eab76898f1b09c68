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
- Worker class ``service.wsgi.CdsThreadWorker`` (gthread, or sync for ``--threads 1``,
  both with these additions): the time a request arrived (accepted, or its kept-alive
  connection became readable) goes into ``environ["aza.arrived"]``, where the per-request
  deadline starts, so time spent queued for a thread counts and a call that waited longer than
  ``max_queue_seconds`` is answered 503 with ``Retry-After`` at once; and gunicorn's own
  errors (a malformed request line or header: 400; URI too long: 414; header fields too
  large: 431) are JSON OperationOutcomes, logged by error class only (gunicorn's own message
  repeats the offending header, which may be a JWT).
- Logs: the app writes the access log itself, one JSON line per request
  (``service.logs``: method, route, status, latency, service, card count, rule
  ids; never a token or patient data); gunicorn's own messages (start, worker
  boot/exit, timeouts) go out in the same JSON line format on stderr.
"""
from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Callable

from .config import Config

GRACEFUL_TIMEOUT = 20  # seconds a stopping worker has to finish the calls in flight
CLIENT_SECONDS = 10.0  # the longest one request (read, answer, write) may hold a worker thread
HEAD_BYTES = 64 * 1024  # a request head this long goes to a thread (gunicorn's limits answer 414/431)
BODY_BYTES = 1024 * 1024  # a body up to this size (Content-Length) is read before a thread is used


def gunicorn_settings(*, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings of ``serve``; the benchmark's reference app is served with the same."""
    threads = max(1, threads)
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": max(1, workers),
        "threads": threads,
        "worker_class": "service.wsgi.CdsThreadWorker" if threads > 1 else "service.wsgi.CdsSyncWorker",
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


# ------------------------------------------------------------------ workers

_ERROR_STATUS = {"LimitRequestLine": (414, "URI Too Long"), "LimitRequestHeaders": (431, "Request Header Fields Too Large"),
                 "UnsupportedTransferCoding": (501, "Not Implemented"), "ForbiddenProxyRequest": (403, "Forbidden"),
                 "SSLError": (403, "Forbidden"), "ExpectationFailed": (417, "Expectation Failed")}


def _client_error(exc: BaseException) -> bool:
    from gunicorn.http import errors

    names = ("InvalidRequestLine", "InvalidRequestMethod", "InvalidHTTPVersion", "InvalidHeader", "InvalidHeaderName",
             "LimitRequestLine", "LimitRequestHeaders", "InvalidProxyLine", "ForbiddenProxyRequest",
             "InvalidSchemeHeaders", "UnsupportedTransferCoding", "ObsoleteFolding", "ExpectationFailed",
             "InvalidH2CPreface", "InvalidChunkSize", "ChunkMissingTerminator", "InvalidChunkExtension")
    classes = tuple(getattr(errors, n) for n in names if hasattr(errors, n))
    from ssl import SSLError

    return isinstance(exc, classes + (SSLError,))


def write_json_error(sock, exc: BaseException, log) -> None:
    """gunicorn's error answer, as a JSON OperationOutcome; the log names the error class only."""
    import json as _json

    from .errors import operation_outcome

    if _client_error(exc):
        status, reason = _ERROR_STATUS.get(type(exc).__name__, (400, "Bad Request"))
        message = {400: "Malformed HTTP request", 414: "The request URI is too long",
                   431: "The request header fields are too large"}.get(status, reason)
        log.warning("invalid request", extra={"event": "invalid-request", "status": status, "error": type(exc).__name__})
    else:
        status, reason, message = 500, "Internal Server Error", "Internal error; the safety check could not be completed"
        log.error("error handling request", extra={"event": "request-error", "status": 500, "error": type(exc).__name__})
    body = _json.dumps(operation_outcome(message, status=status)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
            f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")
    try:
        from gunicorn import util

        util.write_nonblock(sock, head + body)
    except Exception:  # noqa: BLE001 - the client may be gone
        pass


class _WorkerMixin:
    """What both worker classes add to gunicorn's: arrival time into the environ, JSON errors."""

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        inner = self.wsgi  # type: ignore[has-type]
        local = self._aza_local = threading.local()

        def app(environ, start_response):
            arrived = getattr(local, "arrived", None)
            if arrived is not None:
                environ["aza.arrived"] = arrived
            return inner(environ, start_response)

        self.wsgi = app

    def handle_error(self, req, client, addr, exc) -> None:
        write_json_error(client, exc, self.log)  # type: ignore[attr-defined]


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,10})[ \t]*\r\n", re.IGNORECASE)


def _request_buffered(buf: bytearray) -> bool:
    """Whether a new connection's first request is in (head, and a body of up to BODY_BYTES
    with a Content-Length), or too long to keep waiting for in the main loop."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > HEAD_BYTES
    lengths = _CONTENT_LENGTH.findall(bytes(buf[:end + 2]))
    if len(lengths) != 1 or int(lengths[0]) > BODY_BYTES:
        return True  # no body, chunked, odd or large: the thread reads it (watchdog-bounded)
    return len(buf) >= end + 4 + int(lengths[0])


def _worker_classes():
    import selectors
    from functools import partial

    from gunicorn import http
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    from hooks.netguard import WATCHDOG

    class CdsThreadWorker(_WorkerMixin, ThreadWorker):
        def handle(self, conn):
            # A client that drips its request (headers or body) or reads its answer slowly holds
            # this thread for at most CLIENT_SECONDS: the watchdog then shuts its socket down.
            token = WATCHDOG.watch(conn.sock, time.monotonic() + CLIENT_SECONDS)
            try:
                return super().handle(conn)
            finally:
                WATCHDOG.cancel(token)

        def enqueue_req(self, conn) -> None:
            if self.cfg.is_ssl or conn.initialized or conn.parser is not None:
                conn.aza_arrived = time.monotonic()  # readable again on a kept-alive connection
                super().enqueue_req(conn)
                return
            # A new connection: its request head is collected here, in the main loop, without a
            # thread; only a complete head (or more than HEAD_BYTES) is handed to the pool, so
            # clients that drip their request line or headers cannot occupy the threads.
            conn.aza_head = bytearray()
            conn.aza_token = WATCHDOG.watch(conn.sock, time.monotonic() + CLIENT_SECONDS)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._aza_head_readable, conn))

        def _aza_head_readable(self, conn, client) -> None:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                conn.aza_head += data
                if not _request_buffered(conn.aza_head):
                    return
            self.poller.unregister(client)
            WATCHDOG.cancel(conn.aza_token)
            if not data:  # closed (or cut off by the watchdog) before a whole request head
                self.nr_conns -= 1
                conn.close()
                return
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader.unread(bytes(conn.aza_head))
            conn.data_ready = True
            conn.aza_arrived = time.monotonic()  # the request is here: its deadline starts now
            super().enqueue_req(conn)

        def handle_request(self, req, conn):
            self._aza_local.arrived = getattr(conn, "aza_arrived", None)
            try:
                return super().handle_request(req, conn)
            finally:
                self._aza_local.arrived = None

    class CdsSyncWorker(_WorkerMixin, SyncWorker):
        def handle(self, listener, client, addr):
            # as in CdsThreadWorker: a client that drips its request or reads its answer slowly holds
            # the worker's only thread for at most CLIENT_SECONDS (not until gunicorn's worker timeout)
            token = WATCHDOG.watch(client, time.monotonic() + CLIENT_SECONDS)
            try:
                return super().handle(listener, client, addr)
            finally:
                WATCHDOG.cancel(token)

        def handle_request(self, listener, req, client, addr):
            self._aza_local.arrived = time.monotonic()
            try:
                return super().handle_request(listener, req, client, addr)
            finally:
                self._aza_local.arrived = None

    return CdsThreadWorker, CdsSyncWorker


def __getattr__(name: str):  # gunicorn imports the worker class by name; build it on first use
    if name in ("CdsThreadWorker", "CdsSyncWorker"):
        thread_worker, sync_worker = _worker_classes()
        globals().update(CdsThreadWorker=thread_worker, CdsSyncWorker=sync_worker)
        return globals()[name]
    raise AttributeError(name)


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


def run_gunicorn(cfg: Config, *, host: str, port: int, workers: int, threads: int,
                 ready: Callable[[], None] | None = None) -> int:
    """Build the app here, before gunicorn starts (a configuration, trust file or database that
    fails raises from this call, for the command line to report in one line), call ``ready()``,
    then serve it: gunicorn's ``preload_app`` would build it in this same process anyway."""
    global CLIENT_SECONDS
    CLIENT_SECONDS = cfg.client_seconds  # read by the forked workers
    settings: dict[str, Any] = {}
    if cfg.metrics:  # prometheus-client's multiprocess mode: every worker's samples, added up by /metrics
        from dataclasses import replace

        from .metrics import gunicorn_hooks, prepare_multiprocess

        metrics_dir = prepare_multiprocess(cfg.metrics_dir)
        cfg = replace(cfg, metrics_dir=metrics_dir)
        settings.update(gunicorn_hooks(metrics_dir))

    from . import create_app

    app = _before_fork(create_app(cfg))
    if ready is not None:
        ready()

    def factory():
        return app

    return serve_wsgi(factory, host=host, port=port, workers=workers, threads=threads, settings=settings)


def _before_fork(app):
    """Close what must not be shared by forked workers: the feedback store's pooled database
    connections (the migration opened one). Each worker opens its own on first use."""
    store = app.extensions.get("aza_feedback_store")
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()
    prepare_worker_heap()
    return app


def app():  # pragma: no cover - for `gunicorn 'service.wsgi:app()'`
    from . import create_app

    return create_app()


def prepare_worker_heap() -> None:
    """After the app is built (before the fork with ``preload_app``): move every object that exists
    now (modules, compiled schemas and templates, knowledge tables) into the garbage collector's
    permanent generation (``gc.freeze``). A hook call allocates tens of thousands of objects (the
    parsed body); without this each full collection it triggers walks the whole start-up heap again
    (a third of the CPU of a 600 KiB call), and the walk dirties pages the workers share copy-on-write."""
    import gc

    gc.collect()
    gc.freeze()
