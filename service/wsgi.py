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
- Slow clients cost no thread (``CdsThreadWorker``): every request, on a new or a kept-alive
  connection, is read whole (head and body, Content-Length or chunked, up to the body limit) in
  the worker's main loop before a thread is used; an incomplete one is answered 408 after half of
  ``client_seconds``, a body cut short by the client 400, one over the limit 413. nginx in front
  (``deploy/nginx.conf``, docs/deployment.md) is the first line; this is the second.
- Logs: the app writes the access log itself, one JSON line per request
  (``service.logs``: method, route, status, latency, service, card count, rule
  ids; never a token or patient data); gunicorn's own messages (start, worker
  boot/exit, timeouts) go out in the same JSON line format on stderr.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from .config import Config

MAX_REQUESTS = 20000  # a worker is recycled after this many requests, plus up to 10 % jitter
GRACEFUL_TIMEOUT = 20  # seconds a stopping worker has to finish the calls in flight
CLIENT_SECONDS = 10.0  # the longest one request (read, answer, write) may hold a worker thread
HEAD_BYTES = 64 * 1024  # a request head this long goes to a thread (gunicorn's limits answer 414/431)
BODY_BYTES = 5 * 1024 * 1024  # largest body read (AZA_CDS_MAX_BODY_BYTES); 413 above, before it is read
READ_SECONDS = 5.0  # a request must be in whole this long after its first byte (half AZA_CDS_CLIENT_SECONDS); else 408
BUFFER_BYTES = 24 * 1024 * 1024  # all requests being read by one worker (at least one body and head); else 503
_BUFFERED = 0  # bytes held now by the requests this worker is reading (main loop only)


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
        # second line of defence only (memory is bounded by design: docs/threats.md): a worker is
        # replaced after this many requests, each at its own count so they do not restart together
        "max_requests": MAX_REQUESTS,
        "max_requests_jitter": MAX_REQUESTS // 10,
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


class _Collecting:
    """One request being read in a worker's main loop (no thread yet): the bytes so far, and an
    HTTP/1.1 parser (h11) that says when the request, head and body, is complete, whatever its
    framing (Content-Length or chunked)."""

    __slots__ = ("parser", "data", "size", "until", "continued")

    def __init__(self, until: float) -> None:
        import h11

        self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_BYTES)
        self.data: list[bytes] = []
        self.size = 0
        self.until = until  # time.monotonic() by which the whole request must be in (else 408)
        self.continued = False

    def feed(self, data: bytes) -> str:
        """Take the next bytes read (b"" at end of stream); returns "more" (wait for more),
        "complete", "too-large", "cut-off" (the stream ended inside a request), "closed" (it
        ended before one) or "unparsed" (h11 refuses it: the thread's gunicorn parser answers)."""
        import h11

        if data:
            self.data.append(data)
            self.size += len(data)
        self.parser.receive_data(data)
        while True:
            try:
                event = self.parser.next_event()
            except h11.RemoteProtocolError:
                if not data and self.parser.their_state is not h11.IDLE:
                    return "cut-off"
                return "unparsed"
            if event is h11.NEED_DATA:
                return "too-large" if self.size > HEAD_BYTES + BODY_BYTES else "more"
            if isinstance(event, h11.Request):
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > BODY_BYTES:
                    return "too-large"
                if self.parser.they_are_waiting_for_100_continue:
                    self.continued = True  # the caller sends "100 Continue": the client waits for it
            elif isinstance(event, h11.EndOfMessage):
                return "complete"
            elif isinstance(event, h11.ConnectionClosed):
                return "closed" if self.size == 0 else "cut-off"
            elif event is h11.PAUSED:
                return "complete"

    def bytes(self) -> bytes:
        return b"".join(self.data)


_ANSWERS = {400: ("Bad Request", "The request ended before its declared body (Content-Length) was sent"),
            408: ("Request Timeout", "The request was not received in time"),
            413: ("Content Too Large", "The request body is too large"),
            503: ("Service Unavailable", "The server is reading too many requests at once; retry shortly")}


def _answer_and_close(sock, status: int) -> None:
    """A short JSON OperationOutcome written without blocking, then the connection closed."""
    import json as _json

    from .errors import operation_outcome

    reason, message = _ANSWERS[status]
    body = _json.dumps(operation_outcome(message, status=status)).encode()
    extra = "Retry-After: 5\r\n" if status == 503 else ""
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
            f"Cache-Control: no-store\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    try:
        sock.send(head + body)  # a few hundred bytes: fits the socket buffer of any live connection
    except OSError:
        pass


def _worker_classes():
    import selectors
    from functools import partial

    from gunicorn import http
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    from outbound.netguard import WATCHDOG

    class CdsThreadWorker(_WorkerMixin, ThreadWorker):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._aza_collecting: set = set()  # connections whose request is being read (main loop)

        def handle(self, conn):
            # A client that drips its request (headers or body) or reads its answer slowly holds
            # this thread for at most CLIENT_SECONDS: the watchdog then shuts its socket down.
            token = WATCHDOG.watch(conn.sock, time.monotonic() + CLIENT_SECONDS)
            try:
                return super().handle(conn)
            finally:
                WATCHDOG.cancel(token)

        # -- every request is read whole in the main loop before a thread is used ----------------
        # A new connection, and a kept-alive one that becomes readable, are collected here, without
        # a thread: head and body, whatever the body's size (up to BODY_BYTES) or framing
        # (Content-Length or chunked), and an idle kept-alive connection waits in the poller as in
        # gunicorn. Only a complete request goes to the thread pool, so clients that drip a request
        # line, headers, a body or their next request occupy no thread. A request not in whole by
        # READ_SECONDS after its first byte is answered 408; a body shorter than its Content-Length
        # whose client closes is answered 400 at once; one over BODY_BYTES 413, before it is read.
        # All requests being collected by a worker hold at most BUFFER_BYTES (else 503).

        def enqueue_req(self, conn) -> None:
            if self.cfg.is_ssl or conn.is_http2:  # TLS ends at the front proxy (docs/deployment.md)
                super().enqueue_req(conn)
                return
            state = conn.aza_state = _Collecting(time.monotonic() + READ_SECONDS)
            self._aza_collecting.add(conn)
            leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._aza_readable, conn))
            if leftover:  # pipelined behind the last request: perhaps complete already
                self._aza_take(conn, state, leftover)


        def _aza_readable(self, conn, client) -> None:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            self._aza_take(conn, conn.aza_state, data)

        def _aza_take(self, conn, state: _Collecting, data: bytes) -> None:
            global _BUFFERED
            _BUFFERED += len(data)
            outcome = state.feed(data)
            if outcome == "more" and _BUFFERED > BUFFER_BYTES:
                self._aza_end(conn, 503)
                return
            if outcome == "more":
                if state.continued:
                    state.continued = False
                    try:
                        conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    except OSError:
                        pass
                return
            if outcome in ("complete", "unparsed"):
                self._aza_forget(conn)
                if conn.parser is None:
                    conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
                conn.parser.unreader.unread(state.bytes())
                conn.data_ready = True
                conn.aza_arrived = time.monotonic()  # the request is here: its deadline starts now
                super().enqueue_req(conn)
                return
            self._aza_end(conn, {"too-large": 413, "cut-off": 400}.get(outcome))

        def _aza_forget(self, conn) -> None:
            global _BUFFERED
            state = conn.__dict__.pop("aza_state", None)
            if state is not None:
                _BUFFERED -= state.size
            self._aza_collecting.discard(conn)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

        def _aza_end(self, conn, status: int | None) -> None:
            self._aza_forget(conn)
            if status is not None:
                _answer_and_close(conn.sock, status)
                self.log.warning("request refused while reading", extra={"event": "invalid-request", "status": status})
            self.nr_conns -= 1
            conn.close()

        def murder_keepalived(self, force: bool = False) -> None:
            super().murder_keepalived(force)
            now = time.monotonic()
            for conn in [c for c in self._aza_collecting if force or c.aza_state.until <= now]:
                state = conn.aza_state
                self._aza_end(conn, 408 if state.size else None)

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
    global CLIENT_SECONDS, BODY_BYTES, READ_SECONDS, BUFFER_BYTES
    CLIENT_SECONDS = cfg.client_seconds  # read by the forked workers
    BODY_BYTES = cfg.max_body_bytes
    READ_SECONDS = cfg.client_seconds / 2
    BUFFER_BYTES = max(BUFFER_BYTES, BODY_BYTES + HEAD_BYTES)
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


GC_YOUNG_THRESHOLD = 10_000


def prepare_worker_heap() -> None:
    """After the app is built (before the fork with ``preload_app``): move every object that exists
    now (modules, compiled schemas and templates, knowledge tables) into the garbage collector's
    permanent generation (``gc.freeze``). A hook call allocates tens of thousands of objects (the
    parsed body); without this each full collection it triggers walks the whole start-up heap again
    (a third of the CPU of a 600 KiB call), and the walk dirties pages the workers share copy-on-write."""
    import gc

    gc.collect()
    gc.freeze()
    # the first generation is collected after GC_YOUNG_THRESHOLD more allocations than deallocations (Python's
    # default is 700): a hook call's parsed body and facts, a few thousand container objects, all alive until the
    # answer is sent, were scanned (and found alive) about twice per call; they are now freed by their reference
    # counts before a collection comes (the collector still runs: cyclic garbage waits a little longer)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
