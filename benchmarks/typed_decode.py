"""Typed decoding (msgspec) of the hook request against ``orjson.loads``, CPU ms per body in one process.

Not part of ``make bench``: the measurement behind the perf-a note in ``RESULTS.md``. Needs msgspec
(``pip install msgspec``; not a dependency of the service). Three ways to read the (a) and (c) bodies:

- ``orjson``: ``orjson.loads`` into dicts, as the service reads every request (and the dicts freed);
- ``typed``: msgspec ``Struct``s with only the Observation fields the mappers read (unknown fields
  skipped: meta, identifiers, narrative are never built), each prefetch value and Bundle entry kept as
  ``msgspec.Raw`` and decoded on its own (so that a resource of another shape could go to the lenient
  reader alone): what a mapper on Structs would start from;
- ``slim dicts``: the same selective decoding, turned back into the dicts today's mappers, the prefetch
  checks and the validator read (the rest of the request decoded as dicts).

    .venv/bin/python benchmarks/typed_decode.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import patient  # noqa: E402

KEYS = ["patient", "medications", "weight", "height", "pgx", "labs", "pregnancy", "conditions", "allergies",
        "immunizations", "past_medications"]
READ = ["resourceType", "id", "status", "code", "valueQuantity", "valueString", "valueInteger", "valueCodeableConcept",
        "valueBoolean", "dataAbsentReason", "interpretation", "referenceRange", "effectiveDateTime", "effectiveInstant",
        "effectivePeriod", "issued", "component", "extension", "derivedFrom"]


class Coding(msgspec.Struct):
    system: Optional[str] = None
    code: Optional[str] = None
    display: Optional[str] = None


class Concept(msgspec.Struct):
    coding: Optional[list[Coding]] = None
    text: Optional[str] = None


class Quantity(msgspec.Struct):
    value: Optional[float] = None
    comparator: Optional[str] = None
    unit: Optional[str] = None
    system: Optional[str] = None
    code: Optional[str] = None


class Range(msgspec.Struct):
    low: Optional[Quantity] = None
    high: Optional[Quantity] = None
    text: Optional[str] = None


class Period(msgspec.Struct):
    start: Optional[str] = None
    end: Optional[str] = None


class Observation(msgspec.Struct):
    resourceType: str
    id: Optional[str] = None
    status: Optional[str] = None
    code: Optional[Concept] = None
    valueQuantity: Optional[Quantity] = None
    valueString: Optional[str] = None
    valueCodeableConcept: Optional[Concept] = None
    interpretation: Optional[list[Concept]] = None
    referenceRange: Optional[list[Range]] = None
    effectiveDateTime: Optional[str] = None
    issued: Optional[str] = None
    effectivePeriod: Optional[Period] = None


class Entry(msgspec.Struct):
    resource: msgspec.Raw = msgspec.Raw()


class Bundle(msgspec.Struct):
    resourceType: str
    entry: Optional[list[Entry]] = None


class Request(msgspec.Struct):
    hook: str
    prefetch: dict[str, msgspec.Raw] = {}
    context: msgspec.Raw = msgspec.Raw()


REQUEST = msgspec.json.Decoder(Request)
BUNDLE = msgspec.json.Decoder(Bundle)
OBSERVATION = msgspec.json.Decoder(Observation)
RAWS = msgspec.json.Decoder(dict[str, msgspec.Raw])
SLIM = msgspec.json.Decoder(msgspec.defstruct("Slim", [(f, Any, msgspec.UNSET) for f in READ]))
decode = msgspec.json.decode


def typed(body: bytes) -> int:
    n = 0
    for raw in REQUEST.decode(body).prefetch.values():
        try:
            entries = BUNDLE.decode(raw).entry or []
        except msgspec.ValidationError:
            continue  # not a Bundle: the lenient reader
        for e in entries:
            try:
                OBSERVATION.decode(e.resource)
                n += 1
            except msgspec.ValidationError:
                decode(e.resource)  # another shape: that resource alone as a dict
    return n


def _slim_value(raw: msgspec.Raw) -> Any:
    fields = RAWS.decode(raw)
    if fields.get("resourceType") != b'"Bundle"' or "entry" not in fields:
        return decode(raw)
    out = {k: decode(v) for k, v in fields.items() if k != "entry"}
    out["entry"] = []
    for e in decode(fields["entry"], type=list[msgspec.Raw]):
        entry = RAWS.decode(e)
        resource = entry.pop("resource", None)
        item = {k: decode(v) for k, v in entry.items()}
        if resource is not None:
            if RAWS.decode(resource).get("resourceType") == b'"Observation"':
                s = SLIM.decode(resource)
                item["resource"] = {f: v for f in READ if (v := getattr(s, f)) is not msgspec.UNSET}
            else:
                item["resource"] = decode(resource)
        out["entry"].append(item)
    return out


def slim(body: bytes) -> dict:
    top = RAWS.decode(body)
    out = {k: decode(v) for k, v in top.items() if k != "prefetch"}
    if "prefetch" in top:
        out["prefetch"] = {k: _slim_value(v) for k, v in RAWS.decode(top["prefetch"]).items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ways: dict[str, Callable[[bytes], Any]] = {"orjson": orjson.loads, "typed": typed, "slim dicts": slim}
    for name, data, calls in (("a", patient.realistic(), 300), ("c", patient.large(), 40)):
        body = json.dumps(patient.hook_request(data, keys=KEYS)).encode()
        spent = dict.fromkeys(ways, 0.0)
        for _ in range(args.rounds):  # interleaved, so that other load hits every way alike
            for way, f in ways.items():
                t0 = time.process_time()
                for _ in range(calls):
                    f(body)
                spent[way] += time.process_time() - t0
        print(f"({name}) {len(body) // 1024} KiB: " + ", ".join(
            f"{way} {s / args.rounds / calls * 1000:.3f} ms" for way, s in spent.items()))


if __name__ == "__main__":
    main()
