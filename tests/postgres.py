"""Database fixtures for the storage tests: a fresh SQLite file or a fresh PostgreSQL database.

``tests/conftest.py`` loads these fixtures (``pytest_plugins``) for every test module;
``backend_url`` is parametrised over both back ends, so every test using it runs twice.

PostgreSQL comes from ``AZA_TEST_POSTGRES_URL`` (``make test`` starts a throwaway cluster with
``scripts/pg-test-cluster.sh`` and sets it; the URL must name a role allowed to create
databases). Without it, a throwaway cluster is started here if the server binaries are
installed. When no server is available the PostgreSQL tests are skipped, except under CI
(``CI`` set), where they fail: CI must exercise both back ends.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "pg-test-cluster.sh"
ENV = "AZA_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI but not available: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _check(url: str) -> None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a PostgreSQL role that may create databases (session-wide)."""
    url = os.environ.get(ENV)
    cluster_dir = None
    if not url:
        cluster_dir = Path(tempfile.mkdtemp(prefix="aza-pg-pytest."))  # the script hands it to the server's user
        try:
            proc = subprocess.run(["bash", str(SCRIPT), "start", str(cluster_dir)], capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"could not run {SCRIPT.name}: {exc}")
        if proc.returncode != 0:
            subprocess.run(["bash", str(SCRIPT), "stop", str(cluster_dir)], capture_output=True, timeout=60)
            _unavailable(f"no {ENV} and no local server could be started: {proc.stderr.strip()[-400:]}")
        url = proc.stdout.strip().splitlines()[-1]
    try:
        try:
            _check(url)
        except Exception as exc:  # noqa: BLE001
            _unavailable(f"{make_url(url).render_as_string(hide_password=True)}: {type(exc).__name__}: {exc}")
        yield url
    finally:
        if cluster_dir is not None:
            subprocess.run(["bash", str(SCRIPT), "stop", str(cluster_dir)], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def _postgres_admin(postgres_server):
    engine = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_database(postgres_server, _postgres_admin) -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards (even with connections left open)."""
    name = f"aza_test_{uuid.uuid4().hex[:12]}"
    with _postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with _postgres_admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def backend_url(request, tmp_path) -> str:
    """A database URL for an empty store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'feedback.sqlite3'}"
    return request.getfixturevalue("postgres_database")
