"""Configuration: every setting of the service, in one place.

Each setting is one field of :class:`Config` with one default, here. Its environment variable is
derived from its name: ``AZA_CDS_`` + the name in capitals (``fhir_deadline`` ->
``AZA_CDS_FHIR_DEADLINE``); its value is parsed by the field's type. ``create_app(config)`` and the
command line apply explicit overrides on top (``Config.from_env().with_overrides({...})``).
Nothing else in the project reads the environment for a setting.

Adding a setting is one line here and one row in the README's *Configuration* table
(``tests/test_config.py`` checks that every setting has its row)::

    my_limit: int = setting(10, "what it limits, in which unit")

Types understood: ``bool`` (1/0, true/false, yes/no, on/off), ``int``, ``float``, ``str``,
``tuple[str, ...]`` (comma-separated), each optionally ``| None`` (an empty variable means "unset":
the default applies). A setting that needs another reading passes ``parse=`` (see
``comment_retention_days``).
"""
from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

ENV_PREFIX = "AZA_CDS_"


class ConfigError(ValueError):
    """A setting has a value its type cannot take; the message names the variable."""


def setting(default: Any, doc: str, *, parse: Callable[[str], Any] | None = None) -> Any:
    """Declare one setting: its default, one line of documentation, optionally its own parser."""
    return field(default=default, metadata={"doc": doc, "parse": parse})


def env_name(name: str) -> str:
    """The environment variable of setting ``name``."""
    return ENV_PREFIX + name.upper()


def _retention_days(value: str) -> int | None:
    if value.strip().lower() in ("never", "none", "off", "keep"):
        return None
    days = int(value)
    if days < 0:
        raise ValueError("must be a number of days >= 0, or 'never'")
    return days


GUIDELINES = ("cpic", "dpwg")  # the pharmacogenomic guideline profiles of rules/knowledge/pgx.toml


def _guideline(value: str) -> str:
    value = value.strip().lower()
    if value not in GUIDELINES:
        raise ValueError(f"must be one of {', '.join(GUIDELINES)}")
    return value


@dataclass(frozen=True)
class Config:
    # security
    auth_required: bool = setting(True, "every service and feedback call needs a CDS Hooks JWT "
                                        "(off only with --dev / --insecure-no-auth, loopback only)")
    trust: str | None = setting(None, "JSON file of trusted JWT issuers (same as --trust)")
    public_base_url: tuple[str, ...] = setting((), "the service's public base URL(s), comma-separated: a JWT's aud must "
                                                   "be one of them + the path called (required with auth; serve "
                                                   "defaults it to a loopback listen address)")
    jwt_algorithms: tuple[str, ...] = setting(("ES384", "RS384"), "JWT algorithms accepted unless the trust file names them")
    jwt_leeway_seconds: int = setting(30, "clock skew allowed on JWT exp/iat")
    # storage
    database_url: str | None = setting(None, "feedback store; SQLite file in the data directory when unset")
    data_dir: str | None = setting(None, "where the embedded SQLite database lives (./data when unset)")
    comment_retention_days: int | None = setting(365, "feedback comments are deleted this many days after receipt "
                                                      "('never' keeps them)", parse=_retention_days)
    card_flush_seconds: float = setting(0.25, "queued card records are written to the store this often")
    # behaviour
    fhir_deadline: float = setting(1.5, "seconds for all FHIR queries of one hook call (they run in parallel)")
    fhir_max_pages: int = setting(5, "next links followed per FHIR search")
    fhir_allow_loopback: bool = setting(False, "FHIR servers on loopback addresses may be called (set by serve --dev)")
    fhir_max_response_bytes: int = setting(4 * 1024 * 1024, "largest FHIR response read, decompressed, in bytes")
    fhir_max_call_bytes: int = setting(8 * 1024 * 1024, "all FHIR responses of one hook call, decompressed, in bytes")
    max_entries_per_key: int = setting(2000, "Bundle entries read per prefetch key; more: a 'record truncated' card")
    max_queue_seconds: float = setting(1.0, "a hook call that waited longer than this for a worker gets 503 "
                                            "with Retry-After")
    client_seconds: float = setting(10.0, "the longest one request may hold a gunicorn thread, slow client included")
    weight_max_age_days: int = setting(90, "a body weight older than this is not used for mg/kg")
    max_info_cards: int = setting(1, "at most this many info cards per response")
    guideline: str = setting("cpic", "pharmacogenomic guideline profile: cpic (CPIC) or dpwg (Dutch DPWG 2025); "
                                     "named in discovery and in every card", parse=_guideline)
    max_body_bytes: int = setting(5 * 1024 * 1024, "largest request body accepted (413 above)")
    max_json_depth: int = setting(64, "deepest JSON nesting accepted (400 above)")
    cors_origins: str = setting("*", "origins allowed to call the CDS endpoints from a browser")
    dev: bool = setting(False, "development mode (set by serve --dev)")
    evaluation_date: str | None = setting(None, "YYYY-MM-DD: evaluate as of this day (offline checks, demos)")
    # operations
    metrics: bool = setting(True, "serve GET /metrics (Prometheus text format, no token, like discovery)")
    metrics_dir: str | None = setting(None, "directory of the gunicorn workers' metric files (emptied at start; "
                                            "a temporary directory when unset)")
    readiness_timeout: float = setting(2.0, "seconds GET /readyz waits for the feedback store")
    # serving
    workers: int = setting(2, "default of serve --workers")
    threads: int = setting(4, "default of serve --threads")

    def __post_init__(self) -> None:
        if self.guideline not in GUIDELINES:  # an override passed to create_app(config) or the command line
            raise ConfigError(f"{env_name('guideline')}={self.guideline!r}: must be one of {', '.join(GUIDELINES)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Defaults, overridden by each ``AZA_CDS_*`` variable that is set and not empty."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name), "")
            if raw.strip():
                values[f.name] = _parse(f, raw.strip())
        return cls(**values)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Config:
        if not overrides:
            return self
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        types_ = _field_types()
        parsed = {k: _parser_for(types_[k])(v) if isinstance(v, str) and _is_tuple(types_[k]) else v
                  for k, v in overrides.items()}  # "a, b" for a list setting, as in its variable
        return replace(self, **parsed)


def settings() -> list[tuple[str, str, Any, str]]:
    """(field name, environment variable, default, documentation) of every setting, in order."""
    return [(f.name, env_name(f.name), f.default, f.metadata.get("doc", "")) for f in fields(Config)]


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(Config.from_env(env).data_dir or Path.cwd() / "data")


def _parse(f: Field, raw: str) -> Any:
    parser = f.metadata.get("parse") or _parser_for(_field_types()[f.name])
    try:
        return parser(raw)
    except ValueError as exc:
        raise ConfigError(f"{env_name(f.name)}={raw!r}: {exc}") from None


@cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _parser_for(tp: Any) -> Callable[[str], Any]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        (tp,) = args  # "X | None": parse as X
        args = list(typing.get_args(tp))
    if tp is bool:
        return _bool
    if tp in (int, float, str):
        return tp
    if typing.get_origin(tp) is tuple and args and args[0] is str:
        return lambda raw: tuple(part.strip() for part in raw.split(",") if part.strip())
    raise TypeError(f"no parser for settings of type {tp!r}: pass parse= to setting()")


def _is_tuple(tp: Any) -> bool:
    return any(typing.get_origin(t) is tuple for t in (tp, *typing.get_args(tp)))


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
