"""The one place that talks to an EHR's FHIR server.

- One pooled ``requests.Session`` per process (``outbound.netguard``): every URL is checked
  against the call's egress policy (the issuer's FHIR allow-list, else public addresses only)
  and every socket against the call's deadline (DNS, connect, status line, headers, body).
  Each GET goes through requests' public API: a ``requests.Request`` prepared on its own and
  sent by the session's guarded transport adapter (``HTTPAdapter.send``): no redirect is
  followed and no cookie is kept or sent (the session serves every EHR and patient of the
  process; its cookie policy accepts none in any case).
- Queries for several prefetch keys run in parallel on a shared thread pool.
- ``next`` links are followed up to a page limit, and only on the same server
  (a link elsewhere would carry the EHR's token off its server).
- Bodies are read in pieces and decompressed here as a stream: before each piece is inflated,
  its output is bounded by what is left of the response's limit and of the call's budget
  (``Deadline.bytes_left``), and never more than ``PIECE`` bytes at once, so neither a slow, a
  huge, nor a compressed (gzip bomb) answer can hold a worker past the deadline or take its
  memory: a bomb costs at most the budget, never its expansion.
- A search must answer a Bundle and a read the type asked for; an OperationOutcome,
  anything else, invalid JSON or an HTTP error status is a failure, never "no data".
- Failures become ``FhirError`` subclasses, each of one ``FhirOutcome`` category. The error
  carries the category only: the sentence a card shows is the rule catalogue's
  (``[fhir_outcomes]`` in rules/knowledge/catalogue.toml), and nothing the server sent.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

import orjson
import requests
import urllib3

from . import netguard
from .netguard import EgressPolicy

log = logging.getLogger("aza_cds.fhir")

FHIR_JSON = "application/fhir+json, application/json;q=0.9"


class FhirOutcome(str, Enum):
    """How one FHIR query ended: the only categories a card, a log line or a metric names."""

    OK = "ok"
    NOT_ALLOWED = "not-allowed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    ERROR_STATUS = "error-status"
    INVALID_RESPONSE = "invalid-response"
    TOO_LARGE = "too-large"


# Listeners called with (FhirOutcome,) once per FHIR query (metrics hook in here).
OUTCOME_LISTENERS: list[Callable[[FhirOutcome], None]] = []


def _count(outcome: FhirOutcome) -> None:
    for listener in OUTCOME_LISTENERS:
        try:
            listener(outcome)
        except Exception:  # noqa: BLE001 - a metrics bug must not fail a query
            pass


class FhirError(Exception):
    outcome = FhirOutcome.UNREACHABLE

    def __init__(self, outcome: FhirOutcome | None = None) -> None:
        if outcome is not None:
            self.outcome = outcome
        super().__init__(self.outcome.value)  # the category only; the catalogue words it for a card


class FhirNotAllowed(FhirError):
    outcome = FhirOutcome.NOT_ALLOWED


class FhirTimeout(FhirError):
    outcome = FhirOutcome.TIMEOUT


class FhirUnreachable(FhirError):
    outcome = FhirOutcome.UNREACHABLE


class FhirHttpError(FhirError):
    outcome = FhirOutcome.ERROR_STATUS

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status  # for the log's category only; never shown on a card


class FhirBadResponse(FhirError):
    outcome = FhirOutcome.INVALID_RESPONSE


class Deadline:
    """One hook call's limits: the point in time by which all its outbound work must be done,
    the bytes it may still read from FHIR servers, and where it may connect (``policy``)."""

    def __init__(self, seconds: float, *, start: float | None = None, max_bytes: int | None = None,
                 policy: EgressPolicy | None = None, max_entries: int | None = None) -> None:
        self.end = (time.monotonic() if start is None else start) + seconds
        self.bytes_left = max_bytes
        self.max_entries = max_entries  # per prefetch key (hooks.gather)
        self.policy = policy or EgressPolicy()
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, cap: float) -> tuple[float, float]:
        left = self.remaining()
        if left <= 0.005:
            raise FhirTimeout()
        return (min(left, cap), left)

    def allowance(self, cap: int) -> int:
        """How many more bytes this call may read, at most ``cap`` (checked before inflating)."""
        if self.bytes_left is None:
            return cap
        return max(min(cap, self.bytes_left), 0)

    def spend_bytes(self, n: int) -> None:
        """Count ``n`` bytes read (decompressed) against the call's budget."""
        if self.bytes_left is None:
            return
        with self._lock:
            self.bytes_left -= n
            if self.bytes_left < 0:
                raise FhirBadResponse(FhirOutcome.TOO_LARGE)


@dataclass(frozen=True)
class FhirSettings:
    deadline_seconds: float = 1.5
    connect_timeout: float = 0.5
    max_pages: int = 5
    max_bytes: int = 4 * 1024 * 1024  # one response, decompressed (docs/threats.md)
    max_call_bytes: int = 8 * 1024 * 1024  # all responses of one hook call, decompressed
    # FHIR queries in flight at once in this process: every hook call in flight (gunicorn --threads)
    # sends all its keys (8) at once; fewer pool threads would queue them. Threads start on demand.
    workers: int = 64


class FhirClient:
    def __init__(self, settings: FhirSettings = FhirSettings()) -> None:
        self.settings = settings
        self.session = netguard.guarded_session(pool_maxsize=64)
        self.adapter = self.session.get_adapter("https://")  # the same guarded adapter serves http://
        # what Session.get would send: the session's default headers (User-Agent, ...) and ours
        self.headers = {**self.session.headers, "Accept": FHIR_JSON, "Accept-Encoding": "gzip, deflate"}
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="fhir")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    # ------------------------------------------------------------ requests
    def get_json(self, url: str, token: str | None, deadline: Deadline) -> dict:
        """GET one FHIR JSON resource; every failure is a ``FhirError``, never anything else."""
        started = time.monotonic()
        outcome = FhirOutcome.OK
        try:
            data = self._get_json(url, token, deadline)
        except FhirError as exc:
            outcome = exc.outcome
            raise
        finally:
            _count(outcome)
            log.debug("fhir get", extra={"fhir_ms": round((time.monotonic() - started) * 1000, 1),
                                         "outcome": outcome.value})
        return data

    def _get_json(self, url: str, token: str | None, deadline: Deadline) -> dict:
        try:
            policy = deadline.policy.check_url(url)
        except netguard.EgressRefused:
            raise FhirNotAllowed() from None
        headers = dict(self.headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            # requests' public API: a Request prepared on its own (there is nothing of the session's to
            # merge in: no auth, params, hooks or cookies, no environment proxies) and sent by the
            # session's transport adapter (no redirect is followed, no cookie kept, so Session.send
            # would have nothing to do)
            prepared = requests.Request("GET", url, headers=headers).prepare()
            with netguard.guarded(policy, deadline.end, self.settings.connect_timeout), \
                    self.adapter.send(prepared, stream=True, timeout=deadline.timeout(self.settings.connect_timeout),
                                      verify=True, cert=None, proxies={}) as resp:
                if resp.status_code != 200:
                    raise FhirHttpError(resp.status_code)
                body = read_limited(resp, deadline, self.settings.max_bytes)
        except FhirError:
            raise
        except requests.Timeout as exc:
            raise FhirTimeout() from exc
        except (requests.ConnectionError, urllib3.exceptions.HTTPError, OSError) as exc:
            if netguard.is_refusal(exc):
                raise FhirNotAllowed() from None
            # a read timeout, or the watchdog closing the socket at the deadline, arrives as one of these
            raise (FhirTimeout() if deadline.remaining() <= 0.005 else FhirUnreachable()) from exc
        except (requests.RequestException, ValueError) as exc:  # invalid URL, bad redirect, ...
            raise FhirUnreachable() from exc
        try:
            data = _loads(body)
        except (ValueError, RecursionError) as exc:
            raise FhirBadResponse() from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirBadResponse()
        return data

    def search(self, base: str, query: str, token: str | None, deadline: Deadline) -> dict:
        """GET ``base/query``. A search (``Type?...``) must answer a Bundle, whose ``next``
        links are followed (same server, bounded); a read (``Type/id``) must answer that type.
        An OperationOutcome, or any other resource, is a ``FhirBadResponse``."""
        first = self.get_json(join_url(base, query), token, deadline)
        path = query.split("?", 1)[0].strip("/")
        expected = "Bundle" if "?" in query or "/" not in path else path.split("/", 1)[0]
        _expect(first, expected)
        return self.follow_pages(first, base, token, deadline)

    def follow_pages(self, bundle: dict, base: str, token: str | None, deadline: Deadline) -> dict:
        if bundle.get("resourceType") != "Bundle":
            return bundle
        entries = _entries(bundle)
        page, pages = bundle, 1
        while (nxt := next_link(page)) and pages < self.settings.max_pages:
            if not same_server(nxt, base):
                log.warning("fhir next link to another server ignored")
                break
            page = self.get_json(nxt, token, deadline)
            _expect(page, "Bundle")
            entries.extend(_entries(page))
            pages += 1
        merged = dict(bundle)
        merged["entry"] = entries
        merged.pop("link", None)
        if next_link(page):
            merged["_truncated"] = pages  # more pages than we read; mappers see what was read
        return merged


def _loads(body: bytes):
    """orjson for the usual UTF-8 body; the standard library for what orjson refuses (NaN, another
    encoding), so the set of bodies read is the standard library's, as before."""
    try:
        return orjson.loads(body)
    except ValueError:
        return json.loads(body, parse_constant=_no_constant)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity from a server never reaches a mapper


def _expect(resource: dict, resource_type: str) -> None:
    found = resource.get("resourceType")
    if found == resource_type:
        return
    if found == "OperationOutcome":
        raise FhirBadResponse()
    raise FhirBadResponse()


def _entries(bundle: dict) -> list:
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise FhirBadResponse()
    return list(entries)


PIECE = 64 * 1024  # bytes read from the socket, and inflated, at once
CONTAINER_COST = 64  # budget bytes one JSON object or array costs once parsed (an empty dict is 64 bytes)


def read_limited(resp: requests.Response, deadline: Deadline, max_bytes: int) -> bytes:
    """The body, read raw in pieces and decompressed here as a stream, so that neither the size
    limits nor the deadline can be outrun: before each read the socket's timeout is cut to what is
    left of the deadline (the watchdog closes it at the deadline in any case); before each piece is
    inflated, its output is bounded by what this response and the call may still read (never more
    than ``PIECE``), so a gzip bomb inflates at most the budget plus one byte, never its expansion
    and never a piece larger than what is left; every decompressed byte counts against this
    response's limit and the call's budget. Finally each JSON object and array counts
    ``CONTAINER_COST`` more against the call's budget (4 MiB of ``{},`` parse into 90 MB of dicts)."""
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise FhirBadResponse(FhirOutcome.TOO_LARGE)
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib-wrapped (the usual) or gzip
    elif encoding in ("", "identity"):
        decoder = None
    else:
        raise FhirBadResponse()  # not asked for (Accept-Encoding: gzip, deflate)
    raw = resp.raw
    chunks, size = [], 0

    def allowed() -> int:
        """Bytes this response may still yield, checked before inflating: one past the
        smaller of its own limit and the call's budget, so going over is seen, not cut."""
        return min(deadline.allowance(max_bytes - size), PIECE) + 1

    def take(piece: bytes) -> None:
        nonlocal size
        size += len(piece)
        if size > max_bytes:
            raise FhirBadResponse(FhirOutcome.TOO_LARGE)
        deadline.spend_bytes(len(piece))
        chunks.append(piece)

    try:
        while True:
            left = deadline.remaining()
            if left <= 0.005:
                raise FhirTimeout()
            _set_read_timeout(raw, left)
            chunk = raw.read1(PIECE, decode_content=False) if hasattr(raw, "read1") else raw.read(PIECE, decode_content=False)
            if not chunk:
                break
            if decoder is None:
                take(chunk)
                continue
            data = chunk
            while data:
                take(decoder.decompress(data, allowed()))
                data = decoder.unconsumed_tail
        if decoder is not None:
            # all input was consumed above, so what zlib still holds is at most one match (258 bytes)
            take(decoder.flush())
    except zlib.error:
        raise FhirBadResponse() from None
    body = b"".join(chunks)
    deadline.spend_bytes(CONTAINER_COST * (body.count(b"{") + body.count(b"[")))
    return body


def _set_read_timeout(raw, seconds: float) -> None:
    """Best effort: cut the socket timeout of a streaming urllib3 response to ``seconds``."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass


def join_url(base: str, path: str) -> str:
    """Append ``path`` to a FHIR base URL that may itself carry a path."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def next_link(bundle: dict) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def same_server(url: str, base: str) -> bool:
    try:
        a, b = urlsplit(url), urlsplit(base)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:  # e.g. a port that is not a number
        return False
