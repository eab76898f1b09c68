"""The feedback store: cards issued (hot path, queued) and feedback (synchronous, idempotent).

Cards
    ``record_cards`` runs inside every hook call that returns cards. It only copies six short
    fields per card into an in-memory queue (a few microseconds; no I/O, no lock held across
    I/O) and wakes a writer thread, which inserts whatever has queued up in one multi-row
    INSERT per batch. The queue is flushed when the process exits normally (``atexit``: gunicorn
    workers on SIGTERM/graceful restart, Ctrl-C of the dev server) and by :meth:`flush`. Only a
    hard kill loses the cards of the last few milliseconds. The queue is bounded: if the
    database is unreachable for long, the oldest pending cards are dropped (and counted in the
    log), never the hook call.

Feedback
    ``record_feedback`` writes in the request, in one transaction, and returns only after the
    commit, so a 200 means stored. Each item has a content key (``FeedbackRecord.dedup_key``)
    under a unique constraint and is inserted with ``ON CONFLICT DO NOTHING``: a retried or
    replayed item, even posted by several processes at the same moment, is stored once. Items
    are inserted in key order so that two concurrent transactions cannot deadlock each other on
    PostgreSQL; on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (the database
    write lock) and waits up to ``SQLITE_BUSY_SECONDS`` for it.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from . import migrate
from .feedback import FeedbackInvalid, parse_feedback
from .models import cards as cards_table
from .models import feedback as feedback_table
from .models import jti as jti_table
from .models import once_key

log = logging.getLogger("aza_cds.storage")

SQLITE_FILENAME = "feedback.sqlite3"
SQLITE_BUSY_SECONDS = 30
PURGE_INTERVAL_SECONDS = 3600
JTI_PURGE_SECONDS = 60  # expired replay-cache rows are deleted at most this often, by whoever claims
FLUSH_INTERVAL_SECONDS = 0.25  # queued cards reach the database within this (plus the INSERT)
_PG_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
# errors that say "this row", not "this database": retrying would never succeed
_REFUSED = (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.ProgrammingError, ValueError, TypeError)


class StorageError(RuntimeError):
    """The database could not be reached or written; the caller may retry (feedback is idempotent)."""


class QuotaExceeded(Exception):
    """An issuer has sent more feedback than its quota: 429 with ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


@dataclass(frozen=True)
class FeedbackQuota:
    """Feedback items one issuer may store: in any 60 seconds, and in all (issue 18 R5; docs/threats.md)."""

    per_minute: int = 120
    total: int = 200_000


@dataclass(frozen=True)
class FeedbackResult:
    stored: int
    duplicates: int


def default_database_url(data_dir: Path | str | None = None) -> str:
    from service.config import default_data_dir

    path = Path(data_dir) if data_dir is not None else default_data_dir()
    return URL.create("sqlite", database=str(path.absolute() / SQLITE_FILENAME)).render_as_string()


def normalise_url(url: str | URL) -> URL:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 here (psycopg2 is not a dependency)."""
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    u = make_url(url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u


def is_memory(url: URL) -> bool:
    db = url.database or ""
    return url.get_backend_name() == "sqlite" and (db in ("", ":memory:") or "mode=memory" in db)


def make_engine(url: str | URL) -> Engine:
    url = normalise_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if is_memory(url):
            # one connection shared by all threads (the store serialises access to it)
            engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            path = Path(url.database or SQLITE_FILENAME)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})
        _sqlite_transactions(engine, wal=not is_memory(url))
        return engine
    if backend == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800,
                                connect_args={"connect_timeout": 10, "application_name": "azathioprine-cds",
                                              "options": "-c timezone=UTC"})
    raise ValueError(f"unsupported feedback database {backend!r}: use sqlite:///FILE or postgresql+psycopg://…")


def _sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    """SQLAlchemy emits BEGIN itself (the sqlite3 module's implicit transactions are off):
    ``BEGIN IMMEDIATE`` for writes, so a writer waits for the lock up front instead of failing
    half-way, and a plain deferred ``BEGIN`` for readers (``execution_options(aza_read=True)``)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
        if wal:
            _set_wal(cur)  # readers never block the writer
            cur.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes in WAL mode
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("aza_read") else "BEGIN IMMEDIATE")


def _set_wal(cur) -> None:
    """Switch a new database file to WAL. The switch needs an exclusive lock and SQLite does not
    wait for it (no busy handler), so several processes opening a new file at once retry."""
    import sqlite3
    import time

    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return  # persistent: already switched by this or another process
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _safe_text(value, limit: int) -> str:
    """A request-supplied string as a database can hold it (no NUL, no lone surrogate)."""
    value = str(value)[:limit]
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "") if "\x00" in value else value


def card_row(card: dict, *, service_id: str, hook: str, hook_instance: str, issued_at: datetime) -> dict | None:
    """The columns kept for one card: no summary, no detail, no suggestion, nothing about the patient."""
    try:
        topic = card["source"]["topic"]
        title = topic.get("display")
        ext = (card.get("extension") or {}).get("azathioprine-cds") or {}
        return {"card_uuid": card["uuid"], "service_id": service_id, "hook": hook, "rule_id": topic["code"],
                "rule_title": title[:255] if isinstance(title, str) and title else None,
                "indicator": card["indicator"], "knowledge_version": str(ext.get("knowledgeVersion") or ""),
                "hook_instance": _safe_text(hook_instance, 128), "issued_at": issued_at}
    except (KeyError, TypeError):
        return None


class FeedbackStore:
    def __init__(self, url: str | URL, *, comment_retention_days: int | None = None, max_pending: int = 100_000,
                 batch_size: int = 1000, flush_interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.comment_retention_days = comment_retention_days
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._insert = _insert(self.dialect)
        # an in-memory SQLite database is one connection: serialise every use of it
        self._conn_lock = threading.RLock() if is_memory(self.url) else nullcontext()
        self._pending: deque[dict] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._dropped = 0
        self.dropped_total = 0  # cards not recorded because the queue was full, since start
        self.observer: Callable[[int, int], None] | None = None  # (queue depth, dropped_total): metrics
        self._last_purge = 0.0
        self._last_jti_purge = 0.0
        self._closed = False
        ref = weakref.ref(self)
        def close_at_exit() -> None:
            if (s := ref()) is not None:
                s.close()

        def after_fork_in_child() -> None:
            if (s := ref()) is not None:
                s._after_fork()

        self._atexit = close_at_exit
        atexit.register(self._atexit)
        os.register_at_fork(after_in_child=after_fork_in_child)

    def _after_fork(self) -> None:
        """In a forked child (gunicorn with preload): own locks, no writer yet, no inherited connections."""
        self._pending = deque()  # the parent's queue is the parent's to write
        self._flush_lock = threading.Lock()
        self._conn_lock = threading.RLock() if is_memory(self.url) else nullcontext()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = None
        self.engine.dispose(close=False)

    @classmethod
    def open(cls, url: str | URL, *, migrate_schema: bool = True, **kwargs) -> "FeedbackStore":
        store = cls(url, **kwargs)
        try:
            if migrate_schema:
                migrate.upgrade(store.engine)
        except Exception:
            store.close()
            raise
        store.purge_expired_comments()
        return store

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # -- connections -----------------------------------------------------------------------------

    @contextmanager
    def write(self):
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self._conn_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self):
        with self._conn_lock, self.engine.connect().execution_options(aza_read=True) as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    # -- cards (hot path) ------------------------------------------------------------------------

    def record_cards(self, *, service_id: str, hook: str, hook_instance: str, cards: list[dict]) -> None:
        """Queue the cards of one hook call; never blocks on the database, never raises for it."""
        now = datetime.now(timezone.utc)
        pending = self._pending
        if len(pending) >= self.max_pending:
            self._dropped += len(cards)
            self.dropped_total += len(cards)
            self.observe()
            return
        for card in cards:
            row = card_row(card, service_id=service_id, hook=hook, hook_instance=hook_instance, issued_at=now)
            if row is not None:
                pending.append(row)
        if self._thread is None:
            self._start_writer()
        if not self._wake.is_set():  # set and not yet cleared: the writer drains these rows too
            self._wake.set()
        self.observe()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def observe(self) -> None:
        """Tell the observer (metrics) the queue length and the records dropped so far."""
        if self.observer is not None:
            self.observer(len(self._pending), self.dropped_total)

    def _start_writer(self) -> None:
        with self._flush_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._writer, name="aza-card-writer", daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        backoff = 0.0
        while True:
            self._wake.wait(timeout=PURGE_INTERVAL_SECONDS)
            # let cards gather: one INSERT for many calls costs the request threads far less CPU
            # (and GIL) than one per call; stopping cuts the wait short
            self._stop.wait(backoff or self.flush_interval)
            self._wake.clear()
            try:
                self._drain()
                self.observe()
                backoff = 0.0
                self._maybe_purge()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one failure
                if not isinstance(exc, StorageError):
                    log.error("feedback store: card writer error", extra={"error": type(exc).__name__})
                backoff = min(max(backoff * 2, 0.5), 30.0)
                self._wake.set()  # retry after the backoff
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return

    def _drain(self) -> int:
        """Insert every queued card; returns how many. Raises StorageError (cards stay queued)."""
        done = 0
        with self._flush_lock:
            if self._dropped:
                log.warning("feedback store: %d cards were not recorded (queue full)", self._dropped)
                self._dropped = 0
            pending = self._pending
            while pending:
                batch: list[dict] = []
                while pending and len(batch) < self.batch_size:
                    batch.append(pending.popleft())
                stmt = self._insert(cards_table).on_conflict_do_nothing(index_elements=["card_uuid"])
                try:
                    with self.write() as conn:
                        conn.execute(stmt, batch)
                except _REFUSED:
                    # a row the database refuses would block the queue for ever: write the others
                    done += self._insert_one_by_one(stmt, batch)
                    continue
                except SQLAlchemyError as exc:
                    pending.extendleft(reversed(batch))
                    log.error("feedback store: could not record cards; will retry", extra={"error": type(exc).__name__})
                    raise StorageError(str(exc)) from exc
                done += len(batch)
        return done

    def _insert_one_by_one(self, stmt, batch: list[dict]) -> int:
        written, refused, error = 0, 0, ""
        try:
            for i, row in enumerate(batch):
                try:
                    with self.write() as conn:
                        conn.execute(stmt, [row])
                    written += 1
                except _REFUSED as exc:
                    refused, error = refused + 1, type(exc).__name__
                except SQLAlchemyError as exc:  # the database went away: keep the rest for later
                    self._pending.extendleft(reversed(batch[i:]))
                    raise StorageError(str(exc)) from exc
        finally:
            if refused:
                log.error("feedback store: %d cards refused by the database and not recorded", refused,
                          extra={"error": error})
        return written

    def flush(self) -> int:
        """Write every card queued so far (by any thread) before returning."""
        return self._drain()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = 15.0) -> None:
        """Stop the writer and write what is queued. Called at interpreter exit."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop.set()
            self._wake.set()
            thread.join(timeout)
        try:
            self._drain()
        except StorageError:
            log.error("feedback store: %d cards lost at shutdown", len(self._pending))
        finally:
            self.engine.dispose()

    # -- feedback --------------------------------------------------------------------------------

    def record_feedback(self, service_id: str, items: list[dict], *, issuer: str | None = None,
                        require_issued: bool = False, quota: FeedbackQuota | None = None) -> FeedbackResult:
        """Store a FeedbackRequest's items once each; raises FeedbackInvalid, QuotaExceeded or StorageError.

        Each item is stored at most once per service, card and outcome (a unique index): a retry, or a
        second item about the same card with the same outcome, counts as a duplicate. ``require_issued``:
        every item must name a card this deployment issued (its row in ``cds_card``, written by any
        worker or replica), else FeedbackInvalid naming the item. ``quota``: ``issuer``'s items in the last minute and in all, checked in the
        writing transaction (on SQLite the write lock serialises the check; on PostgreSQL two requests
        racing may pass it together, overshooting by at most one request's items)."""
        received = datetime.now(timezone.utc)
        records = parse_feedback(items, now=received)
        rows = {}
        for r in records:
            key = r.dedup_key(service_id)
            rows[key] = {"dedup_key": key, "card_uuid": r.card, "service_id": service_id[:128],
                         "outcome": r.outcome, "accepted_suggestions": list(r.accepted_suggestions),
                         "override_reason_code": r.reason_code, "override_reason_system": r.reason_system,
                         "override_reason_display": r.reason_display, "user_comment": r.comment,
                         "outcome_at": r.outcome_at, "received_at": received,
                         "issuer": issuer[:255] if issuer is not None else None,
                         "once_key": once_key(service_id[:128], r.outcome, r.card)}
        ordered = [rows[k] for k in sorted(rows)]  # one lock order for every transaction: no deadlocks
        # no conflict target: a duplicate of either unique key (dedup_key, once_key) is not stored
        stmt = self._insert(feedback_table).on_conflict_do_nothing().returning(feedback_table.c.id)
        for attempt in range(4):
            try:
                with self.write() as conn:
                    if require_issued:
                        self._check_issued(conn, service_id, records)
                    if quota is not None:
                        self._check_quota(conn, issuer or "", len(ordered), quota, received)
                    stored = sum(conn.execute(stmt, row).first() is not None for row in ordered)
                break
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) in _PG_RETRY_SQLSTATES and attempt < 3:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                log.error("feedback store: could not store feedback", extra={"error": type(exc).__name__})
                raise StorageError(str(exc)) from exc
            except SQLAlchemyError as exc:
                log.error("feedback store: could not store feedback", extra={"error": type(exc).__name__})
                raise StorageError(str(exc)) from exc
        self._maybe_purge()
        return FeedbackResult(stored=stored, duplicates=len(records) - stored)

    @staticmethod
    def _check_issued(conn, service_id: str, records) -> None:
        c = cards_table.c
        wanted = sorted({r.card for r in records})
        issued: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            # issued by any service of this deployment: a card uuid is unique in cds_card, and an EHR may post
            # feedback to another service's endpoint (the spec's examples are posted to every service)
            issued.update(conn.execute(sa.select(c.card_uuid).where(c.card_uuid.in_(chunk))).scalars())
        for i, r in enumerate(records):
            if r.card not in issued:
                raise FeedbackInvalid(f"$.feedback[{i}].card: not a card this service issued", f"$.feedback[{i}].card")

    @staticmethod
    def _check_quota(conn, issuer: str, count: int, quota: FeedbackQuota, now: datetime) -> None:
        f = feedback_table.c
        since = now - timedelta(seconds=60)
        recent, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(f.received_at))
                                      .where(f.issuer == issuer, f.received_at > since)).one()
        if recent + count > quota.per_minute:
            wait = 60 - (now - oldest).total_seconds() if oldest is not None else 60
            raise QuotaExceeded(f"At most {quota.per_minute} feedback items a minute per issuer; try again later",
                                max(1, math.ceil(wait)))
        total = conn.execute(sa.select(sa.func.count()).where(f.issuer == issuer)).scalar() or 0
        if total + count > quota.total:
            raise QuotaExceeded(f"This issuer has stored its {quota.total} feedback items; ask the operator", 86400)

    # -- JWT replay cache (shared by every worker and instance) ------------------------------------

    def _jti_statements(self):
        """The two statements of a claim, built once per store (every JWT call claims a jti):
        INSERT .. ON CONFLICT DO NOTHING RETURNING, and the UPDATE that revives an expired entry."""
        statements = self.__dict__.get("_jti_sql")
        if statements is None:
            t = jti_table.c
            insert = self._insert(jti_table).on_conflict_do_nothing(index_elements=["token_key"]).returning(t.token_key)
            revive = (sa.update(jti_table).where(t.token_key == sa.bindparam("key"), t.expires_at <= sa.bindparam("now"))
                      .values(expires_at=sa.bindparam("until")))
            statements = self.__dict__["_jti_sql"] = (insert, revive)
        return statements

    def claim_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True if this (iss, jti) was not seen before (or only by a token that has expired), and
        remember it until ``expires_at``; False for a replay. One transaction: of two processes
        claiming the same token at once, exactly one wins (primary key). Raises StorageError."""
        import hashlib

        key = hashlib.sha256(f"{iss}\x00{jti}".encode("utf-8", "surrogatepass")).hexdigest()
        now = datetime.now(timezone.utc)
        t = jti_table.c
        insert, revive = self._jti_statements()
        try:
            with self.write() as conn:
                if conn.execute(insert, {"token_key": key, "expires_at": expires_at}).first() is not None:
                    claimed = True
                else:  # seen: a replay unless that token has expired (then this one is new)
                    claimed = conn.execute(revive, {"key": key, "now": now, "until": expires_at}).rowcount == 1
                if time.monotonic() - self._last_jti_purge >= JTI_PURGE_SECONDS:
                    self._last_jti_purge = time.monotonic()
                    conn.execute(sa.delete(jti_table).where(t.expires_at <= now))
        except SQLAlchemyError as exc:
            log.error("feedback store: replay cache unavailable", extra={"error": type(exc).__name__})
            raise StorageError(str(exc)) from exc
        return claimed

    # -- retention -------------------------------------------------------------------------------

    def purge_expired_comments(self, now: datetime | None = None) -> int:
        """Delete user comments received more than ``comment_retention_days`` ago; returns how many."""
        self._last_purge = time.monotonic()
        if self.comment_retention_days is None:
            return 0
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=self.comment_retention_days)
        f = feedback_table.c
        stmt = (sa.update(feedback_table).where(f.user_comment.is_not(None), f.received_at < cutoff)
                .values(user_comment=None))
        try:
            with self.write() as conn:
                return max(conn.execute(stmt).rowcount, 0)
        except SQLAlchemyError as exc:
            log.error("feedback store: could not delete expired comments", extra={"error": type(exc).__name__})
            return 0

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge >= PURGE_INTERVAL_SECONDS:
            self.purge_expired_comments()

    # -- reading ---------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.read() as conn:
            return {"cards": conn.scalar(sa.select(sa.func.count()).select_from(cards_table)) or 0,
                    "feedback": conn.scalar(sa.select(sa.func.count()).select_from(feedback_table)) or 0}
