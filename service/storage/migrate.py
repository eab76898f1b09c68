"""Bring the database to the newest schema (``alembic upgrade head``), safely from many processes.

Every worker of every replica calls :func:`upgrade` when it starts. The common case (already
at head) costs one SELECT. Otherwise the upgrade runs inside one transaction that first takes a
database-wide lock, so that workers starting together migrate once and the others wait, then
find the schema current:

* PostgreSQL: ``pg_advisory_xact_lock`` (released at commit/rollback); DDL is transactional.
* SQLite: the store's connections open write transactions with ``BEGIN IMMEDIATE`` (see
  ``store.make_engine``), which is the database's write lock; others wait on the busy timeout.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from .models import VERSION_TABLE

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


def upgrade(engine: Engine) -> bool:
    """Migrate to head; True when this call changed the schema."""
    with engine.connect().execution_options(aza_read=True) as conn:
        if _stored_revision(conn) == HEAD_REVISION:
            return False
    from alembic import command

    head = head_revision()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        if current_revision(conn) == head:  # another process got there first
            return False
        command.upgrade(alembic_config(conn), "head")
    return True
