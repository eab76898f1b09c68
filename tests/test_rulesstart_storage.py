"""A new feedback store is built at head without Alembic (cold start); the schema is the migrated one.

``service.storage.migrate.upgrade`` builds a new, empty store from ``models.metadata`` and stamps it
``HEAD_REVISION`` (Alembic's cookbook: create_all, then stamp head); an existing store is migrated by
Alembic as before. These tests hold the two paths together, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import sqlalchemy as sa

from service.storage import FeedbackStore, make_engine, migrate
from service.storage.models import VERSION_TABLE, metadata


def _alembic_from_nothing(url: str) -> None:
    """The store as Alembic's migrations build it, step by step from revision 0001."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "head")
    finally:
        engine.dispose()


def _schema(url: str) -> dict:
    """Every table's columns (name, type, nullability), primary key, indexes, unique and check constraints."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            out = {}
            for table in sorted(insp.get_table_names()):
                out[table] = {
                    "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                    "pk": insp.get_pk_constraint(table)["constrained_columns"],
                    "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in insp.get_indexes(table)),
                    "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
                    "checks": sorted(" ".join(c["sqltext"].split()) for c in insp.get_check_constraints(table)),
                }
            rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            return {"tables": out, "version": rows}
    finally:
        engine.dispose()


def _second_url(url: str, suffix: str) -> str:
    u = sa.engine.make_url(url)
    if u.drivername.startswith("sqlite"):
        return u.set(database=str(u.database).replace(".sqlite3", f"-{suffix}.sqlite3")).render_as_string(
            hide_password=False)
    return url  # one PostgreSQL database per test: see test_a_new_store_is_built_and_alembic_reads_it_as_current


def test_a_new_store_is_built_at_head_with_the_schema_alembic_migrates_to(backend_url, tmp_path, request):
    built = FeedbackStore.open(backend_url)
    built.close()
    if backend_url.startswith("sqlite"):
        migrated_url = _second_url(backend_url, "alembic")
    else:
        migrated_url = request.getfixturevalue("postgres_database")  # a second, empty database
    _alembic_from_nothing(migrated_url)
    built_schema, migrated_schema = _schema(backend_url), _schema(migrated_url)
    assert built_schema["version"] == migrated_schema["version"] == [migrate.HEAD_REVISION]
    assert set(built_schema["tables"]) == {*metadata.tables, VERSION_TABLE}
    assert built_schema == migrated_schema


def test_a_new_store_is_built_and_alembic_reads_it_as_current(backend_url):
    engine = make_engine(backend_url)
    try:
        assert migrate.upgrade(engine) is True  # built
        assert migrate.upgrade(engine) is False  # second start: one SELECT
        with engine.begin() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision() == migrate.HEAD_REVISION
            from alembic import command
            from alembic.autogenerate import compare_metadata
            from alembic.runtime.migration import MigrationContext

            command.upgrade(migrate.alembic_config(conn), "head")  # nothing to do: Alembic finds it current
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            assert compare_metadata(ctx, metadata) == []
            assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [
                migrate.HEAD_REVISION]
    finally:
        engine.dispose()


def test_a_store_with_an_older_revision_is_migrated_by_alembic(tmp_path):
    """A store at 0002 (built by Alembic) is not new: Alembic brings it to head, and the result equals a new store."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0002")
        assert migrate.upgrade(engine) is True
    finally:
        engine.dispose()
    fresh = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    FeedbackStore.open(fresh).close()
    assert _schema(url) == _schema(fresh)


def test_a_store_with_tables_but_no_version_row_is_not_taken_for_new(tmp_path):
    """Tables without a version row (a store someone built by hand): not silently stamped; Alembic decides."""
    url = f"sqlite:///{tmp_path / 'odd.sqlite3'}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            metadata.tables["cds_jti"].create(conn)
            assert migrate._is_new(conn) is False
    finally:
        engine.dispose()
