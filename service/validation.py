"""JSON Schema validation of CDS Hooks bodies; validators are compiled once.

The schema (``schemas/cds-hooks-2.0.1.schema.json``) is the project's copy of
the hand-derived CDS Hooks 2.0.1 schema (see ``schemas/README.md``), plus
per-hook context schemas (``schemas/contexts.schema.json``).
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

_DIR = Path(__file__).with_name("schemas")
_MAIN = "cds-hooks-2.0.1.schema.json"
_CONTEXTS = "contexts.schema.json"


@cache
def _registry() -> tuple[Registry, dict, dict]:
    main = json.loads((_DIR / _MAIN).read_text(encoding="utf-8"))
    contexts = json.loads((_DIR / _CONTEXTS).read_text(encoding="utf-8"))
    registry = Registry().with_resources([
        (main["$id"], Resource.from_contents(main)),
        (contexts["$id"], Resource.from_contents(contexts)),
    ])
    return registry, main, contexts


@cache
def validator(definition: str) -> Draft202012Validator:
    """A compiled validator for ``$defs/<definition>`` of the main schema, or ``hook:<name>`` for a context."""
    registry, main, contexts = _registry()
    if definition.startswith("hook:"):
        ref = f"{contexts['$id']}#/$defs/{definition[5:]}"
    else:
        ref = f"{main['$id']}#/$defs/{definition}"
    return Draft202012Validator({"$ref": ref}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def has_context_schema(hook: str) -> bool:
    return hook in _registry()[2]["$defs"]


def first_error(definition: str, instance) -> tuple[str, str] | None:
    """(message, JSONPath of the field) of the most relevant violation, or None when valid."""
    error = best_match(validator(definition).iter_errors(instance))
    if error is None:
        return None
    path = error.json_path
    return f"{path}: {_short(error.message)}", path


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."
