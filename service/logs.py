"""Structured logs: one JSON object per line.

Only fields named in ``SAFE_FIELDS`` leave the process: service id, hook
instance, status, latency, card count, rule ids, error class. Never a token,
a name, an identifier of a patient, or free text from the record.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time

SAFE_FIELDS = ("event", "service", "hook_instance", "status", "latency_ms", "fhir_ms", "cards", "rule_ids",
               "feedback_items", "method", "path", "error", "prefetch_key", "reason", "fhir_key", "outcome",
               "refusal", "queued_ms")


# what json.dumps(out, ensure_ascii=False) writes, without building an encoder for every line
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key in SAFE_FIELDS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if "hook_instance" in out:
            out["hook_instance"] = loggable_hook_instance(out["hook_instance"])
        if record.exc_info:
            out["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
        return _ENCODER.encode(out)


_UUID = re.compile(r"^(urn:uuid:)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def loggable_hook_instance(value) -> str:
    """A hookInstance is logged as sent only when it is a UUID, as CDS Hooks says it is; any other
    caller text (which could be anything, a name included) is logged as a short hash, still
    enough to match the lines of one call."""
    text = str(value)
    if _UUID.match(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def configure(level: int = logging.INFO, stream=None) -> None:
    root = logging.getLogger("aza_cds")
    if any(getattr(h, "_aza", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._aza = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
