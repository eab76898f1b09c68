"""Lenient readers for FHIR JSON as real systems send it.

Real payloads mix versions (STU3 ``related``, DSTU2 ``category`` objects,
strings where R4 has CodeableConcepts). These helpers read what is there and
return empty values for what is not, so mappers stay short; they never raise
on odd shapes.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache, wraps
from typing import Any, Callable, Iterator, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

# a cache key longer than this is computed and never kept: a request may carry megabytes of free text
SHORT_KEY = 256


def short_key_cache(maxsize: int) -> Callable[[_F], _F]:
    """``lru_cache(maxsize)`` for a pure function of short strings (units, dates, names, result texts that
    repeat from patient to patient). A call whose string arguments are longer than ``SHORT_KEY`` is computed
    and not kept, so the cache's size is bounded in bytes as well as entries."""
    def decorate(fn: _F) -> _F:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(*args: Any) -> Any:
            for a in args:  # a plain loop: this runs for every date and unit of every resource
                if type(a) is str and len(a) > SHORT_KEY:
                    return fn(*args)
            return cached(*args)

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]
    return decorate


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def codings(concept: Any) -> list[dict]:
    """Codings of a CodeableConcept (or a Coding, or a list of either)."""
    # fast path for the usual shape, one CodeableConcept (this runs for every code of every resource)
    if concept is None:
        return []
    if type(concept) is dict:
        if "coding" in concept:
            coding = concept["coding"]
            if type(coding) is list:
                return [x for x in coding if isinstance(x, dict)]
            return [coding] if isinstance(coding, dict) else []
        return [concept] if "code" in concept else []
    out: list[dict] = []
    for c in as_list(concept):
        if not isinstance(c, dict):
            continue
        if "coding" in c:
            out.extend(x for x in as_list(c["coding"]) if isinstance(x, dict))
        elif "code" in c:
            out.append(c)
    return out


def code_keys(concept: Any) -> set[str]:
    """``system|code`` for every coding (system may be empty)."""
    keys = set()
    for c in codings(concept):
        code = c.get("code")
        if isinstance(code, (str, int)):
            keys.add(f"{c.get('system') or ''}|{code}")
    return keys


def codes_in(concept: Any, system: str) -> set[str]:
    return {str(c["code"]) for c in codings(concept) if c.get("system") == system and c.get("code") is not None}


def concept_text(concept: Any) -> str:
    """Best human text of a CodeableConcept: its text, else the first display."""
    for c in as_list(concept):
        if isinstance(c, str):
            return c
        if isinstance(c, dict) and isinstance(c.get("text"), str):
            return c["text"]
    for c in codings(concept):
        if isinstance(c.get("display"), str):
            return c["display"]
    return ""


def all_text(concept: Any) -> str:
    """Text and every display of a concept, joined: for name matching."""
    parts = []
    for c in as_list(concept):
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, dict) and isinstance(c.get("text"), str):
            parts.append(c["text"])
    parts += [c["display"] for c in codings(concept) if isinstance(c.get("display"), str)]
    return " | ".join(parts)


_INF = float("inf")


def number(value: Any) -> float | None:
    if type(value) is float:  # fast path: most values
        return value if value == value and value != _INF and value != -_INF else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and abs(value) != _INF else None
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if f == f and abs(f) != _INF else None
    return None


def parse_datetime(value: Any) -> datetime | None:
    """FHIR date / dateTime / instant → aware datetime (dates at 00:00 UTC)."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_datetime(str(value))  # str(): a str subclass is not a cache key of its own


@short_key_cache(4096)  # the results of one blood draw share their time; datetimes are immutable
def _parse_datetime(value: str) -> datetime | None:
    s = value.strip()
    try:
        if len(s) == 4:
            return datetime(int(s), 1, 1, tzinfo=timezone.utc)
        if len(s) == 7:
            return datetime(int(s[:4]), int(s[5:7]), 1, tzinfo=timezone.utc)
        if len(s) == 10:
            return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_date(value: Any) -> date | None:
    dt = parse_datetime(value)
    return dt.date() if dt else None


def effective_time(resource: dict) -> datetime | None:
    for key in ("effectiveDateTime", "effectiveInstant", "issued"):
        dt = parse_datetime(resource.get(key))
        if dt:
            return dt
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return parse_datetime(period.get("end")) or parse_datetime(period.get("start"))
    return None


def ref_of(resource: dict) -> str:
    rid = resource.get("id")
    rtype = resource.get("resourceType")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid and isinstance(rtype, str) else ""


def resources_of(value: Any, resource_type: str | None = None) -> Iterator[dict]:
    """Resources in a Bundle (entries), a list, or a single resource.

    Contained resources are not expanded here; OperationOutcome entries
    (search warnings) are skipped.
    """
    # one list comprehension, not a generator: this walks every entry of every prefetch value several times
    # per call; the resources are picked when called (a later change to ``value`` is not seen)
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            items = [e.get("resource") for e in as_list(value.get("entry")) if isinstance(e, dict)]
        else:
            items = [value]
    elif isinstance(value, list):
        items = value
    else:
        return iter(())
    if resource_type is None:
        return iter([r for r in items if isinstance(r, dict) and r.get("resourceType") != "OperationOutcome"])
    if resource_type == "OperationOutcome":  # search warnings are never resources of the answer
        return iter(())
    return iter([r for r in items if isinstance(r, dict) and r.get("resourceType") == resource_type])
