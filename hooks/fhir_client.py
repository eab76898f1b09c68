"""The one place that talks to an EHR's FHIR server.

- One pooled ``requests.Session`` per process; every call has a timeout that
  fits inside the per-request ``Deadline``.
- Queries for several prefetch keys run in parallel on a shared thread pool.
- ``next`` links are followed up to a page limit, and only on the same server
  (a link elsewhere would carry the EHR's token off its server).
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
    workers: int = 8


class FhirClient:
    def __init__(self, settings: FhirSettings = FhirSettings()) -> None:
        self.settings = settings
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = False  # never route EHR traffic through an environment proxy
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="fhir")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    # ------------------------------------------------------------ requests
    def get_json(self, url: str, token: str | None, deadline: Deadline) -> dict:
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
        except requests.Timeout as exc:
            raise FhirTimeout() from exc
        except requests.ConnectionError as exc:
            raise (FhirTimeout() if deadline.remaining() <= 0 else FhirUnreachable()) from exc
        except requests.RequestException as exc:
            raise FhirUnreachable() from exc
        finally:
            log.debug("fhir get", extra={"fhir_ms": round((time.monotonic() - started) * 1000, 1)})
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise FhirBadResponse() from exc
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirBadResponse()
        return data

    def _read_limited(self, resp: requests.Response, deadline: Deadline) -> bytes:
        chunks, size = [], 0
        for chunk in resp.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise FhirBadResponse("the EHR's FHIR server sent a response too large to read")
            if deadline.remaining() <= 0:
                raise FhirTimeout()
            chunks.append(chunk)
        return b"".join(chunks)

    def search(self, base: str, query: str, token: str | None, deadline: Deadline) -> dict:
        """GET ``base/query``; for a searchset, follow ``next`` links (same server, bounded)."""
        first = self.get_json(join_url(base, query), token, deadline)
        return self.follow_pages(first, base, token, deadline)

    def follow_pages(self, bundle: dict, base: str, token: str | None, deadline: Deadline) -> dict:
        if bundle.get("resourceType") != "Bundle":
            return bundle
        entries = list(bundle.get("entry") or [])
        page, pages = bundle, 1
        while (nxt := next_link(page)) and pages < self.settings.max_pages:
            if not same_server(nxt, base):
                log.warning("fhir next link to another server ignored")
                break
            page = self.get_json(nxt, token, deadline)
            if page.get("resourceType") != "Bundle":
                raise FhirBadResponse()
            entries.extend(page.get("entry") or [])
            pages += 1
        merged = dict(bundle)
        merged["entry"] = entries
        merged.pop("link", None)
        if next_link(page):
            merged["_truncated"] = True  # more pages than we read; mappers see what was read
        return merged


def join_url(base: str, path: str) -> str:
    """Append ``path`` to a FHIR base URL that may itself carry a path."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def same_server(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
