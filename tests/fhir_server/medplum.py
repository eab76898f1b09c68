"""Start/stop the in-memory FHIR R4 test server (tests/fhir_server/server.mjs) from Python.

Standard library only. Typical use in a pytest fixture::

    from tests.fhir_server.medplum import MedplumServer

    @pytest.fixture(scope="session")
    def fhir_server():
        with MedplumServer(token="secret") as server:
            yield server

    def test_something(fhir_server):
        fhir_server.reset_data()
        fhir_server.load(bundle)            # transaction Bundle, ids via PUT entries
        ... call the app with fhir_server.base_url / fhir_server.token ...
        log = fhir_server.request_log()

The server needs Node.js >= 20.19 on PATH (or in the MEDPLUM_NODE environment variable).
``npm ci`` is run in this directory the first time, if node_modules is missing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["MedplumServer", "MedplumServerError", "SERVER_DIR"]

SERVER_DIR = Path(__file__).resolve().parent
_LISTENING = re.compile(r"^LISTENING (http://127\.0\.0\.1:(\d+)/fhir)\s*$")
_MIN_NODE = (20, 19)

# Never route loopback test traffic through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MedplumServerError(RuntimeError):
    """The test FHIR server could not be installed, started or reached."""


def _tail(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class MedplumServer:
    """An in-memory FHIR R4 server on 127.0.0.1, run as a Node child process.

    :param token: if set, every FHIR request except ``GET /fhir/metadata`` must carry
        ``Authorization: Bearer <token>`` (else 401 OperationOutcome).
    :param delay_ms: every FHIR request is answered after this many milliseconds
        (concurrent requests are delayed in parallel).
    :param default_count: page size of searches without ``_count``.
    :param validate: validate resources against the FHIR R4 definitions on create/update.
    :param cors: answer browsers from any origin (``--cors``).
    :param smart: SMART App Launch 2.0 discovery, authorize and token endpoints (``--smart``; the
        token endpoint hands out ``token``; see ``smart.mjs``).
    :param port: port to listen on; 0 picks a free one.
    :param startup_timeout: seconds to wait for the server to report it is listening.
    """

    def __init__(
        self,
        token: str | None = None,
        delay_ms: int = 0,
        *,
        default_count: int = 20,
        validate: bool = True,
        cors: bool = False,
        smart: bool = False,
        port: int = 0,
        startup_timeout: float = 60.0,
        node: str | None = None,
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string or None")
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.token = token
        self.delay_ms = int(delay_ms)
        self.default_count = int(default_count)
        self.validate = validate
        self.cors = cors
        self.smart = smart
        self.requested_port = int(port)
        self.startup_timeout = startup_timeout
        self.node = node or os.environ.get("MEDPLUM_NODE") or shutil.which("node")
        self.base_url: str | None = None
        self.origin: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_file: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "MedplumServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The Node process's exit code once it has exited (negative: the signal that ended it)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> "MedplumServer":
        if self.running:
            return self
        node = self._check_node()
        self._ensure_node_modules()

        cmd = [node]
        if self._node_version(node)[0] < 22:
            # WebSocket is a global only from Node 22; medplum core may look for it.
            cmd.append("--experimental-websocket")
        cmd += [
            str(SERVER_DIR / "server.mjs"),
            "--port", str(self.requested_port),
            "--delay-ms", str(self.delay_ms),
            "--default-count", str(self.default_count),
            "--watch-stdin",
        ]
        if self.token:
            cmd += ["--token", self.token]
        if not self.validate:
            cmd.append("--no-validate")
        if self.cors:
            cmd.append("--cors")
        if self.smart:
            cmd.append("--smart")

        self._stderr_file = tempfile.TemporaryFile(mode="w+", prefix="medplum-server-", suffix=".log")
        self._proc = subprocess.Popen(
            cmd,
            cwd=SERVER_DIR,
            stdin=subprocess.PIPE,  # server exits when this pipe closes (e.g. pytest dies)
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            bufsize=1,
        )

        lines: queue.Queue[str | None] = queue.Queue()

        def reader(stream: Any) -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, args=(self._proc.stdout,), daemon=True).start()

        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            line = ""
        match = _LISTENING.match(line or "")
        if not match:
            proc = self._proc
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if line is None:
                what = f"exited with code {proc.returncode} before listening"
            elif line == "":
                what = f"did not report LISTENING within {self.startup_timeout:.0f} s"
            else:
                what = f"printed an unexpected first line {line!r}"
            stderr = self._stderr_text()
            self._cleanup()
            shown = " ".join("***" if self.token and arg == self.token else arg for arg in cmd)
            raise MedplumServerError(f"FHIR test server {what}. Command: {shown}\nstderr:\n{stderr}")
        self.base_url = match.group(1)
        self.port = int(match.group(2))
        self.origin = self.base_url[: -len("/fhir")]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._cleanup()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        self._proc = None
        self.base_url = self.origin = self.port = None
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def _stderr_text(self) -> str:
        if self._stderr_file is None:
            return ""
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return _tail(self._stderr_file.read())

    # -- installation ----------------------------------------------------------------------

    def _check_node(self) -> str:
        if not self.node:
            raise MedplumServerError("Node.js not found: install node >= 20.19 or set MEDPLUM_NODE")
        version = self._node_version(self.node)
        if version < _MIN_NODE:
            raise MedplumServerError(
                f"{self.node} is Node {'.'.join(map(str, version))}; @medplum 4.5.2 needs >= 20.19"
            )
        return self.node

    @staticmethod
    def _node_version(node: str) -> tuple[int, int]:
        try:
            out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise MedplumServerError(f"cannot run {node} --version: {exc}") from exc
        match = re.match(r"v(\d+)\.(\d+)", out.strip())
        if not match:
            raise MedplumServerError(f"unexpected output of {node} --version: {out!r}")
        return int(match.group(1)), int(match.group(2))

    @staticmethod
    def _installed() -> bool:
        return (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router" / "package.json").is_file()

    def _ensure_node_modules(self) -> None:
        if self._installed():
            return
        npm = os.environ.get("MEDPLUM_NPM") or shutil.which("npm")
        if not npm:
            raise MedplumServerError("npm not found: needed once to install tests/fhir_server/node_modules")
        # A lock so that parallel test workers do not run `npm ci` at the same time.
        lock_path = Path(tempfile.gettempdir()) / f"medplum-npm-ci-{hashlib.sha1(str(SERVER_DIR).encode()).hexdigest()[:12]}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._installed():
                return
            try:
                result = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=SERVER_DIR,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise MedplumServerError(f"`npm ci` in {SERVER_DIR} failed: {exc}") from exc
            if result.returncode != 0 or not self._installed():
                raise MedplumServerError(
                    f"`npm ci` in {SERVER_DIR} failed (exit {result.returncode}):\n"
                    f"{_tail(result.stdout + result.stderr)}"
                )

    # -- HTTP helpers ----------------------------------------------------------------------

    def _require_running(self) -> str:
        if not self.running or self.origin is None:
            raise MedplumServerError("FHIR test server is not running (call start() first)")
        return self.origin

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Send a request to the server; ``path`` is relative to the origin (e.g. ``/fhir/Patient/p1``)
        or an absolute URL (e.g. a search ``next`` link). Returns ``(status, parsed JSON or None)``;
        HTTP error statuses are returned, not raised."""
        origin = self._require_running()
        url = path if path.startswith("http://") else origin + path
        data = None
        all_headers = {"Accept": "application/fhir+json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/fhir+json"
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method.upper(), headers=all_headers)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except urllib.error.URLError as err:
            raise MedplumServerError(f"{method} {url} failed: {err.reason}") from err
        return status, (json.loads(raw) if raw else None)

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET a FHIR path (``/fhir/...`` or an absolute URL); raises unless the status is 2xx."""
        status, payload = self.request("GET", path, **kwargs)
        if not 200 <= status < 300:
            raise MedplumServerError(f"GET {path} -> HTTP {status}: {json.dumps(payload)[:2000]}")
        return payload

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction (or batch) Bundle to the FHIR base and return the response Bundle.

        Raises MedplumServerError if the server rejects it, or if any entry of a batch failed.
        A transaction is all-or-nothing on the server side."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise ValueError("load() expects a Bundle resource as a dict")
        status, payload = self.request("POST", "/fhir", bundle)
        if not 200 <= status < 300:
            raise MedplumServerError(f"loading Bundle failed: HTTP {status}: {json.dumps(payload)[:4000]}")
        failed = [
            (i, entry.get("response", {}))
            for i, entry in enumerate(payload.get("entry", []))
            if not str(entry.get("response", {}).get("status", "")).startswith("2")
        ]
        if failed:
            raise MedplumServerError(f"Bundle entries failed: {json.dumps(failed)[:4000]}")
        return payload

    def request_log(self) -> list[dict[str, Any]]:
        """Every /fhir request received since start/reset_log(): dicts with method, path, query
        (raw query string), start_ms, end_ms (epoch ms; end_ms None while in flight), status and
        authorization_present."""
        origin = self._require_running()
        with _OPENER.open(urllib.request.Request(origin + "/__log"), timeout=30) as resp:
            return json.loads(resp.read())

    def reset_log(self) -> None:
        origin = self._require_running()
        with _OPENER.open(urllib.request.Request(origin + "/__reset_log", data=b"", method="POST"), timeout=30):
            pass

    def reset_data(self) -> None:
        """Delete every stored resource (cheaper than restarting the server between tests)."""
        origin = self._require_running()
        with _OPENER.open(urllib.request.Request(origin + "/__reset_data", data=b"", method="POST"), timeout=30):
            pass
