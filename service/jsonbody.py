"""Reading a request body as JSON, fast: the hot path of every hook call.

A hook call with full prefetch is 50-700 KiB of JSON. Two things used to cost
more than all the clinical work together:

- parsing: ``orjson`` (when installed) parses about twice as fast as the
  standard library. What it refuses and the standard library accepts
  (lone surrogates: real EHRs send them, and this service reads them
  leniently) goes to ``json.loads``. ``NaN``, ``Infinity`` and ``-Infinity`` are
  not JSON (RFC 8259) and a weight or dose of NaN must never reach a rule: both
  parsers refuse them (400). Without orjson, ``json.loads``.
- the nesting-depth limit: walking the parsed tree visits every value
  (about 1 ms for 100 KiB). ``nested_deeper_than`` reads the raw bytes
  instead, with a few C-speed passes (see its docstring) and falls back to the
  walk only for bodies that are not UTF-8.
"""
from __future__ import annotations

import json
from typing import Any

try:  # optional accelerator; same results for valid JSON
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

JSON_PARSER = "orjson" if _orjson is not None else "json"

MAX_CONTAINERS = 100_000  # objects and arrays in one request body (413 above, before parsing: docs/threats.md)
_KEEP_ONLY_BRACKETS_AND_QUOTES = bytes(c for c in range(256) if c not in b'"[]{}')
_TO_BRACES = bytes.maketrans(b"[]", b"{}")


def loads(raw: bytes) -> Any:
    """Parse JSON; raises ValueError (or RecursionError) for anything that is not JSON, and
    ``ApiError(413)`` before parsing a body with more than ``MAX_CONTAINERS`` objects and
    arrays (``too_many_containers``)."""
    limit = _container_limit()
    if limit is not None and too_many_containers(raw, limit):
        raise_too_many_containers(limit)
    return parse(raw)


def parse(raw: bytes) -> Any:
    """Parse JSON (no limits: ``loads`` applies them); raises ValueError (or RecursionError) for anything
    that is not JSON."""
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except ValueError:
            pass  # not JSON to orjson; maybe still to the standard library (lone surrogates)
    return json.loads(raw, parse_constant=_refuse_constant)


def raise_too_many_containers(limit: int) -> None:
    from .errors import ApiError

    raise ApiError(413, f"The JSON body has more than {limit} objects and arrays")


def containers(raw: bytes) -> int:
    """An upper bound of the JSON objects and arrays in ``raw`` (see ``too_many_containers``)."""
    return raw.count(b"{") + raw.count(b"[")


def is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8 (RFC 8259 §8.1): ASCII is checked at C speed, the rest decoded."""
    if raw.isascii():
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def too_many_containers(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` may hold more than ``limit`` JSON objects and arrays: every ``{`` and ``[``
    is counted (also inside strings, so it can only over-count), at C speed, before anything is
    parsed. Parsed, each costs 56-64 bytes or more: 4.9 MB of ``{},`` would be 1.6 million dicts
    (over 100 MB), while the largest realistic hook call (700 KiB) has about 20,000."""
    if not isinstance(raw, (bytes, bytearray)):
        return False
    return containers(raw) > limit


def container_limit() -> int | None:
    """``MAX_CONTAINERS`` in a request (outside one, in tests of the parser itself: None, no limit)."""
    return _container_limit()


def _container_limit() -> int | None:
    from flask import has_app_context

    return MAX_CONTAINERS if has_app_context() else None  # not in tests of the parser itself


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def nested_deeper_than(raw: bytes, parsed: Any, limit: int, marks: bytes | None = None) -> bool:
    """Is the JSON in ``raw`` (already parsed into ``parsed``, so known valid) nested more than
    ``limit`` objects/arrays deep? The top-level object counts as depth 1. ``marks``: ``marks(raw)``, when
    the caller has it already (it counted the containers from it).

    On the bytes, for a valid UTF-8 JSON text: drop the escaped backslashes, then the escaped
    quotes (so every remaining ``"`` opens or closes a string); keep only quotes and brackets (``marks``);
    drop every ``""`` (an empty string, or a close-and-open of two strings with no bracket between
    them: merging those changes nothing); remove what is left in quotes (the rare strings that
    contain brackets: split at the quotes, keep every other piece); treat ``[]`` as ``{}``. Then
    each ``replace(b"{}", b"")`` removes exactly the innermost level, so the number of passes until nothing is left is the depth.
    """
    if not isinstance(raw, (bytes, bytearray)) or json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        return tree_depth(parsed, limit) > limit
    deeper = marks_deeper_than(marks_of(raw) if marks is None else marks, limit)
    return tree_depth(parsed, limit) > limit if deeper is None else deeper


def marks_of(raw: bytes) -> bytes:
    """The quotes and brackets of ``raw``, once its escaped backslashes and escaped quotes are dropped: every
    ``{`` and ``[`` of ``raw`` is in it (``containers_in``), and every remaining ``"`` opens or closes a string."""
    s = bytes(raw)
    if b"\\" in s:
        s = s.replace(b"\\\\", b"").replace(b'\\"', b"")
    return s.translate(None, _KEEP_ONLY_BRACKETS_AND_QUOTES)


def containers_in(marks: bytes) -> int:
    """``containers`` of a text, counted on its ``marks_of`` (the same count: only backslashes and quotes were
    dropped besides the other characters)."""
    return marks.count(b"{") + marks.count(b"[")


def bytes_deeper_than(raw: bytes, limit: int) -> bool | None:
    """``nested_deeper_than`` on the bytes of a valid UTF-8 JSON text alone; None where the bytes cannot
    tell (cannot happen for valid JSON: the caller then measures the parsed value)."""
    return marks_deeper_than(marks_of(raw), limit)


def marks_deeper_than(marks: bytes, limit: int) -> bool | None:
    """``bytes_deeper_than`` from the text's ``marks_of``."""
    s = marks.replace(b'""', b"")
    if b'"' in s:  # what is left alternates open, close (pairs were removed): keep what lies outside
        if s.count(b'"') % 2:  # cannot happen for valid JSON; be exact anyway
            return None
        s = b"".join(s.split(b'"')[::2])
    s = s.translate(_TO_BRACES)
    depth = 0
    while s:
        shorter = s.replace(b"{}", b"")
        if len(shorter) == len(s):  # not balanced: cannot happen for valid JSON; be exact anyway
            return None
        s = shorter
        depth += 1
        if depth > limit:
            return True
    return False


def tree_depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping early past ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node if isinstance(v, (dict, list)))
    return deepest


_tree_depth = tree_depth  # the name its tests know
