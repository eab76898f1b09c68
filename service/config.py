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
    public_base_url: str | None = None  # expected JWT "aud" prefix behind a proxy (AZA_CDS_PUBLIC_BASE_URL)
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384")
    jwt_leeway_seconds: int = 30
    # storage
    database_url: str | None = None  # AZA_CDS_DATABASE_URL; SQLite file in the data dir when unset
    # behaviour
    fhir_deadline_seconds: float = 1.5  # all FHIR work of one hook call (AZA_CDS_FHIR_DEADLINE)
    fhir_max_pages: int = 5
    weight_max_age_days: int = 90
    max_info_cards: int = 1
    guideline: str = "cpic"  # pharmacogenomic guideline profile, "cpic" or "dpwg" (AZA_CDS_GUIDELINE)
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
        if env.get("AZA_CDS_WEIGHT_MAX_AGE_DAYS"):
            values["weight_max_age_days"] = int(env["AZA_CDS_WEIGHT_MAX_AGE_DAYS"])
        if env.get("AZA_CDS_MAX_INFO_CARDS"):
            values["max_info_cards"] = int(env["AZA_CDS_MAX_INFO_CARDS"])
        if env.get("AZA_CDS_GUIDELINE"):
            values["guideline"] = env["AZA_CDS_GUIDELINE"].strip().lower()
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
