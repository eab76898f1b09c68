"""Alembic environment of the feedback store.

The service runs migrations itself (``service.storage.migrate.upgrade``), handing Alembic an
open connection in ``config.attributes["connection"]``. For hand use::

    AZA_CDS_DATABASE_URL=postgresql+psycopg://... \
      alembic -c service/storage/alembic.ini upgrade head
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from service.storage.models import VERSION_TABLE, metadata

config = context.config


def _configure(**kwargs) -> None:
    context.configure(target_metadata=metadata, version_table=VERSION_TABLE,
                      render_as_batch=True,  # SQLite ALTERs in later migrations
                      compare_type=True, **kwargs)


def _url() -> str:
    from service.config import Config

    settings = Config.from_env()
    url = settings.database_url or config.get_main_option("sqlalchemy.url")
    if not url:
        from service.storage import default_database_url

        url = default_database_url(settings.data_dir)
    return url


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # the caller owns the connection and its transaction (and the migration lock)
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
