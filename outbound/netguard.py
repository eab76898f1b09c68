"""Outbound HTTP that an attacker cannot aim or stall: the FHIR client and the JWKS fetch use it.

This package (``outbound``) sits below both ``service`` and ``hooks`` and imports neither.

Aiming (SSRF). Every URL the service is asked to fetch comes from a caller: ``fhirServer`` and
``next`` links from the request and the EHR, a ``jku`` from the token. Before a request is sent,
``EgressPolicy.check_url`` refuses other schemes than http(s), userinfo (``user:pass@``) and,
when the issuer's trust entry names FHIR base URLs, any URL not under one of them. Then, at the
moment a socket is opened (``GuardedHTTPConnection._new_conn``, so a DNS answer that changes
between check and use changes nothing), every resolved address is checked: without an
allow-list, loopback, private (RFC 1918, CGNAT), link-local, unique-local, multicast and
reserved addresses are refused (``allow_loopback``, set by ``serve --dev``, lets loopback
through). Redirects are never followed (the callers pass ``allow_redirects=False``).

Stalling. ``guarded(policy, deadline)`` makes the deadline of the current call known to the
connections this thread opens or reuses: DNS runs on a small shared resolver pool and is waited
for only until the deadline, the connect timeout is cut to what is left, and every socket in
use is registered with one process-wide watchdog thread that shuts it down when the deadline
passes. A server that drips its status line, headers or body a byte at a time therefore cannot
hold the calling thread past the deadline (``requests``' read timeout alone is per ``recv``).
Nothing is started per request: the watchdog and the resolver pool are shared and bounded.
"""
from __future__ import annotations

import msgspec

import functools
import heapq
import ipaddress
import itertools
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from http.cookiejar import DefaultCookiePolicy
from typing import Iterator, cast
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import parse_url

RESOLVER_THREADS = 4
_ENCODED_DOTS = re.compile(r"%2e|%2f|%5c", re.IGNORECASE)


class EgressRefused(Exception):
    """The URL or address is not one this service may contact (never sent anywhere)."""


class EgressTimeout(Exception):
    """The deadline passed while resolving or connecting."""


def _normal_base(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


@functools.lru_cache(maxsize=1024)  # a pure function of a short string: the few servers' addresses repeat
def address_allowed(ip: str, *, allow_loopback: bool = False) -> bool:
    """Whether a resolved address may be contacted without an allow-list naming it."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return allow_loopback
    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_link_local or addr.is_private)


class EgressPolicy(msgspec.Struct, frozen=True):
    """Where one call may connect. ``allowed_bases``: the FHIR base URLs the issuer's trust entry
    names (empty: any public address). ``allow_loopback``: ``serve --dev`` and local trials."""

    allowed_bases: tuple[str, ...] = ()
    allow_loopback: bool = False

    def check_url(self, url: str) -> "EgressPolicy":
        """Raise ``EgressRefused`` unless ``url`` may be fetched; returns the policy for its connection."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise EgressRefused("malformed URL") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise EgressRefused("not an http(s) URL")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise EgressRefused("userinfo in URL")
        if port == 0:
            raise EgressRefused("port 0")
        if self.allowed_bases:
            if _ENCODED_DOTS.search(parts.path) or "\\" in parts.path:
                raise EgressRefused("encoded dot segments or backslashes in the path")
            scheme, host, port_n, _ = _normal_base(url)
            path = (parse_url(url).path or "").rstrip("/")  # dot segments removed, as urllib3 sends it
            for base in self.allowed_bases:
                b_scheme, b_host, b_port, b_path = _normal_base(base)
                if (scheme, host, port_n) == (b_scheme, b_host, b_port) and (
                        path == b_path or path.startswith(b_path + "/")):
                    return EgressPolicy(allowed_bases=(base,), allow_loopback=True)  # named by the admin
            raise EgressRefused("not on the issuer's FHIR allow-list")
        literal = _ip_literal(parts.hostname)
        if literal is None:
            return self  # a name: its addresses are checked when the socket is opened
        if not address_allowed(literal, allow_loopback=self.allow_loopback):
            raise EgressRefused("address not allowed")
        return self

    def check_address(self, ip: str) -> bool:
        return bool(self.allowed_bases) or address_allowed(ip, allow_loopback=self.allow_loopback)


@functools.lru_cache(maxsize=1024)
def _ip_literal(host: str) -> str | None:
    """The address a URL's host names literally (``127.0.0.1``, ``[::1]``), else None (a name)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


# ------------------------------------------------------------------ per-call context

class _Context:
    def __init__(self, policy: EgressPolicy, end: float, connect_timeout: float) -> None:
        self.policy = policy
        self.end = end
        self.connect_timeout = connect_timeout
        self.watched: list[int] = []

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        self.watched.append(WATCHDOG.watch(sock, self.end))


_local = threading.local()


@contextmanager
def guarded(policy: EgressPolicy, end: float, connect_timeout: float = 1.0) -> Iterator[None]:
    """Connections opened or reused by this thread inside the block obey ``policy`` and end at
    ``end`` (a ``time.monotonic()`` value)."""
    previous = getattr(_local, "ctx", None)
    ctx = _local.ctx = _Context(policy, end, connect_timeout)
    try:
        yield
    finally:
        _local.ctx = previous
        for token in ctx.watched:
            WATCHDOG.cancel(token)


def _current() -> _Context | None:
    return getattr(_local, "ctx", None)


# ------------------------------------------------------------------ watchdog

class _Watchdog:
    """One thread per process: shuts down sockets whose call's deadline has passed."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._socks: dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def watch(self, sock: socket.socket, end: float) -> int:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._heap, self._socks = [], {}
                self._thread = threading.Thread(target=self._run, name="net-watchdog", daemon=True)
                self._thread.start()
            token = next(self._ids)
            self._socks[token] = sock
            if not self._heap or end < self._heap[0][0]:
                self._lock.notify()  # the watchdog sleeps until the earliest end: wake it only for an earlier one
            heapq.heappush(self._heap, (end, token))
            return token

    def cancel(self, token: int) -> None:
        with self._lock:
            self._socks.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap:
                    self._lock.wait()
                end, token = self._heap[0]
                delay = end - time.monotonic()
                if delay > 0:
                    self._lock.wait(delay)
                    continue
                heapq.heappop(self._heap)
                sock = self._socks.pop(token, None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv/send
                except OSError:
                    pass


WATCHDOG = _Watchdog()
_RESOLVER = ThreadPoolExecutor(max_workers=RESOLVER_THREADS, thread_name_prefix="dns")


def resolve(host: str, port: int, ctx: _Context) -> list[tuple]:
    """getaddrinfo, waited for only until the call's deadline."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except ValueError:
        pass
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        return future.result(timeout=max(ctx.remaining(), 0.0))
    except FutureTimeout:
        future.cancel()
        raise EgressTimeout("DNS did not answer in time") from None


# ------------------------------------------------------------------ urllib3 plumbing

class _GuardedMixin:
    def _conn(self) -> HTTPConnection:
        return cast(HTTPConnection, self)  # mixed into HTTPConnection / HTTPSConnection only

    def _new_conn(self) -> socket.socket:
        ctx = _current()
        if ctx is None:  # fail closed: these pools are only for guarded calls
            raise NewConnectionError(self._conn(), "outbound connection outside a guarded call")
        try:
            infos = resolve(self._dns_host, self.port, ctx)  # type: ignore[attr-defined]
        except OSError as exc:
            raise NewConnectionError(self._conn(), f"name resolution failed ({type(exc).__name__})") from None
        except EgressTimeout:
            raise ConnectTimeoutError(self, "DNS timed out") from None
        addresses = [info for info in infos if ctx.policy.check_address(info[4][0])]
        if not addresses:
            raise EgressRefusedError(self._conn(), "address not allowed")
        last: Exception | None = None
        for family, type_, proto, _, sockaddr in addresses:
            left = ctx.remaining()
            if left <= 0:
                raise ConnectTimeoutError(self, "deadline passed while connecting")
            sock = socket.socket(family, type_, proto)
            try:
                sock.settimeout(min(left, ctx.connect_timeout))
                for opt in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*opt)
                sock.connect(sockaddr)
                sock.settimeout(max(ctx.remaining(), 0.001))
                ctx.watch(sock)
                return sock
            except socket.timeout:
                sock.close()
                last = ConnectTimeoutError(self, "connect timed out")
            except OSError as exc:
                sock.close()
                last = NewConnectionError(self._conn(), f"connect failed ({type(exc).__name__})")
        raise last  # type: ignore[misc]

    def request(self, *args, **kwargs):
        """A reused keep-alive socket is watched too, and checked against this call's policy
        (a connection another issuer's allow-list opened must not serve a call without it)."""
        ctx = _current()
        sock = getattr(self, "sock", None)
        if ctx is not None and sock is not None:
            try:
                peer = sock.getpeername()[0]
            except OSError:
                peer = ""
            if not ctx.policy.check_address(peer):
                self.close()  # type: ignore[attr-defined]
                raise EgressRefusedError(self._conn(), "address not allowed")
            ctx.watch(sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class EgressRefusedError(NewConnectionError):
    """urllib3's view of a refused address (subclass, so callers can tell it from a dead port)."""


class GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests transport adapter whose connections go through the checks above: its pool
    manager (``init_poolmanager``, the hook requests documents for custom adapters) builds
    guarded pools. Everything else is ``HTTPAdapter``'s own."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


def guarded_session(pool_maxsize: int = 16):
    """A ``requests.Session`` whose every connection is guarded, that never uses an environment
    proxy and keeps no cookie (it serves every EHR and patient of the process: a cookie one
    server set must never go out with another caller's query)."""
    import requests

    session = requests.Session()
    adapter = GuardedAdapter(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # never through an environment proxy
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # accept no cookie from anyone
    return session


def is_refusal(exc: BaseException | None) -> bool:
    """Whether an exception raised by requests/urllib3 is this module refusing an address."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (EgressRefused, EgressRefusedError)):
            return True
        nxt = getattr(exc, "reason", None)
        if isinstance(nxt, BaseException):
            exc = nxt
            continue
        args = getattr(exc, "args", ())
        exc = next((a for a in args if isinstance(a, BaseException)), None) or exc.__cause__ or exc.__context__
    return False
