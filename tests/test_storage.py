"""The feedback store, on SQLite and on a real PostgreSQL server (every ``backend_url`` test runs on both).

In process: schema and migrations, what a card leaves behind, idempotent feedback, validation,
retention, the card queue. With real processes: several service instances and clients writing
at once, and a service stopped and started again.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from service import create_app
from service.cli import main
from service.config import Config
from service.storage import FeedbackStore, StorageError, make_engine
from service.storage import migrate
from service.storage.models import VERSION_TABLE, cards, feedback, metadata
from service.storage.store import normalise_url
from tests.builders import PID, hook_request, phenotype_tpmt, prefetch
from tests.issued import issue

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "fixtures" / "public" / "hl7-cds-hooks-spec-3.0.0-ballot"
SIGN = "/cds-services/thiopurine-order-sign"
FEEDBACK = SIGN + "/feedback"
NAR = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


def spec_feedback_bodies() -> dict[str, dict]:
    """The CDS Hooks specification's example feedback bodies (spec-22, -23, -24: a top-level "feedback")."""
    out = {}
    for path in sorted(SPEC.glob("spec-*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and isinstance(body.get("feedback"), list):
            out[path.name] = body
    return out



def make_client(url: str, **config):
    app = create_app({"auth_required": False, "database_url": url, **config})
    return app, app.test_client(), app.extensions["aza_feedback_store"]


def poor_metabolizer_request() -> dict:
    return hook_request(pre=prefetch(pgx=[phenotype_tpmt("Poor")]))


def item(card: str, outcome: str = "overridden", when: str = "2026-11-20T09:30:00Z", **extra) -> dict:
    out = {"card": card, "outcome": outcome, "outcomeTimestamp": when, **extra}
    if outcome == "accepted" and "acceptedSuggestions" not in out:
        out["acceptedSuggestions"] = [{"id": f"sugg-{card}"}]
    return out


def rows(store: FeedbackStore, table) -> list[dict]:
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


# -- schema ---------------------------------------------------------------------------------------


def test_first_start_migrates_and_the_migrations_match_the_models(backend_url):
    store = FeedbackStore.open(backend_url)
    try:
        with store.read() as conn:
            names = set(sa.inspect(conn).get_table_names())
            assert {"cds_card", "cds_feedback", VERSION_TABLE} <= names
            assert migrate.current_revision(conn) == migrate.head_revision() == migrate.HEAD_REVISION
            from alembic.autogenerate import compare_metadata
            from alembic.runtime.migration import MigrationContext

            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            assert compare_metadata(ctx, metadata) == []
        assert migrate.upgrade(store.engine) is False  # second start: one SELECT, nothing to do
    finally:
        store.close()


def _start_worker(url: str, start_at: float) -> bool:
    """What each worker does when it boots: open the store, migrating if needed. True if it migrated."""
    store = FeedbackStore(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))  # all processes reach this line, then go at once
        migrated = migrate.upgrade(store.engine)
        assert store.counts() == {"cards": 0, "feedback": 0}
        return migrated
    finally:
        store.close()


def test_workers_starting_together_migrate_once(backend_url):
    start_at = time.time() + 1.5
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        migrated = list(pool.map(_start_worker, [backend_url] * 4, [start_at] * 4))
    assert sorted(migrated) == [False, False, False, True]  # one migrated, the others waited and found it done
    engine = make_engine(backend_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [migrate.HEAD_REVISION]
    finally:
        engine.dispose()


def test_sqlite_data_directory_is_created_on_first_start(tmp_path, monkeypatch):
    monkeypatch.delenv("AZA_CDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("AZA_CDS_DATA_DIR", str(tmp_path / "new" / "data"))
    app = create_app({"auth_required": False})
    store = app.extensions["aza_feedback_store"]
    try:
        assert (tmp_path / "new" / "data" / "feedback.sqlite3").is_file()
        assert store.dialect == "sqlite"
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()


def test_database_urls():
    assert normalise_url("postgres://u:p@db/x").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql://u:p@db/x").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u:p@db/x").drivername == "postgresql+psycopg"
    store = FeedbackStore("postgresql+psycopg://aza:secret@db.example/cds")  # no connection is made
    assert "secret" not in store.display_url
    store.close()
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("mysql://u:p@db/x")


def test_retention_setting_from_the_environment():
    assert Config.from_env({}).comment_retention_days == 365
    assert Config.from_env({"AZA_CDS_COMMENT_RETENTION_DAYS": "30"}).comment_retention_days == 30
    assert Config.from_env({"AZA_CDS_COMMENT_RETENTION_DAYS": "never"}).comment_retention_days is None
    assert Config.from_env({"AZA_CDS_CARD_FLUSH_SECONDS": "2"}).card_flush_seconds == 2.0
    with pytest.raises(ValueError):
        Config.from_env({"AZA_CDS_COMMENT_RETENTION_DAYS": "-3"})


# -- cards ----------------------------------------------------------------------------------------


def test_cards_are_recorded_without_patient_data(backend_url):
    app, client, store = make_client(backend_url)
    try:
        req = poor_metabolizer_request()
        resp = client.post(SIGN, json=req)
        assert resp.status_code == 200
        shown = resp.get_json()["cards"]
        assert shown
        store.flush()
        stored = {r["card_uuid"]: r for r in rows(store, cards)}
        assert set(stored) == {c["uuid"] for c in shown}
        for c in shown:
            row = stored[c["uuid"]]
            assert row["service_id"] == "thiopurine-order-sign" and row["hook"] == "order-sign"
            assert row["rule_id"] == c["source"]["topic"]["code"]
            assert row["indicator"] == c["indicator"]
            assert row["knowledge_version"] == c["extension"]["azathioprine-cds"]["knowledgeVersion"]
            assert row["hook_instance"] == req["hookInstance"]
            assert row["issued_at"].tzinfo is not None
            assert abs(row["issued_at"] - datetime.now(timezone.utc)) < timedelta(minutes=1)
        dump = json.dumps(rows(store, cards), default=str)
        for private in (PID, "Patient/", "Practitioner", "dr-1", "mg", "MedicationRequest"):
            assert private not in dump
    finally:
        store.close()


def test_a_call_without_cards_records_nothing(backend_url):
    app, client, store = make_client(backend_url)
    try:
        assert client.post(SIGN, json=hook_request(pre=prefetch())).get_json()["cards"] == []
        store.flush()
        assert store.counts()["cards"] == 0
    finally:
        store.close()


def test_card_queue_survives_a_database_outage(backend_url, monkeypatch):
    store = FeedbackStore.open(backend_url)
    try:
        card = {"uuid": "c-outage", "indicator": "warning", "source": {"topic": {"code": "pgx-test-missing"}},
                "extension": {"azathioprine-cds": {"knowledgeVersion": "k1"}}}
        real = store.write

        def broken():
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

        monkeypatch.setattr(store, "write", broken)
        store._pending.append({"card_uuid": "c-outage", "service_id": "s", "hook": "order-sign",
                               "rule_id": "pgx-test-missing", "rule_title": None, "indicator": "warning",
                               "knowledge_version": "k1", "hook_instance": "h",
                               "issued_at": datetime.now(timezone.utc)})
        with pytest.raises(StorageError):
            store.flush()
        assert store.pending == 1  # kept for the next try
        monkeypatch.setattr(store, "write", real)
        store.record_cards(service_id="s", hook="order-sign", hook_instance="h", cards=[card])  # same uuid: once
        store.flush()
        assert [r["card_uuid"] for r in rows(store, cards)] == ["c-outage"]
    finally:
        store.close()


def test_a_card_the_database_refuses_does_not_block_the_others(backend_url):
    store = FeedbackStore.open(backend_url)
    try:
        good = {"uuid": "good", "indicator": "info", "source": {"topic": {"code": "r"}}}
        poison = {"uuid": "poison", "indicator": "info", "source": {"topic": {"code": None}}}  # NOT NULL
        store.record_cards(service_id="s", hook="order-sign", hook_instance="a\x00b\ud800", cards=[poison, good])
        store.flush()
        assert store.pending == 0
        assert [(r["card_uuid"], r["hook_instance"]) for r in rows(store, cards)] == [("good", "ab?")]
    finally:
        store.close()


def _record_in_child(store: FeedbackStore) -> None:
    card = {"uuid": "from-child", "indicator": "info", "source": {"topic": {"code": "r"}}}
    store.record_cards(service_id="s", hook="order-sign", hook_instance="h", cards=[card])
    store.close()  # what atexit does when the process ends


def test_a_forked_worker_gets_its_own_writer(tmp_path):
    """A store created before gunicorn forks (preload) still records in each worker."""
    store = FeedbackStore.open(f"sqlite:///{tmp_path}/f.sqlite3")
    try:
        card = {"uuid": "from-parent", "indicator": "info", "source": {"topic": {"code": "r"}}}
        store.record_cards(service_id="s", hook="order-sign", hook_instance="h", cards=[card])
        child = multiprocessing.get_context("fork").Process(target=_record_in_child, args=(store,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        store.flush()
        assert sorted(r["card_uuid"] for r in rows(store, cards)) == ["from-child", "from-parent"]
    finally:
        store.close()


def test_card_queue_is_bounded_and_never_blocks_the_hook(tmp_path):
    store = FeedbackStore.open(f"sqlite:///{tmp_path}/f.sqlite3", max_pending=5)
    try:
        store._start_writer = lambda: None  # type: ignore[method-assign]  # no writer: the queue only fills
        store._thread = object()  # type: ignore[assignment]
        card = {"indicator": "info", "source": {"topic": {"code": "r"}}}
        for i in range(20):
            store.record_cards(service_id="s", hook="h", hook_instance="i", cards=[{**card, "uuid": f"u{i}"}])
        assert store.pending == 5 and store._dropped == 15
    finally:
        store._thread = None
        store.close()


def test_record_cards_costs_microseconds(tmp_path, capsys):
    """The hot path: what one hook call with two cards pays for recording them."""
    store = FeedbackStore.open(f"sqlite:///{tmp_path}/f.sqlite3")
    try:
        shown = [{"uuid": f"u-{i}", "indicator": "warning",
                  "source": {"topic": {"code": "pgx-reduce-dose", "display": "TPMT/NUDT15 intermediate"}},
                  "extension": {"azathioprine-cds": {"knowledgeVersion": "2026.11.0"}}} for i in range(2)]
        n = 5000
        started = time.perf_counter()
        for i in range(n):
            store.record_cards(service_id="thiopurine-order-sign", hook="order-sign", hook_instance=f"h{i}",
                               cards=[{**c, "uuid": f"{c['uuid']}-{i}"} for c in shown])
        per_call_us = (time.perf_counter() - started) / n * 1e6
        store.flush()
        assert store.counts()["cards"] == 2 * n
        with capsys.disabled():
            print(f"\nrecord_cards: {per_call_us:.1f} µs per hook call with 2 cards (queued; the INSERT is off the request)")
        assert per_call_us < 200, per_call_us  # generous: a busy CI machine; typically ~5 µs
    finally:
        store.close()


# -- feedback -------------------------------------------------------------------------------------


def test_feedback_is_stored_once_and_for_cards_issued_elsewhere(backend_url):
    """Once per card and outcome; about a card this service issued, in this process or in another one that
    shares the store; never about a card no instance issued (issue 18 R5)."""
    app, client, store = make_client(backend_url)
    try:
        shown = client.post(SIGN, json=poor_metabolizer_request()).get_json()["cards"]
        reason = {"system": NAR, "code": "risk-benefit-ratio", "display": "Recipient assessment of risk/benefit ratio"}
        ours = item(shown[0]["uuid"], overrideReason={"reason": reason, "userComment": "Stable on this dose for years"})
        resp = client.post(FEEDBACK, json={"feedback": [ours]})
        assert resp.status_code == 200 and resp.get_json() == {"stored": 1, "duplicates": 0}
        # a retry, the same instant written another way, and the same item twice in one body
        again = {**ours, "outcomeTimestamp": "2026-11-20T10:30:00+01:00"}
        assert client.post(FEEDBACK, json={"feedback": [ours]}).get_json() == {"stored": 0, "duplicates": 1}
        assert client.post(FEEDBACK, json={"feedback": [again, again]}).get_json() == {"stored": 0, "duplicates": 2}
        # the same card and outcome again, said differently: not stored twice
        reworded = {**ours, "overrideReason": {"reason": reason, "userComment": "something else"}}
        assert client.post(FEEDBACK, json={"feedback": [reworded]}).get_json() == {"stored": 0, "duplicates": 1}
        # a card no instance of this store issued: refused, naming the item
        foreign = item("not-issued-here", "accepted", acceptedSuggestions=[{"id": "b"}, {"id": "a"}])
        refused = client.post(FEEDBACK, json={"feedback": [foreign]})
        assert refused.status_code == 400 and refused.get_json()["issue"][0]["expression"] == ["$.feedback[0].card"]
        # ... until an instance sharing the store (another replica) has issued it
        issue(store, "not-issued-here")
        assert client.post(FEEDBACK, json={"feedback": [foreign]}).get_json() == {"stored": 1, "duplicates": 0}
        reordered = {**foreign, "acceptedSuggestions": [{"id": "a"}, {"id": "b"}]}
        assert client.post(FEEDBACK, json={"feedback": [reordered]}).get_json() == {"stored": 0, "duplicates": 1}
        # a different outcome for the same card is a different item
        later = item(shown[0]["uuid"], "accepted", when="2026-11-20T09:31:00Z")
        assert client.post(FEEDBACK, json={"feedback": [later]}).get_json() == {"stored": 1, "duplicates": 0}

        stored = {(r["card_uuid"], r["outcome"]): r for r in rows(store, feedback)}
        assert len(stored) == 3
        row = stored[(shown[0]["uuid"], "overridden")]
        assert row["service_id"] == "thiopurine-order-sign"
        assert (row["override_reason_code"], row["override_reason_system"], row["override_reason_display"]) == \
            ("risk-benefit-ratio", NAR, "Recipient assessment of risk/benefit ratio")
        assert row["user_comment"] == "Stable on this dose for years"
        assert row["outcome_at"] == datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
        assert abs(row["received_at"] - datetime.now(timezone.utc)) < timedelta(minutes=1)
        assert row["accepted_suggestions"] == []
        assert stored[("not-issued-here", "accepted")]["accepted_suggestions"] == ["b", "a"]
        assert len({r["dedup_key"] for r in stored.values()}) == 3
    finally:
        store.close()


def test_spec_feedback_fixtures_are_stored(backend_url):
    bodies = spec_feedback_bodies()
    assert {"spec-22-example-suggestion-accepted.json",
            "spec-23-example-overridden-guidance-without-overridereason.json",
            "spec-24-example-overridden-guidance-with-overridereason.json"} <= set(bodies)
    app, client, store = make_client(backend_url)
    try:
        issue(store, *{i["card"] for body in bodies.values() for i in body["feedback"]})
        for name, body in bodies.items():
            resp = client.post(FEEDBACK, json=body)
            assert resp.status_code == 200, (name, resp.get_data(as_text=True))
            assert resp.get_json() == {"stored": len(body["feedback"]), "duplicates": 0}
        by_card = {r["card_uuid"]: r for r in rows(store, feedback)}
        assert by_card["4e0a3a1e-3283-4575-ab82-028d55fe2719"]["accepted_suggestions"] == \
            ["e56e1945-20b3-4393-8503-a1a20fd73152"]
        assert by_card["f6b95768-b1c8-40dc-8385-bf3504b82ffb"]["override_reason_code"] is None
        spec24 = by_card["9368d37b-283f-44a0-93ea-547cebab93ed"]
        assert spec24["override_reason_code"] == "d7ecf885"
        assert spec24["user_comment"] == "A comment entered by the clinician."
        for body in bodies.values():  # replayed: nothing new
            assert client.post(FEEDBACK, json=body).get_json()["stored"] == 0
    finally:
        store.close()


@pytest.mark.parametrize("bad,field", [
    (item("c", when="yesterday"), "$.feedback[0].outcomeTimestamp"),
    (item("c", when="2026-13-45T10:00:00Z"), "$.feedback[0].outcomeTimestamp"),
    (item("c", when="2999-01-01T00:00:00Z"), "$.feedback[0].outcomeTimestamp"),
    (item("c", when="0001-01-01T00:00:00+01:00"), "$.feedback[0].outcomeTimestamp"),  # found by schemathesis
    (item("c", when="1969-12-31T23:59:59Z"), "$.feedback[0].outcomeTimestamp"),
    (item("c" * 300), "$.feedback[0].card"),
    (item("c\x00"), "$.feedback[0].card"),
    (item("c", overrideReason={"userComment": "lone \ud800 surrogate"}), "$.feedback[0].overrideReason.userComment"),
    (item("c", overrideReason={"userComment": "x" * 5000}), "$.feedback[0].overrideReason.userComment"),
    (item("c", overrideReason={"reason": {"system": NAR, "code": "k" * 300}}),
     "$.feedback[0].overrideReason.reason.code"),
    (item("c", "accepted", acceptedSuggestions=[{"id": "s" * 300}]), "$.feedback[0].acceptedSuggestions[0].id"),
])
def test_invalid_feedback_is_400_naming_the_field(bad, field):
    app, client, store = make_client("sqlite:///:memory:")
    try:
        resp = client.post(FEEDBACK, json={"feedback": [bad]})
        assert resp.status_code == 400, resp.get_data(as_text=True)
        issue = resp.get_json()["issue"][0]
        assert resp.get_json()["resourceType"] == "OperationOutcome"
        assert issue["expression"] == [field] and field in issue["diagnostics"]
        two = client.post(FEEDBACK, json={"feedback": [item("fine"), bad]})
        assert two.get_json()["issue"][0]["expression"] == [field.replace("[0]", "[1]", 1)]
        assert store.counts()["feedback"] == 0  # nothing of a rejected body is kept
    finally:
        store.close()


def test_store_unavailable_is_503_and_safe_to_retry(monkeypatch):
    app, client, store = make_client("sqlite:///:memory:")
    try:
        def down(*a, **k):
            raise StorageError("connection refused")

        issue(store, "c")
        monkeypatch.setattr(store, "record_feedback", down)
        resp = client.post(FEEDBACK, json={"feedback": [item("c")]})
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert resp.get_json()["resourceType"] == "OperationOutcome"
        monkeypatch.undo()
        assert client.post(FEEDBACK, json={"feedback": [item("c")]}).get_json() == {"stored": 1, "duplicates": 0}
    finally:
        store.close()


def test_comments_are_deleted_after_the_retention_period(backend_url):
    app, client, store = make_client(backend_url, comment_retention_days=30)
    try:
        issue(store, "c1", "c2")
        body = {"feedback": [item("c1", overrideReason={"reason": {"system": NAR, "code": "need-more-info"},
                                                        "userComment": "waiting for TPMT result"}),
                             item("c2", overrideReason={"userComment": "other comment"})]}
        assert client.post(FEEDBACK, json=body).get_json()["stored"] == 2
        now = datetime.now(timezone.utc)
        assert store.purge_expired_comments(now=now + timedelta(days=29)) == 0
        assert store.purge_expired_comments(now=now + timedelta(days=31)) == 2
        for r in rows(store, feedback):
            assert r["user_comment"] is None
            assert r["outcome"] == "overridden" and r["outcome_at"]  # the rest is kept
        assert rows(store, feedback)[0]["override_reason_code"] in ("need-more-info", None)
        # the same item posted again after its comment expired is still the same item
        assert client.post(FEEDBACK, json=body).get_json() == {"stored": 0, "duplicates": 2}
    finally:
        store.close()
    keep = FeedbackStore.open(backend_url, comment_retention_days=None)
    try:
        assert keep.purge_expired_comments(now=datetime.now(timezone.utc) + timedelta(days=9999)) == 0
    finally:
        keep.close()


# -- real processes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``azathioprine-cds serve --insecure-no-auth`` (gunicorn) on a loopback port."""

    def __init__(self, url: str, log: Path, *, workers: int = 2, threads: int = 4, env: dict | None = None) -> None:
        self.url, self.log, self.workers, self.threads, self.env = url, log, workers, threads, env or {}
        self.proc: subprocess.Popen | None = None
        self.base = ""

    def start(self) -> "Server":
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "AZA_CDS_DATABASE_URL": self.url, **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(self.workers), "--threads", str(self.threads)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        return self

    def wait_ready(self, timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/cds-services", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc is None or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"server did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, wait: bool = True) -> int | None:
        """SIGTERM: gunicorn's graceful shutdown (workers finish, then exit normally)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30) if wait else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def _start(url: str, n: int = 1, **kw) -> list[Server]:
        new = [Server(url, tmp_path / f"server-{len(started) + i}.log", **kw).start() for i in range(n)]
        started.extend(new)
        return [s.wait_ready() for s in new]

    yield _start
    for s in started:
        try:
            s.stop()
        except subprocess.TimeoutExpired:
            s.kill()


WORKERS, ITEMS, SHARED, HOOK_CALLS, CHUNK = 4, 500, 100, 10, 5


def _shared_items() -> list[dict]:
    return [item(f"shared-{i}", "overridden" if i % 3 else "accepted") for i in range(SHARED)]


def _client(bases: list[str], worker: int) -> dict:
    """One client process: hook calls, then 500 feedback items (400 its own, 100 every client sends)."""
    session = requests.Session()
    uuids, stored, duplicates, requests_made = [], 0, 0, 0
    for i in range(HOOK_CALLS):
        resp = session.post(bases[i % len(bases)] + SIGN, json=poor_metabolizer_request(), timeout=30)
        resp.raise_for_status()
        uuids += [c["uuid"] for c in resp.json()["cards"]]
    own = [item(f"w{worker}-{i}", "accepted" if i % 4 == 0 else "overridden",
                overrideReason={"reason": {"system": NAR, "code": "risk-benefit-ratio"}, "userComment": f"note {i}"})
           for i in range(ITEMS - SHARED)]
    items = own + _shared_items()
    random.Random(worker).shuffle(items)
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    chunks.append(chunks[0])  # a client retry of a body already stored
    for j, chunk in enumerate(chunks):
        resp = session.post(bases[(j + worker) % len(bases)] + FEEDBACK, json={"feedback": chunk}, timeout=30)
        assert resp.status_code == 200, resp.text
        stored += resp.json()["stored"]
        duplicates += resp.json()["duplicates"]
        requests_made += 1
    return {"uuids": uuids, "stored": stored, "duplicates": duplicates, "posted": len(items) + len(chunks[0])}


def test_several_processes_post_at_once_nothing_lost_nothing_doubled(backend_url, servers):
    """2 service instances × 2 gunicorn workers, 4 client processes × 500 feedback items + hook calls."""
    instances = servers(backend_url, 2, workers=2, threads=4)
    bases = [s.base for s in instances]
    # the cards the clients give feedback on, issued as a hook call of another replica would
    made_up = [f"w{w}-{i}" for w in range(WORKERS) for i in range(ITEMS - SHARED)] + [f"shared-{i}" for i in range(SHARED)]
    issuer_store = FeedbackStore.open(backend_url)
    try:
        issue(issuer_store, *made_up)
    finally:
        issuer_store.close()
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_client, [bases] * WORKERS, range(WORKERS)))
    for s in instances:
        s.stop(wait=False)
    assert [s.proc.wait(30) for s in instances] == [0, 0]  # graceful: queued cards are written at exit

    expected_rows = WORKERS * (ITEMS - SHARED) + SHARED
    assert sum(r["stored"] for r in results) == expected_rows
    assert sum(r["duplicates"] for r in results) == sum(r["posted"] for r in results) - expected_rows
    issued = [u for r in results for u in r["uuids"]]
    assert len(issued) >= WORKERS * HOOK_CALLS and len(set(issued)) == len(issued)

    engine = make_engine(backend_url)
    try:
        with engine.connect() as conn:
            f = feedback.c
            assert conn.scalar(sa.select(sa.func.count()).select_from(feedback)) == expected_rows
            distinct = sa.select(f.card_uuid, f.outcome, f.outcome_at).distinct().subquery()
            assert conn.scalar(sa.select(sa.func.count()).select_from(distinct)) == expected_rows
            assert conn.scalar(sa.select(sa.func.count()).where(f.card_uuid.like("shared-%"))) == SHARED
            assert sorted(conn.execute(sa.select(cards.c.card_uuid)).scalars()) == sorted(issued + made_up)
    finally:
        engine.dispose()


def test_data_survives_a_restart(backend_url, servers, capsys):
    # cards wait 60 s in the queue: only the shutdown flush can have written them
    (first,) = servers(backend_url, 1, workers=1, threads=2, env={"AZA_CDS_CARD_FLUSH_SECONDS": "60"})
    session = requests.Session()
    issued = []
    for _ in range(6):
        resp = session.post(first.base + SIGN, json=poor_metabolizer_request(), timeout=30)
        issued += [c["uuid"] for c in resp.json()["cards"]]
    body = {"feedback": [item(u, "overridden", overrideReason={"reason": {"system": NAR, "code": "need-more-info"}})
                         for u in issued[:4]] + [item(u, "accepted") for u in issued[4:6]]}
    assert session.post(first.base + FEEDBACK, json=body, timeout=30).json() == {"stored": 6, "duplicates": 0}
    assert first.stop() == 0  # SIGTERM while the cards are still queued

    (second,) = servers(backend_url, 1, workers=1, threads=2)
    # the restarted service knows every item: the same body again stores nothing
    assert session.post(second.base + FEEDBACK, json=body, timeout=30).json() == {"stored": 0, "duplicates": 6}
    assert second.stop() == 0

    capsys.readouterr()
    assert main(["report", "--format", "csv", "--database-url", backend_url]) == 0
    total = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total,"))
    assert total.split(",")[3:9] == [str(len(issued)), "6", "6", "2", "4", "0.6667"]  # shown, answered, feedback, ...
    store = FeedbackStore.open(backend_url)
    try:
        assert sorted(r["card_uuid"] for r in rows(store, cards)) == sorted(issued)
    finally:
        store.close()
