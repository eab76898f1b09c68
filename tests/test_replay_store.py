"""The JWT replay table (``cds_jti``) on SQLite and PostgreSQL: a token is claimed once, by one
process of many racing for it; an expired entry frees its key; expired rows are deleted."""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from service.storage import FeedbackStore
from service.storage import store as store_module
from service.storage.models import jti as jti_table


def _claim(url: str, start_at: float, jti: str) -> bool:
    store = FeedbackStore(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        return store.claim_jti("https://ehr.example.org", jti, datetime.now(timezone.utc) + timedelta(minutes=5))
    finally:
        store.close()


def test_one_of_many_processes_claims_a_token(backend_url):
    FeedbackStore.open(backend_url).close()  # migrated once
    start_at = time.time() + 1.5
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        won = list(pool.map(_claim, [backend_url] * 4, [start_at] * 4, ["jti-race"] * 4))
    assert sorted(won) == [False, False, False, True]


def test_replay_expiry_and_purge(backend_url, monkeypatch):
    store = FeedbackStore.open(backend_url)
    try:
        now = datetime.now(timezone.utc)
        iss = "https://ehr.example.org"
        assert store.claim_jti(iss, "a", now + timedelta(minutes=5)) is True
        assert store.claim_jti(iss, "a", now + timedelta(minutes=5)) is False  # replay
        assert store.claim_jti("https://other.example.org", "a", now + timedelta(minutes=5)) is True  # other issuer
        assert store.claim_jti(iss, "old", now - timedelta(seconds=1)) is True
        assert store.claim_jti(iss, "old", now + timedelta(minutes=5)) is True  # the first one had expired
        assert store.claim_jti(iss, "\ud800 odd", now + timedelta(minutes=5)) is True  # any text, hashed
        store.claim_jti(iss, "gone", now - timedelta(seconds=1))
        monkeypatch.setattr(store_module, "JTI_PURGE_SECONDS", 0)
        store.claim_jti(iss, "trigger", now + timedelta(minutes=5))
        with store.read() as conn:
            keys = conn.execute(sa.select(sa.func.count()).select_from(jti_table)).scalar()
            expired = conn.execute(sa.select(sa.func.count()).select_from(jti_table)
                                   .where(jti_table.c.expires_at <= datetime.now(timezone.utc))).scalar()
        assert expired == 0 and keys == 5
    finally:
        store.close()
