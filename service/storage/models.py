"""Tables of the feedback store (SQLAlchemy Core).

Three tables, no patient data in any:

``cds_card``      one row per card the service returned: which rule, how severe, which
                  knowledge version, for which hook call (``hookInstance``) and when.
``cds_feedback``  one row per CDS Hooks feedback item: the card's uuid, the outcome, the
                  accepted suggestion ids, the override reason and comment, when.
``cds_jti``       the JWT replay cache shared by every worker and instance: one row per
                  accepted token (a hash of its issuer and ``jti``) until the token expires.

There is deliberately no foreign key from feedback to card (rows stored before revision 0003
may name cards this store never saw; they are kept and reported as "card not issued here").
Since 0003 the feedback endpoint stores an item only when its card has a row in ``cds_card``
(written by any worker or replica: they share the store), once per service, card and
outcome (``once_key``), within the sending issuer's quota (``issuer``). The Alembic migrations in
``migrations/versions`` create exactly these tables; ``tests/test_storage.py`` checks that
the two never drift apart.
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


def once_key(service_id: str, outcome: str, card_uuid: str) -> str:
    """``cds_feedback.once_key``: one item per service, card and outcome (migration 0003 computes the same)."""
    return f"{service_id}|{outcome}|{card_uuid}"

VERSION_TABLE = "aza_cds_alembic_version"  # its own name, so the store can share a database

# naming convention: constraint names are stable across back ends and migrations
metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
})


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python; ``timestamptz`` on PostgreSQL, UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the feedback store; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text (only through hand-written SQL)
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

cards = sa.Table(
    "cds_card", metadata,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("service_id", sa.String(128), nullable=False),
    sa.Column("hook", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("rule_title", sa.String(255), nullable=True),  # source.topic.display: the rule's name
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("knowledge_version", sa.String(64), nullable=False),
    sa.Column("hook_instance", sa.String(128), nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Index(None, "issued_at"),
    sa.Index(None, "rule_id"),
)

feedback = sa.Table(
    "cds_feedback", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # sha256 of the item's normalised content: the same item posted twice is stored once
    sa.Column("dedup_key", sa.String(64), nullable=False),
    sa.Column("card_uuid", sa.String(255), nullable=False),
    sa.Column("service_id", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accepted_suggestions", sa.JSON(), nullable=False),  # list of suggestion uuids
    sa.Column("override_reason_code", sa.String(255), nullable=True),
    sa.Column("override_reason_system", sa.String(1024), nullable=True),
    sa.Column("override_reason_display", sa.String(1024), nullable=True),
    sa.Column("user_comment", sa.Text(), nullable=True),  # deleted after the retention period
    sa.Column("outcome_at", UTCDateTime(), nullable=False),  # the item's outcomeTimestamp
    sa.Column("received_at", UTCDateTime(), nullable=False),
    # revision 0003: who sent it (quotas), and service|outcome|card under a unique index (once per card and
    # outcome); NULL in rows stored before (the earliest of each card and outcome got its key)
    sa.Column("issuer", sa.String(255), nullable=True),
    sa.Column("once_key", sa.String(512), nullable=True),
    sa.UniqueConstraint("dedup_key"),
    sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="outcome"),
    sa.Index(None, "card_uuid"),
    sa.Index(None, "outcome_at"),
    sa.Index(None, "received_at"),
    sa.Index(None, "once_key", unique=True),
    sa.Index(None, "issuer", "received_at"),
)

jti = sa.Table(
    "cds_jti", metadata,
    # sha256 of (iss, jti): bounded length whatever the token says; the jti itself is not kept
    sa.Column("token_key", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),  # the token's exp plus the clock leeway
    sa.Index(None, "expires_at"),
)
