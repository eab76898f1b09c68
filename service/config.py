"""Configuration: embedded defaults, then environment (``AZA_CDS_*``), then explicit overrides."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    return Path(os.environ.get("AZA_CDS_DATA_DIR") or Path.cwd() / "data")


@dataclass(frozen=True)
class Config:
    # security
    auth_required: bool = True  # every service and feedback call needs a CDS Hooks JWT
    trust_file: str | None = None  # JSON {"issuers": [...]} (AZA_CDS_TRUST)
    # the service's public base URL(s), comma-separated: a JWT's "aud" must be one of them + the path
    # called (AZA_CDS_PUBLIC_BASE_URL). Required with auth; `serve` defaults it to its listen address.
    public_base_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384")
    jwt_leeway_seconds: int = 30
    # storage
    database_url: str | None = None  # AZA_CDS_DATABASE_URL; SQLite file in the data dir when unset
    # behaviour
    fhir_deadline_seconds: float = 1.5  # all FHIR work of one hook call (AZA_CDS_FHIR_DEADLINE)
    fhir_max_pages: int = 5
    fhir_allow_loopback: bool = False  # FHIR servers on loopback allowed (serve --dev; AZA_CDS_FHIR_ALLOW_LOOPBACK)
    fhir_max_response_bytes: int = 16 * 1024 * 1024  # one FHIR response, decompressed (AZA_CDS_FHIR_MAX_RESPONSE_BYTES)
    fhir_max_call_bytes: int = 32 * 1024 * 1024  # all FHIR responses of one call (AZA_CDS_FHIR_MAX_CALL_BYTES)
    max_entries_per_key: int = 2000  # Bundle entries read per prefetch key; more: a "truncated" card (AZA_CDS_MAX_ENTRIES_PER_KEY)
    max_queue_seconds: float = 1.0  # a hook call that waited longer for a worker gets 503 (AZA_CDS_MAX_QUEUE_SECONDS)
    client_seconds: float = 10.0  # the longest one request may hold a gunicorn thread, slow client included (AZA_CDS_CLIENT_SECONDS)
    weight_max_age_days: int = 90
    max_info_cards: int = 1
    max_body_bytes: int = 5 * 1024 * 1024
    max_json_depth: int = 64
    cors_origins: str = "*"
    dev: bool = False
    evaluation_date: str | None = None  # YYYY-MM-DD: evaluate as of this day (offline checks, demos)
    # feedback store: user comments are deleted this many days after receipt (None: kept)
    feedback_comment_retention_days: int | None = 365  # AZA_CDS_COMMENT_RETENTION_DAYS ("never": keep)
    feedback_card_flush_seconds: float = 0.25  # cards queue this long, then one INSERT (AZA_CDS_CARD_FLUSH_SECONDS)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Config":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("AZA_CDS_TRUST"):
            values["trust_file"] = env["AZA_CDS_TRUST"]
        if env.get("AZA_CDS_DATABASE_URL"):
            values["database_url"] = env["AZA_CDS_DATABASE_URL"]
        if env.get("AZA_CDS_COMMENT_RETENTION_DAYS"):
            values["feedback_comment_retention_days"] = _retention_days(env["AZA_CDS_COMMENT_RETENTION_DAYS"])
        if env.get("AZA_CDS_CARD_FLUSH_SECONDS"):
            values["feedback_card_flush_seconds"] = float(env["AZA_CDS_CARD_FLUSH_SECONDS"])
        if env.get("AZA_CDS_PUBLIC_BASE_URL"):
            values["public_base_url"] = env["AZA_CDS_PUBLIC_BASE_URL"]
        if env.get("AZA_CDS_FHIR_DEADLINE"):
            values["fhir_deadline_seconds"] = float(env["AZA_CDS_FHIR_DEADLINE"])
        if env.get("AZA_CDS_FHIR_ALLOW_LOOPBACK"):
            values["fhir_allow_loopback"] = env["AZA_CDS_FHIR_ALLOW_LOOPBACK"].strip().lower() in ("1", "true", "yes", "on")
        for key, name, kind in (("fhir_max_response_bytes", "AZA_CDS_FHIR_MAX_RESPONSE_BYTES", int),
                                ("fhir_max_call_bytes", "AZA_CDS_FHIR_MAX_CALL_BYTES", int),
                                ("max_entries_per_key", "AZA_CDS_MAX_ENTRIES_PER_KEY", int),
                                ("max_queue_seconds", "AZA_CDS_MAX_QUEUE_SECONDS", float),
                                ("client_seconds", "AZA_CDS_CLIENT_SECONDS", float)):
            if env.get(name):
                values[key] = kind(env[name])
        if env.get("AZA_CDS_WEIGHT_MAX_AGE_DAYS"):
            values["weight_max_age_days"] = int(env["AZA_CDS_WEIGHT_MAX_AGE_DAYS"])
        if env.get("AZA_CDS_MAX_INFO_CARDS"):
            values["max_info_cards"] = int(env["AZA_CDS_MAX_INFO_CARDS"])
        return cls(**values)

    def with_overrides(self, overrides: dict[str, Any] | None) -> "Config":
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        return replace(self, **overrides)


def _retention_days(value: str) -> int | None:
    if value.strip().lower() in ("never", "none", "off", "keep"):
        return None
    days = int(value)
    if days < 0:
        raise ValueError("AZA_CDS_COMMENT_RETENTION_DAYS must be a number of days >= 0, or 'never'")
    return days
