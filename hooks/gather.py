"""Gathering the data a hook call needs: prefetch first, else the FHIR server.

Per key: a prefetched value is used as is when it has the shape the FHIR-server
path would accept for that key (``prefetch_usable``: a search key a Bundle whose
``entry`` is absent or a list, ``patient`` a Patient); anything else (an
OperationOutcome, null, a malformed value) counts as absent. An absent key is
fetched from ``fhirServer`` with the EHR's token; all fetches run in parallel
within one deadline. A key that cannot be had is ``None`` in the result and
named in a ``DataGap``; a *required* key that cannot even be asked for (no FHIR
server) raises ``PreconditionFailed``.
"""
from __future__ import annotations

import msgspec

import logging
import re
import time
from concurrent.futures import TimeoutError as FutureTimeout
from collections.abc import Mapping
from typing import Any

from .wording import group_label, phrase
from fhir_mappers.facts import DataGap

from .errors import PreconditionFailed
from outbound.fhir_client import Deadline, FhirClient, FhirError, FhirTimeout, join_url
from .prefetch import render

log = logging.getLogger("aza_cds.gather")


class FhirAccess(msgspec.Struct, frozen=True):
    server: str | None
    token: str | None


def usable(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str) \
        and value["resourceType"] != "OperationOutcome"


def expected_type(template: str) -> str:
    """The resourceType a key's query answers, as ``FhirClient.search`` expects it: a search
    (``Type?...`` or a bare type) a Bundle, a read (``Type/id``) that type."""
    path = template.split("?", 1)[0].strip("/")
    return "Bundle" if "?" in template or "/" not in path else path.split("/", 1)[0]


def prefetch_usable(value: Any, template: str) -> bool:
    """A prefetched value passes the same shape checks as a fetched one (``fhir_client._expect`` /
    ``_entries``); one that does not is treated as not prefetched, never read as "no data"."""
    if not usable(value):
        return False
    expected = expected_type(template)
    if value["resourceType"] != expected:
        return False
    return expected != "Bundle" or value.get("entry") is None or isinstance(value["entry"], list)


def gather(
    client: FhirClient,
    access: FhirAccess,
    templates: dict[str, str],
    required: frozenset[str],
    context: dict,
    prefetch: Mapping,
    deadline: Deadline,
    optional: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[DataGap]]:
    """``optional``: keys that, when neither prefetched nor fetchable, are left out without a gap
    (``OnMissing.OPTIONAL``); a failed fetch of one is a gap like any other."""
    data: dict[str, Any] = {}
    gaps: list[DataGap] = []
    queries: dict[str, str] = {}
    cannot_ask: list[str] = []
    for key, template in templates.items():
        value = prefetch.get(key)
        if prefetch_usable(value, template):
            data[key] = _capped(key, value, deadline, gaps)
            continue
        query = render(template, context)
        if access.server and query:
            queries[key] = query
        elif key in optional:
            pass  # not a gap: it only adds results when they exist (absent, not "unavailable")
        else:
            data[key] = None
            cannot_ask.append(key)
        if value is not None:  # sent, but not in a shape that can be read: as if it were not sent
            log.info("prefetch value malformed", extra={"prefetch_key": key})
    missing_required = sorted(k for k in cannot_ask if k in required)
    if missing_required:
        raise PreconditionFailed(
            "Required data is neither prefetched nor fetchable (no fhirServer): " + ", ".join(missing_required),
            field="prefetch." + missing_required[0],
        )
    if cannot_ask:
        why = phrase("not_prefetched_no_server")
        gaps.extend(DataGap(group_label(k), why, k) for k in cannot_ask)

    server = access.server or ""  # queries exist only when there is a server to ask
    futures = {key: client.pool.submit(client.search, server, q, access.token, deadline)
               for key, q in queries.items()}
    wait_until = _wait_until(deadline)
    for key, future in futures.items():
        label = group_label(key)
        try:
            value = future.result(timeout=max(wait_until - time.monotonic(), 0))
        except (FhirError, FutureTimeout) as exc:
            future.cancel()
            failure = exc if isinstance(exc, FhirError) else FhirTimeout()
            data[key] = None
            gaps.append(DataGap(label, "", key, outcome=failure.outcome.value))  # worded by the catalogue
            log.info("fhir fetch failed", extra={"prefetch_key": key, "outcome": getattr(exc, "outcome", FhirTimeout.outcome).value})
            continue
        except Exception as exc:  # a bug must not turn into a silent pass or a 500
            data[key] = None
            gaps.append(DataGap(label, "", key, outcome=FhirError.outcome.value))
            log.error("fhir fetch raised", extra={"prefetch_key": key, "error": type(exc).__name__})
            continue
        pages = value.get("_truncated") if isinstance(value, dict) else None
        if pages:
            if "_sort=" in templates[key]:
                # newest first: what was read is the part that matters; say the rest was not read
                gaps.append(DataGap(phrase("beyond_pages_what", label=label, pages=pages), phrase("beyond_pages_why"),
                                    key))
            else:
                # unsorted: a result that matters may be on a page that was not read
                value = None
                gaps.append(DataGap(label, phrase("too_many_pages_why", pages=pages), key))
            log.info("fhir paging truncated", extra={"prefetch_key": key})
        data[key] = _capped(key, value, deadline, gaps)
    return data, gaps


def _capped(key: str, value: Any, deadline: Deadline, gaps: list[DataGap]) -> Any:
    """At most ``deadline.max_entries`` entries of one key's Bundle are read (the work of a call
    stays bounded); a record cut short says so in a card, it is never silently shortened."""
    cap = getattr(deadline, "max_entries", None)
    entries = value.get("entry") if isinstance(value, dict) else None
    if cap is None or not isinstance(entries, list) or len(entries) <= cap:
        return value
    label = group_label(key)
    # worded by the catalogue (rule record-truncated) from the counts; what/why for logs and plain readers
    gaps.append(DataGap(phrase("truncated_what", label=label), phrase("truncated_why", entries=len(entries), read=cap), key,
                        truncated_from=len(entries), truncated_to=cap))
    log.info("prefetch key truncated", extra={"prefetch_key": key})
    return {**value, "entry": entries[:cap]}


def _wait_until(deadline: Deadline) -> float:
    """One end for all the waits of a call (waiting for each future in turn with its own grace
    period would add those periods up past the deadline)."""
    return time.monotonic() + max(deadline.remaining(), 0) + 0.05


_REFERENCE = re.compile(r"^[A-Za-z]{1,64}/(?!\.+$)[A-Za-z0-9\-.]{1,64}$")  # Type/id (FHIR id syntax), never "." or ".."


def fetch_references(client: FhirClient, access: FhirAccess, refs: list[str], deadline: Deadline) -> dict[str, dict]:
    """Read resources by relative reference (e.g. ``Medication/123``), in parallel; failures are skipped."""
    refs = [r for r in refs if isinstance(r, str) and _REFERENCE.match(r)]
    if not access.server or not refs:
        return {}
    futures = {ref: client.pool.submit(client.get_json, join_url(access.server, ref), access.token, deadline) for ref in refs}
    out = {}
    wait_until = _wait_until(deadline)
    for ref, future in futures.items():
        try:
            resource = future.result(timeout=max(wait_until - time.monotonic(), 0))
        except (FhirError, FutureTimeout):
            continue
        except Exception as exc:
            log.error("fhir read raised", extra={"error": type(exc).__name__})
            continue
        if usable(resource) and resource.get("resourceType") == ref.split("/", 1)[0]:
            out[ref] = resource
    return out
