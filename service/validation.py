"""JSON Schema validation of CDS Hooks bodies; validators are compiled once.

The schema (``schemas/cds-hooks-2.0.1.schema.json``) is the project's copy of
the hand-derived CDS Hooks 2.0.1 schema (see ``schemas/README.md``), plus
per-hook context schemas (``schemas/contexts.schema.json``).

Every hook call is validated, and almost every body is valid: a compiled validator
(``jsonschema-rs``, the same schemas) answers "valid" for those in a fraction of the
time; only a body it does not accept goes to ``jsonschema``, which decides (where the
two could differ, ``jsonschema``'s answer is the one used) and words the error.

Start-up cost: ``create_app`` compiles the ``jsonschema-rs`` validators (every call uses them);
``jsonschema`` and ``referencing`` are imported, and its validators built, only when a body that
``jsonschema-rs`` refuses needs their judgement (a refused body, answered 400), not at start
(docs/performance.md, "Cold start").
"""
from __future__ import annotations

import json
from functools import cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs as _rs  # the fast path for valid bodies (a runtime dependency)

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_MAX_ERRORS_JUDGED = 50

_DIR = Path(__file__).with_name("schemas")
_MAIN = "cds-hooks-2.0.1.schema.json"
_CONTEXTS = "contexts.schema.json"


@cache
def _schemas() -> tuple[dict, dict]:
    """(main schema, contexts schema), read once."""
    main = json.loads((_DIR / _MAIN).read_text(encoding="utf-8"))
    contexts = json.loads((_DIR / _CONTEXTS).read_text(encoding="utf-8"))
    return main, contexts


@cache
def _registry() -> Any:
    """The two schemas as a ``referencing`` registry (for ``jsonschema``; built on first need)."""
    from referencing import Registry, Resource

    main, contexts = _schemas()
    return Registry().with_resources([
        (main["$id"], Resource.from_contents(main)),
        (contexts["$id"], Resource.from_contents(contexts)),
    ])


@cache
def validator(definition: str) -> "Draft202012Validator":
    """The ``jsonschema`` validator for ``$defs/<definition>`` of the main schema, or ``hook:<name>`` for a
    context: the judge of a body ``jsonschema-rs`` refuses (built on first need, then kept)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"$ref": _ref(definition)}, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _ref(definition: str) -> str:
    main, contexts = _schemas()
    if definition.startswith("hook:"):
        return f"{contexts['$id']}#/$defs/{definition[5:]}"
    return f"{main['$id']}#/$defs/{definition}"


@cache
def fast_validator(definition: str, formats: bool = True):
    """The compiled (jsonschema-rs) validator of ``definition``. Offline: the two schemas are its
    registry. With ``formats`` they are asserted (stricter, so never valid where jsonschema would
    not be); without, it judges the structure exactly as jsonschema does."""
    main, contexts = _schemas()
    registry = _rs.Registry([(main["$id"], main), (contexts["$id"], contexts)])
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": _ref(definition)}
    return _rs.validator_for(schema, registry=registry, validate_formats=formats, offline=True)


def has_context_schema(hook: str) -> bool:
    return hook in _schemas()[1]["$defs"]


def first_error(definition: str, instance) -> tuple[str, str] | None:
    """(message, JSONPath of the field) of the most relevant violation, or None when valid."""
    try:
        if fast_validator(definition).is_valid(instance):
            return None
    except Exception:  # noqa: BLE001 - a value it cannot take (NaN, a huge integer): jsonschema decides
        pass
    # A structural violation is described from the compiled validator's first error: jsonschema's
    # best_match collects every error of an anyOf branch first (300,000 bad entries: ≈ 12 s of CPU).
    try:
        rs_error = next(fast_validator(definition, formats=False).iter_errors(instance), None)
    except Exception:  # noqa: BLE001 - a value it cannot take: jsonschema decides
        rs_error = None
    if rs_error is not None:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rs_error.instance_path)
        return f"{path}: {_short(rs_error.message)}", path
    error = best_match(islice(validator(definition).iter_errors(instance), _MAX_ERRORS_JUDGED))
    if error is None:
        return None
    path = error.json_path
    return f"{path}: {_short(error.message)}", path


def best_match(errors):
    """``jsonschema.exceptions.best_match`` (jsonschema imported on first need)."""
    from jsonschema.exceptions import best_match as judge

    return judge(errors)


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."
