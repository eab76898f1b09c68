"""The envelope of a CDS Hooks service request, read without its prefetch.

An EHR that registers the order-sign service calls it for every order, and most orders concern no
thiopurine, no interacting medicine and no live vaccine: those calls need only the draft orders in
``context``. The body is decoded (msgspec) into :class:`ServiceRequest`, a typed envelope whose
``prefetch`` values stay undecoded JSON text (``msgspec.Raw``, checked as JSON while the body is
read); :class:`Prefetch` decodes a key only when the pipeline reads it (``hooks/pipeline.py`` reads
the prefetch only once the drafts say the call needs data, and then only the keys it needs).

What counts as JSON, and the limits on what is parsed into Python objects (depth, objects and arrays),
are the service's (``service/jsonbody.py``, ``service/api.py``): a decoder is handed to
:class:`Prefetch` and is the only way a value is read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec


class ServiceRequest(msgspec.Struct):
    """The top level of a service request (CDS Hooks 2.0 §HTTP request). The strings are decoded here; any
    other shape of them fails the decode (the service then reads the body whole and the schema words the
    error). ``context``, ``fhirAuthorization`` and ``extension`` are kept as JSON text for the service's own
    reader (its limits apply to them; None: absent). Unknown top-level members are checked as JSON and
    dropped (nothing reads them and the schema says nothing of them)."""

    hook: str | None = None
    hookInstance: str | None = None  # noqa: N815 - the CDS Hooks member name
    fhirServer: str | None = None  # noqa: N815
    fhirAuthorization: msgspec.Raw = None  # type: ignore[assignment]  # noqa: N815
    context: msgspec.Raw = None  # type: ignore[assignment]  # None: absent
    prefetch: dict[str, msgspec.Raw] | None = None
    extension: msgspec.Raw = None  # type: ignore[assignment]
    patient: str | None = None  # CDS Hooks 1.0 clients put the patient id here


_DECODER = msgspec.json.Decoder(ServiceRequest)


def decode(raw: bytes) -> ServiceRequest:
    """The envelope of ``raw``; raises ``msgspec.DecodeError`` (not JSON, or not an object with these members
    in these shapes) or ``RecursionError``."""
    return _DECODER.decode(raw)


class Prefetch(Mapping):
    """A request's ``prefetch``: key -> the value, decoded by ``decode`` (bytes and the key -> Python) when first
    read, and kept for the rest of the call. ``decoded`` names the keys read so far."""

    __slots__ = ("_raw", "_decode", "_values")

    def __init__(self, raw: dict[str, msgspec.Raw], decode: Callable[[bytes, str], Any]) -> None:
        self._raw = raw
        self._decode = decode
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            pass
        value = self._values[key] = self._decode(self._raw[key], key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    @property
    def decoded(self) -> frozenset[str]:
        return frozenset(self._values)

    def shape(self) -> dict[str, dict | None] | None:
        """What the request schema judges of the prefetch without decoding it: each value an object (``{}``
        stands for it) or null. None when a value is something else (the caller then reads the body whole,
        and the schema words the error from the value itself)."""
        out: dict[str, dict | None] = {}
        for key, raw in self._raw.items():
            first = memoryview(raw)[:1].tobytes()
            if first == b"{":
                out[key] = {}
            elif first == b"n":  # null: the JSON text is valid (msgspec checked it), so exactly ``null``
                out[key] = None
            else:
                return None
        return out
