"""Bring the database to the newest schema (``alembic upgrade head``), safely from many processes.

Every worker of every replica calls :func:`upgrade` when it starts. The common case (already
at head) costs one SELECT. Otherwise the upgrade runs inside one transaction that first takes a
database-wide lock, so that workers starting together migrate once and the others wait, then
find the schema current:

* PostgreSQL: ``pg_advisory_xact_lock`` (released at commit/rollback); DDL is transactional.
* SQLite: the store's connections open write transactions with ``BEGIN IMMEDIATE`` (see
  ``store.make_engine``), which is the database's write lock; others wait on the busy timeout.

A new, empty store (none of the store's tables, no version row) is built directly at head, as
Alembic's cookbook describes ("building an up-to-date database from scratch": ``create_all``, then
stamp head), under the same lock: the tables from ``models.metadata`` and the version row
``HEAD_REVISION``. Alembic is then not imported at all, which is most of a first start's
storage cost. ``tests/test_rulesstart_storage.py`` proves that a store built so and one migrated by
Alembic from nothing have the same schema, and that Alembic reads the built one as current.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from .models import VERSION_TABLE, metadata

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 0x617A612D636473  # "aza-cds": one application-wide advisory lock id


# The newest migration's revision id. Checked against Alembic's own head by the tests, so that
# an up-to-date database costs one SELECT at start and Alembic is imported only to migrate.
HEAD_REVISION = "0003"


def alembic_config(connection: Connection | None = None) -> "AlembicConfig":
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head, "no migrations found"
    return head


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _stored_revision(conn: Connection) -> str | None:
    """The schema revision by plain SQL (None when the store is new)."""
    try:
        with conn.begin_nested():
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except DBAPIError:
        return None


# Alembic's version table as Alembic creates it (one ``version_num`` column, primary key ``<table>_pkc``):
# written only when a new store is built at head (``_build_new``); Alembic reads and advances it after.
_version = sa.Table(VERSION_TABLE, sa.MetaData(),
                    sa.Column("version_num", sa.String(32), nullable=False),
                    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))


def _is_new(conn: Connection) -> bool:
    """No table of the store's, and no version table: nothing to migrate from."""
    names = set(sa.inspect(conn).get_table_names())
    return not names & {VERSION_TABLE, *metadata.tables}


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _build_new(engine: Engine) -> bool | None:
    """A new store built at head (the tables of ``models``, the version row): True when this call built it,
    False when another process did meanwhile, None when the store is not new (Alembic migrates it)."""
    with engine.begin() as conn:
        _lock(conn)  # SQLite: the transaction began IMMEDIATE, the database's write lock
        if not _is_new(conn):
            return False if _stored_revision(conn) == HEAD_REVISION else None
        metadata.create_all(conn)
        _version.create(conn)
        conn.execute(_version.insert().values(version_num=HEAD_REVISION))
    return True


def upgrade(engine: Engine) -> bool:
    """Migrate to head; True when this call changed the schema."""
    with engine.connect().execution_options(aza_read=True) as conn:
        stored = _stored_revision(conn)
        if stored == HEAD_REVISION:
            return False
        new = stored is None and _is_new(conn)
    if new:
        built = _build_new(engine)
        if built is not None:
            return built
    from alembic import command

    head = head_revision()
    with engine.begin() as conn:
        _lock(conn)
        if current_revision(conn) == head:  # another process got there first
            return False
        command.upgrade(alembic_config(conn), "head")
    return True
