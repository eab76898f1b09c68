"""Feedback that proves itself (issue 18 R5): only about cards this service issued, once per card and
outcome, comments capped, a quota per issuer per minute and in total (429 with Retry-After), and the
migration that adds this keeps every row already stored (SQLite and PostgreSQL)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.storage import FeedbackQuota, FeedbackStore, QuotaExceeded, make_engine
from service.storage.feedback import MAX_COMMENT
from service.storage.models import feedback
from tests.issued import issue
from tests.test_auth import bearer, claims, keys, make_app, token, trust  # noqa: F401  (fixtures)

SIGN = "/cds-services/thiopurine-order-sign"
FEEDBACK = SIGN + "/feedback"


def item(card: str, outcome: str = "overridden", comment: str | None = None) -> dict:
    out: dict = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-20T09:30:00Z"}
    if outcome == "accepted":
        out["acceptedSuggestions"] = [{"id": "s1"}]
    if comment is not None:
        out["overrideReason"] = {"userComment": comment}
    return out


@pytest.fixture
def open_client():
    from service import create_app

    app = create_app({"auth_required": False, "database_url": "sqlite://"})
    yield app.test_client(), app.extensions["aza_feedback_store"]
    app.extensions["aza_feedback_store"].close()


def test_feedback_about_a_card_never_issued_is_refused_and_nothing_is_stored(open_client):
    client, store = open_client
    issue(store, "known")
    resp = client.post(FEEDBACK, json={"feedback": [item("known"), item("never-issued")]})
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["expression"] == ["$.feedback[1].card"]
    assert store.counts()["feedback"] == 0


def test_a_card_issued_by_another_service_of_this_deployment_counts_once_per_service(open_client):
    client, store = open_client
    issue(store, "other-service-card", service_id="thiopurine-order-select")
    assert client.post(FEEDBACK, json={"feedback": [item("other-service-card")]}).get_json()["stored"] == 1
    assert client.post(FEEDBACK, json={"feedback": [item("other-service-card")]}).get_json()["stored"] == 0


def test_once_per_card_and_outcome(open_client):
    client, store = open_client
    issue(store, "c")
    first = client.post(FEEDBACK, json={"feedback": [item("c", comment="one")]}).get_json()
    assert first == {"stored": 1, "duplicates": 0}
    many = [item("c", comment=f"flood {i}") for i in range(50)]
    assert client.post(FEEDBACK, json={"feedback": many}).get_json() == {"stored": 0, "duplicates": 50}
    assert client.post(FEEDBACK, json={"feedback": [item("c", "accepted")]}).get_json()["stored"] == 1
    assert store.counts()["feedback"] == 2


def test_a_comment_over_the_cap_is_refused(open_client):
    client, store = open_client
    issue(store, "c")
    assert client.post(FEEDBACK, json={"feedback": [item("c", comment="x" * MAX_COMMENT)]}).status_code == 200
    issue(store, "d")
    resp = client.post(FEEDBACK, json={"feedback": [item("d", comment="x" * (MAX_COMMENT + 1))]})
    assert resp.status_code == 400 and "overrideReason.userComment" in resp.get_json()["issue"][0]["expression"][0]
    assert MAX_COMMENT <= 1000


def _post(client, keys, items):  # noqa: F811
    return client.post(FEEDBACK, json={"feedback": items},
                       headers=bearer(token(keys["es384"], claims(aud="http://localhost" + FEEDBACK))))


def test_an_issuer_over_its_quota_per_minute_gets_429_with_retry_after(trust, keys):  # noqa: F811
    app = make_app(trust)
    app.extensions["aza_feedback_quota"] = FeedbackQuota(per_minute=3, total=100)
    client, store = app.test_client(), app.extensions["aza_feedback_store"]
    cards = [str(uuid.uuid4()) for _ in range(6)]
    issue(store, *cards)
    assert _post(client, keys, [item(c) for c in cards[:3]]).get_json() == {"stored": 3, "duplicates": 0}
    resp = _post(client, keys, [item(cards[3])])
    assert resp.status_code == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert store.counts()["feedback"] == 3  # what was acknowledged is kept; nothing of the refused call
    store.close()


def test_an_issuer_over_its_total_gets_429(trust, keys):  # noqa: F811
    app = make_app(trust)
    app.extensions["aza_feedback_quota"] = FeedbackQuota(per_minute=100, total=2)
    client, store = app.test_client(), app.extensions["aza_feedback_store"]
    cards = [str(uuid.uuid4()) for _ in range(3)]
    issue(store, *cards)
    assert _post(client, keys, [item(c) for c in cards[:2]]).status_code == 200
    resp = _post(client, keys, [item(cards[2])])
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    store.close()


def test_the_store_checks_the_quota_in_the_writing_transaction():
    store = FeedbackStore.open("sqlite://")
    try:
        issue(store, "a", "b")
        quota = FeedbackQuota(per_minute=1, total=10)
        assert store.record_feedback("thiopurine-order-sign", [item("a")], issuer="iss", quota=quota).stored == 1
        with pytest.raises(QuotaExceeded) as exc:
            store.record_feedback("thiopurine-order-sign", [item("b")], issuer="iss", quota=quota)
        assert 1 <= exc.value.retry_after <= 60
        # another issuer has its own quota
        assert store.record_feedback("thiopurine-order-sign", [item("b")], issuer="other", quota=quota).stored == 1
    finally:
        store.close()


def test_the_migration_keeps_every_stored_row(backend_url):
    """A store at revision 0002 holding the same card and outcome three times: after the upgrade all three
    rows are there; the earliest carries the once-key, so a fourth is not stored."""
    from alembic import command

    from service.storage import migrate

    engine = make_engine(backend_url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0002")
        now = datetime.now(timezone.utc)
        old = sa.table("cds_feedback", *(sa.column(c) for c in (
            "dedup_key", "card_uuid", "service_id", "outcome", "accepted_suggestions", "user_comment",
            "outcome_at", "received_at")))
        with engine.begin() as conn:
            for i in range(3):
                conn.execute(sa.insert(old).values(
                    dedup_key=f"k{i}", card_uuid="c", service_id="thiopurine-order-sign", outcome="overridden",
                    accepted_suggestions="[]", user_comment=f"comment {i}",
                    outcome_at=(now - timedelta(minutes=i)).replace(tzinfo=None) if engine.dialect.name == "sqlite"
                    else now - timedelta(minutes=i),
                    received_at=now.replace(tzinfo=None) if engine.dialect.name == "sqlite" else now))
    finally:
        engine.dispose()
    store = FeedbackStore.open(backend_url)
    try:
        with store.read() as conn:
            rows = conn.execute(sa.select(feedback.c.id, feedback.c.user_comment, feedback.c.once_key)
                                .order_by(feedback.c.id)).all()
        assert [r.user_comment for r in rows] == ["comment 0", "comment 1", "comment 2"]
        assert [r.once_key for r in rows] == ["thiopurine-order-sign|overridden|c", None, None]
        issue(store, "c")
        assert store.record_feedback("thiopurine-order-sign", [item("c", comment="again")]).stored == 0
        assert store.counts()["feedback"] == 3
    finally:
        store.close()
