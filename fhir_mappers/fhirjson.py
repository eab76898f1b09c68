"""Lenient readers for FHIR JSON as real systems send it.

Real payloads mix versions (STU3 ``related``, DSTU2 ``category`` objects,
strings where R4 has CodeableConcepts). These helpers read what is there and
return empty values for what is not, so mappers stay short; they never raise
on odd shapes.
"""
from __future__ import annotations

from contextvars import ContextVar
from datetime import date, datetime, timezone
from functools import wraps
from typing import Any, Callable, Iterator, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

# a memo key longer than this is computed and never kept: a request may carry megabytes of free text
SHORT_KEY = 256
# at most this many values per memoised function in one call (a call with more distinct dates or names
# computes the rest each time)
MEMO_ENTRIES = 4096

# the memos of the call being mapped (``one_call``): one dict per memoised function; None outside a call
_CALL: ContextVar[dict | None] = ContextVar("fhir_mappers_call", default=None)
_MISSING = object()


class one_call:
    """The scope of one hook call's mapping: ``call_memo`` functions remember their answers inside it and
    forget them when it ends (issue 20: nothing read from one patient's record - dates, drug names, units,
    result texts - is kept for the next). Nested scopes share the outer one's memos."""

    __slots__ = ("_token",)

    def __enter__(self) -> "one_call":
        self._token = _CALL.set({}) if _CALL.get() is None else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CALL.reset(self._token)
            self._token = None


def call_memo(fn: _F) -> _F:
    """Memo of a pure function of one string, for the current call only (``one_call``; outside a call every
    call computes). Bounded: keys up to ``SHORT_KEY`` characters, ``MEMO_ENTRIES`` entries per function."""
    @wraps(fn)
    def call(arg: Any) -> Any:
        memo = _CALL.get()
        if memo is None or type(arg) is not str or len(arg) > SHORT_KEY:
            return fn(arg)
        table = memo.get(call)
        if table is None:
            table = memo[call] = {}
        found = table.get(arg, _MISSING)
        if found is _MISSING:
            found = fn(arg)
            if len(table) < MEMO_ENTRIES:
                table[arg] = found
        return found

    return call  # type: ignore[return-value]


# Round-20 m4: the longest value as sent that a card's detail quotes. A laboratory's comment in place of a number
# ("Unable to report automated absolute neutrophil count ...; manual differential to follow; clinician notified")
# carries its actionable part at the end: it is quoted whole up to this bound (still bounded against hostile input).
SENT_LIMIT = 200


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, for quoting what was sent: a longer text is cut at its last blank
    within the limit (when one lies in the limit's second half) and ends with "…", so that a quote never stops
    mid-word without saying it was shortened (round-19 m12: "'PLATELET CLUMPS PRESENT - UNABLE TO COUN'")."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    blank = cut.rfind(" ")
    if text[limit - 1] != " " and blank >= limit // 2:  # mid-word: back to the word's start
        cut = cut[:blank]
    return cut.rstrip(" -,;:") + "…"


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def codings(concept: Any) -> list[dict]:
    """Codings of a CodeableConcept (or a Coding, or a list of either)."""
    # fast path for the usual shape, one CodeableConcept (this runs for every code of every resource)
    if type(concept) is dict:
        coding = concept.get("coding", _MISSING)
        if type(coding) is list:
            if len(coding) == 1:  # most concepts carry one coding: no comprehension to set up
                first = coding[0]
                return [first] if isinstance(first, dict) else []
            return [x for x in coding if isinstance(x, dict)]
        if coding is _MISSING:
            return [concept] if "code" in concept else []
        return [coding] if isinstance(coding, dict) else []
    if concept is None:
        return []
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
    kind = type(value)
    if kind is float:  # fast path: most values. x - x is 0.0 for a finite x, NaN for NaN and for either infinity
        return value if value - value == 0.0 else None
    if kind is int:  # a JSON integer (bool is not int here)
        return float(value)
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
    """FHIR date / dateTime / instant → aware datetime (dates at 00:00 UTC).

    Not memoised: a call's dates are mostly distinct (each result its own time), and a look-up in the call's
    memo costs more than the parse (``datetime.fromisoformat`` in C)."""
    if not isinstance(value, str) or not value:
        return None
    s = value.strip()
    n = len(s)
    try:
        if n > 10:  # the usual shape: a dateTime or instant
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        elif n == 10:
            return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)
        elif n == 4:
            return datetime(int(s), 1, 1, tzinfo=timezone.utc)
        elif n == 7:
            return datetime(int(s[:4]), int(s[5:7]), 1, tzinfo=timezone.utc)
        else:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_date(value: Any) -> date | None:
    dt = parse_datetime(value)
    return dt.date() if dt else None


def effective_time(resource: dict) -> datetime | None:
    """When a result was taken: effectiveDateTime, effectiveInstant, issued, else the effectivePeriod's end or
    start (read once per resource: the mapper keeps what it returns)."""
    value = resource.get("effectiveDateTime")
    if value is not None and (dt := parse_datetime(value)):  # the usual shape: the first key read, directly
        return dt
    for key in ("effectiveInstant", "issued"):
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
    if resource_type is None:
        return iter(resource_list(value))
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            items = [e.get("resource") for e in as_list(value.get("entry")) if isinstance(e, dict)]
        else:
            items = [value]
    elif isinstance(value, list):
        items = value
    else:
        return iter(())
    if resource_type == "OperationOutcome":  # search warnings are never resources of the answer
        return iter(())
    return iter([r for r in items if isinstance(r, dict) and r.get("resourceType") == resource_type])


def resource_list(value: Any) -> list[dict]:
    """``list(resources_of(value))``: a new list, read once."""
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            entries = value.get("entry")
            if type(entries) is list:  # the usual shape: each entry's resource, picked in one pass
                return [r for e in entries if isinstance(e, dict) and isinstance(r := e.get("resource"), dict)
                        and r.get("resourceType") != "OperationOutcome"]
            items = [e.get("resource") for e in as_list(entries) if isinstance(e, dict)]
        else:
            items = [value]
    elif isinstance(value, list):
        items = value
    else:
        return []
    return [r for r in items if isinstance(r, dict) and r.get("resourceType") != "OperationOutcome"]
