"""The one place that talks to an EHR's FHIR server.

- One pooled ``requests.Session`` per process; every call has a timeout that
  fits inside the per-request ``Deadline``.
- Queries for several prefetch keys run in parallel on a shared thread pool.
- ``next`` links are followed up to a page limit, and only on the same server
  (a link elsewhere would carry the EHR's token off its server).
- Bodies are read in pieces against the deadline and a size limit, so neither a slow
  nor a huge answer can hold a worker past the deadline.
- A search must answer a Bundle and a read the type asked for; an OperationOutcome,
  anything else, invalid JSON or an HTTP error status is a failure, never "no data".
- Failures become ``FhirError`` subclasses whose ``reason`` is written for a
  clinician ("the EHR's FHIR server did not answer in time").
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

log = logging.getLogger("aza_cds.fhir")

FHIR_JSON = "application/fhir+json, application/json;q=0.9"


class FhirError(Exception):
    reason = "the EHR's FHIR server could not be queried"

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or self.reason)
        if reason:
            self.reason = reason


class FhirTimeout(FhirError):
    reason = "the EHR's FHIR server did not answer in time"


class FhirUnreachable(FhirError):
    reason = "the EHR's FHIR server could not be reached"


class FhirHttpError(FhirError):
    def __init__(self, status: int) -> None:
        what = {401: "refused the access token", 403: "denied access", 404: "did not find it",
                429: "is rate-limiting requests"}.get(status, "answered with an error")
        super().__init__(f"the EHR's FHIR server {what} (HTTP {status})")
        self.status = status


class FhirBadResponse(FhirError):
    reason = "the EHR's FHIR server answered with something that is not a FHIR resource"


class Deadline:
    """A point in time by which all FHIR work for one hook call must be done."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, cap: float) -> tuple[float, float]:
        left = self.remaining()
        if left <= 0.005:
            raise FhirTimeout()
        return (min(left, cap), left)


@dataclass(frozen=True)
class FhirSettings:
    deadline_seconds: float = 1.5
    connect_timeout: float = 0.5
    max_pages: int = 5
    max_bytes: int = 20 * 1024 * 1024
    # FHIR queries in flight at once in this process: every hook call in flight (gunicorn --threads)
    # sends all its keys (8) at once; fewer pool threads would queue them. Threads start on demand.
    workers: int = 64


class FhirClient:
    def __init__(self, settings: FhirSettings = FhirSettings()) -> None:
        self.settings = settings
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = False  # never route EHR traffic through an environment proxy
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="fhir")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    # ------------------------------------------------------------ requests
    def get_json(self, url: str, token: str | None, deadline: Deadline) -> dict:
        """GET one FHIR JSON resource; every failure is a ``FhirError``, never anything else."""
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            with self.session.get(url, headers=headers, timeout=deadline.timeout(self.settings.connect_timeout),
                                  stream=True, allow_redirects=False) as resp:
                if resp.status_code != 200:
                    raise FhirHttpError(resp.status_code)
                body = self._read_limited(resp, deadline)
        except FhirError:
            raise
        except requests.Timeout as exc:
            raise FhirTimeout() from exc
        except (requests.ConnectionError, urllib3.exceptions.HTTPError, OSError) as exc:
            # a read timeout while streaming the body arrives as one of these
            raise (FhirTimeout() if deadline.remaining() <= 0.005 else FhirUnreachable()) from exc
        except (requests.RequestException, ValueError) as exc:  # invalid URL, bad redirect, ...
            raise FhirUnreachable() from exc
        finally:
            log.debug("fhir get", extra={"fhir_ms": round((time.monotonic() - started) * 1000, 1)})
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise FhirBadResponse() from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirBadResponse()
        return data

    def _read_limited(self, resp: requests.Response, deadline: Deadline) -> bytes:
        """The body, read in pieces so that neither the size limit nor the deadline can be outrun.

        ``read1`` returns as soon as some bytes arrive, and before each read the socket's
        timeout is cut to what is left of the deadline: a server that sends slowly, a byte
        at a time, cannot keep this thread past the deadline."""
        declared = resp.headers.get("Content-Length", "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > self.settings.max_bytes:
            raise FhirBadResponse(TOO_LARGE)
        raw = resp.raw
        chunks, size = [], 0
        while True:
            left = deadline.remaining()
            if left <= 0.005:
                raise FhirTimeout()
            _set_read_timeout(raw, left)
            chunk = raw.read1(65536, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise FhirBadResponse(TOO_LARGE)
            chunks.append(chunk)
        return b"".join(chunks)

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


TOO_LARGE = "the EHR's FHIR server sent a response too large to read"


def _expect(resource: dict, resource_type: str) -> None:
    found = resource.get("resourceType")
    if found == resource_type:
        return
    if found == "OperationOutcome":
        raise FhirBadResponse("the EHR's FHIR server answered with an error message (OperationOutcome) instead of data")
    shown = found if isinstance(found, str) and found.isalnum() and len(found) <= 40 else "non-FHIR object"
    raise FhirBadResponse(f"the EHR's FHIR server answered with a {shown} where a {resource_type} was expected")


def _entries(bundle: dict) -> list:
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise FhirBadResponse("the EHR's FHIR server answered with a malformed Bundle")
    return list(entries)


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
