"""Scale-out, tested (issue 18): two ``serve`` instances on one PostgreSQL, behind nginx.

Real processes on loopback: PostgreSQL (the test cluster ``make test`` starts), a TCP relay in
front of it (so the test can take the database away and bring it back), two
``azathioprine-cds serve`` instances (2 gunicorn workers each, JWT authentication with a local
trust file) and nginx running the committed ``deploy/nginx.conf`` with only its addresses
replaced. Then:

1. load on both: hook calls through nginx, answered by both instances;
2. replays across instances: each token sent at once to both instances directly: one 200 and
   one 401 each (the replay table is in the shared database);
3. one instance killed with SIGKILL (its whole process group: master and workers) while hook
   calls and feedback go through nginx: every call answered 200 except those in flight at the
   kill; every feedback acknowledged (200) is in the database;
4. the database down: ``/readyz`` answers 503 on the instance and through nginx, and 200 again
   once the database is back.

nginx comes from Debian's package (``make test`` installs it with apt-get as root:
scripts/nginx-install.sh). Nothing here measures time.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.storage.models import cards as cards_table
from service.storage.models import feedback as feedback_table
from tests.test_serving import _free_port, _json_lines
from tests.test_trust import PUBLIC_JWK, SIGN, example_request, example_trust, sandbox_token, write

ROOT = Path(__file__).resolve().parent.parent
FEEDBACK = SIGN + "/feedback"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)),
                                          None)
    if found is None:
        pytest.fail("nginx is not installed: run `bash scripts/nginx-install.sh` (make test does, as root)",
                    pytrace=False)
    return found


# ------------------------------------------------------------------ a TCP relay to PostgreSQL


class Relay:
    """127.0.0.1:port -> PostgreSQL; ``down()`` refuses new connections and cuts open ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            socks, self._open = self._open, []
        if listener is not None:
            listener.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ------------------------------------------------------------------ processes


class Instance:
    def __init__(self, tmp: Path, name: str, env: dict) -> None:
        self.name = name
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "wb")
        data_dir = tmp / name
        data_dir.mkdir()
        full_env = {**os.environ, "AZA_CDS_DATA_DIR": str(data_dir), **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "2", "--threads", "4", "--trust", env["_TRUST"]],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        for _ in range(1200):
            try:
                with _OPENER.open(self.base + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {self.proc.returncode}:\n{self.log()}") from None
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def served(self) -> int:
        return sum(1 for r in _json_lines(self.log()) if r.get("event") == "request" and r.get("path") == "/cds-services/<service_id>")

    def kill(self) -> None:
        """SIGKILL to the whole instance: the gunicorn master and its workers, as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        for _ in range(200):  # gone when its port refuses connections (the workers share the socket)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._log.close()


class Nginx:
    def __init__(self, tmp: Path, upstreams: list[int], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{self.port}"
        prefix = tmp / "nginx"
        prefix.mkdir()
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        for default, port in zip(("127.0.0.1:8081", "127.0.0.1:8082"), upstreams, strict=True):
            assert default in site
            site = site.replace(default, f"127.0.0.1:{port}")
        assert "listen 127.0.0.1:8080;" in site
        site = site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};")
        (prefix / "site.conf").write_text(site)
        temp = "\n".join(f"  {kind}_temp_path {prefix}/{kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n{temp}\n  include {prefix}/site.conf;\n}}\n")
        self.prefix = prefix
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                      "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(400):
            try:
                with _OPENER.open(self.base + "/healthz", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("nginx exited: " + (self.proc.stderr.read().decode() if self.proc.stderr else "")) from None
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ------------------------------------------------------------------ calls


def call(url: str, body: dict, token: str) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with _OPENER.open(req, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


def hook_call(base: str, aud_base: str) -> tuple[int, list[str]]:
    req = urllib.request.Request(base + SIGN, data=json.dumps(example_request()).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {sandbox_token(aud_base + SIGN)}"})
    try:
        with _OPENER.open(req, timeout=60) as resp:
            return resp.status, [c["uuid"] for c in json.loads(resp.read())["cards"]]
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, []


def readyz(base: str) -> int:
    try:
        with _OPENER.open(base + "/readyz", timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def topology(tmp_path, postgres_database):
    url = make_url(postgres_database)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    doc = example_trust()
    doc["issuers"][0]["jwks"] = {"keys": [PUBLIC_JWK]}
    trust = str(write(tmp_path, doc))
    started: list = []
    try:
        # the public base URL is nginx's: its port is chosen first, then the instances are told it
        nginx_port = _free_port()
        public = f"http://127.0.0.1:{nginx_port}"
        env = {"AZA_CDS_DATABASE_URL": url.set(port=relay.port).render_as_string(hide_password=False),
               "AZA_CDS_PUBLIC_BASE_URL": public, "_TRUST": trust, "AZA_CDS_METRICS": "0"}
        a = Instance(tmp_path, "a", env)  # migrates the empty database
        started.append(a)
        b = Instance(tmp_path, "b", env)
        started.append(b)
        proxy = Nginx(tmp_path, [a.port, b.port], nginx_port)
        started.append(proxy)
        yield {"a": a, "b": b, "nginx": proxy, "relay": relay, "db": postgres_database, "public": public}
    finally:
        for p in reversed(started):
            p.close()
        relay.down()


def _recorded_cards(db_url: str, cards: list[str], attempts: int = 200) -> set[str]:
    """The card uuids of ``cards`` that are rows of cds_card, once all are (or after ``attempts`` polls)."""
    engine = sa.create_engine(db_url)
    try:
        found: set[str] = set()
        for _ in range(attempts):
            with engine.connect() as conn:
                found = set(conn.execute(sa.select(cards_table.c.card_uuid)
                                         .where(cards_table.c.card_uuid.in_(cards))).scalars())
            if found == set(cards):
                break
            time.sleep(0.1)
        return found
    finally:
        engine.dispose()


def test_two_instances_behind_nginx_on_one_postgresql(topology):
    a, b, proxy, relay, public = (topology[k] for k in ("a", "b", "nginx", "relay", "public"))

    # 1. load on both: every call through nginx answered, by both instances
    with ThreadPoolExecutor(6) as pool:
        first = list(pool.map(lambda _: hook_call(proxy.base, public), range(40)))
    assert [s for s, _ in first] == [200] * 40
    cards = [u for _, uuids in first for u in uuids]
    assert len(cards) >= 40
    assert a.served() > 0 and b.served() > 0, (a.served(), b.served())
    # feedback is accepted only about cards this deployment issued (hostile-a: a cds_card row): the cards are
    # recorded by each worker's writer thread a moment after the answer, so wait until all 40 calls' cards are in
    # the shared database before phase 3 posts feedback about them (not a timing assertion: it waits, then checks)
    recorded = _recorded_cards(topology["db"], cards)
    assert recorded == set(cards), f"cards answered but never recorded: {sorted(set(cards) - recorded)[:5]}"

    # 2. replays across instances: one token, both instances at once: accepted once
    tokens = [sandbox_token(public + SIGN) for _ in range(12)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda job: call(job[0] + SIGN, example_request(), job[1]),
                                 [(base, t) for t in tokens for base in (a.base, b.base)]))
    pairs = [sorted(statuses[i:i + 2]) for i in range(0, len(statuses), 2)]
    assert pairs == [[200, 401]] * len(tokens), pairs

    # 3. SIGKILL one instance mid-load: only the calls in flight at that moment may fail
    results: list[tuple[str, str, float, float, int | str]] = []
    lock = threading.Lock()
    killed_at: list[float] = []

    def one(i: int) -> None:
        kind = "feedback" if i % 2 else "hook"
        card = cards[i // 2 % len(cards)] if kind == "feedback" else ""
        started = time.monotonic()
        try:
            if kind == "hook":
                status: int | str = hook_call(proxy.base, public)[0]
            else:
                body = {"feedback": [{"card": card, "outcome": "overridden",
                                      "outcomeTimestamp": "2026-12-07T10:00:00Z"}]}
                status = call(proxy.base + FEEDBACK, body, sandbox_token(public + FEEDBACK))
        except (OSError, http.client.HTTPException) as exc:  # e.g. an answer cut off by the kill
            status = type(exc).__name__
        with lock:
            results.append((kind, card, started, time.monotonic(), status))
        if i == 30:
            killed_at.append(time.monotonic())
            b.kill()
            killed_at.append(time.monotonic())  # gone: its port refuses connections

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(2 * min(len(cards), 60))))
    assert killed_at, "the instance was killed during the load"
    t_kill, t_dead = killed_at
    failed = [r for r in results if r[4] != 200]
    # in flight at the kill: sent before the instance was gone, and not answered before the signal
    not_in_flight = [r for r in failed if not (r[2] <= t_dead and r[3] >= t_kill)]
    assert not_in_flight == [], f"errors that were not in flight at the kill ({t_kill}-{t_dead}): {not_in_flight}"
    print(f"{len(results)} calls, {len(failed)} failed, all in flight at the kill: {sorted(str(r[4]) for r in failed)}")
    assert len(failed) <= 12, failed  # at most one per thread of the killed instance (2 workers x 4) and slack
    after = [r for r in results if r[2] > t_dead]
    assert after and all(r[4] == 200 for r in after)

    acknowledged = {r[1] for r in results if r[0] == "feedback" and r[4] == 200}
    assert acknowledged
    engine = sa.create_engine(topology["db"])
    try:
        with engine.connect() as conn:
            stored = {row[0] for row in conn.execute(sa.select(feedback_table.c.card_uuid))}
    finally:
        engine.dispose()
    assert acknowledged - stored == set(), "acknowledged feedback lost"

    # 4. the database down: not ready (on the instance and through nginx); back: ready again
    assert readyz(a.base) == 200
    relay.down()
    try:
        assert readyz(a.base) == 503
        assert readyz(proxy.base) == 503
    finally:
        relay.up()
    for _ in range(60):
        if readyz(a.base) == 200:
            break
        time.sleep(0.5)
    assert readyz(a.base) == 200 and readyz(proxy.base) == 200
    assert uuid.UUID(cards[0])
