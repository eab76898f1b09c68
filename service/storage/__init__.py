"""Persistent CDS Hooks feedback: which cards were shown, which were accepted or overridden.

``open_store(config)`` gives the :class:`FeedbackStore` the app keeps in
``app.extensions["aza_feedback_store"]``: embedded SQLite in the data directory by default,
PostgreSQL (``AZA_CDS_DATABASE_URL=postgresql+psycopg://…``) when several instances share one
store. The schema is migrated (Alembic) on open. See ``README.md`` beside this file.
"""
from __future__ import annotations

from .feedback import FeedbackInvalid, FeedbackRecord, parse_feedback
from .store import (FeedbackQuota, FeedbackResult, FeedbackStore, QuotaExceeded, StorageError, default_database_url,
                    make_engine)

__all__ = ["FeedbackInvalid", "FeedbackQuota", "FeedbackRecord", "FeedbackResult", "FeedbackStore", "QuotaExceeded",
           "StorageError",
           "default_database_url", "make_engine", "open_store", "parse_feedback"]


def open_store(cfg) -> FeedbackStore:
    """The store a :class:`service.config.Config` describes, migrated to the newest schema."""
    url = cfg.database_url or default_database_url(cfg.data_dir)
    try:
        return FeedbackStore.open(url, comment_retention_days=cfg.comment_retention_days,
                                  flush_interval=cfg.card_flush_seconds)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("psycopg"):
            raise RuntimeError("AZA_CDS_DATABASE_URL names PostgreSQL but its driver is not installed: "
                               "pip install 'azathioprine-cds[postgres]'") from None
        raise
