"""``make bench``: the service against a bare Flask reference, same gunicorn settings, same load tool.

What it does, in one run (about 10 minutes on 2 cores, half of it callgrind):

1. Builds the requests (``patient.py``): (o) the **other order**: order-sign for a draft that no
   rule concerns (amlodipine: no thiopurine, no interacting medicine, no live vaccine) with the
   realistic patient's full prefetch (the same ≈ 94 KiB body as (a)), the call an EHR that
   registers the service for order-sign sends for every order; (a) order-sign with full
   prefetch for a realistic patient (62 Observations, 10 MedicationRequests, 5 Conditions, an
   allergy) and an azathioprine draft; (b) the same call with no prefetch, so that the service
   fetches every key from a local FHIR server that holds every query 100 ms (``fhir_stub.py``,
   or the Medplum test server with ``--fhir medplum``); (c) a large patient (515 Observations)
   with full prefetch.
2. Starts, each on its own loopback port with the same gunicorn settings
   (``service.wsgi.gunicorn_settings``: ``--workers``/``--threads``): one
   ``azathioprine-cds serve --insecure-no-auth`` per scenario, one ``serve`` with
   JWT verification (a trust file with a fresh ES384 key), and the reference twice
   (``reference_app.py``: a bare Flask app that reads the same body and returns a fixed
   answer of the same size as the service's: (a)'s cards, and for (o) the service's answer
   to (o), ``{"cards": []}``). Cold start = from starting ``serve`` to its first answer to a
   hook call.
3. Drives them with wrk (Debian package ``wrk``; installed with apt-get if it is
   missing and we are root), interleaved: every round runs each scenario against
   the service, then the reference, so that a noisy neighbour hits both alike.
   JWT runs send a fresh token (new ``jti``) with every request.
4. After the wrk runs: CPU ms per call in-process for (o), (a), (b), (c) and the reference with
   the same bodies, and the stable regression figure, instructions per call for (o), (a), (c)
   and the reference, under valgrind callgrind (``cpu_per_call.py``; valgrind is installed with
   apt-get like wrk; skipped, saying why, where callgrind cannot run; ``--no-instructions``
   skips it; (b) is not counted: see ``cpu_per_call.py``).
5. Prints one table, service and reference side by side per scenario (requests/s, p50, p99, max,
   errors, peak RSS per worker, CPU ms per call under gunicorn and in-process, instructions per
   call, ratio to the reference), then the targets of issue 21 (and the older ones), each with
   whether it holds and by how much it misses, and writes them into ``benchmarks/RESULTS.md``
   (between the ``bench:`` markers) with the machine it ran on, plus a pyinstrument profile of
   scenario (a) (``profile_a.py``).

Options: ``--duration S`` per run (8), ``--rounds N`` (3), ``--connections C`` (8),
``--workers``/``--threads`` (2/4), ``--fhir stub|medplum``, ``--no-profile``, ``--no-instructions``,
``--no-write`` (leave RESULTS.md alone), ``--quick`` (1 round of 3 s per run, no profile, fewer
in-process calls: a smoke test; the instructions are still counted unless ``--no-instructions``).
Exit status 0 whether or not a target is missed (the table says so); 1 when the
instructions per call of (o), (a) or (c) rose more than 3 % on the previous run's figure in
RESULTS.md (the previous figures are then kept; ``--accept-instructions`` writes the new
ones); 2 when the benchmark itself could not run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import patient  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
LUA = BENCH / "wrk_post.lua"
SERVICE_URL = "/cds-services/" + patient.SERVICE
ISS = "https://ehr.bench.example"
KID = "bench-es384"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

SCENARIOS = ("o", "a", "b", "c")  # the wrk rows, besides the JWT row
TARGETS = {
    # issue 21
    "o_ratio_pct": 80.0,   # other order: throughput >= 80 % of the reference
    "a_ratio_pct": 50.0,   # (a): throughput >= 50 % of the reference
    "a_p99_ms": 10.0,
    "a_minstr": 8.0,       # M instructions per call (callgrind)
    "c_minstr": 40.0,
    "cold_start_s": 1.0,
    "rss_mb": 120.0,
    # earlier issues
    "b_p50_ms": 130.0,
    "c_p99_ms": 50.0,
}


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- tools
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("wrk not found: installing the Debian package (apt-get install wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "wrk"]):
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if found := shutil.which("wrk"):
                return found
    raise SystemExit("benchmark needs wrk (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)")


def ensure_valgrind() -> None:
    """valgrind for the callgrind step: installed with apt-get like wrk when missing and we are root;
    otherwise the step is skipped and says why (``cpu_per_call.callgrind_available``)."""
    if shutil.which("valgrind") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    say("valgrind not found: installing the Debian package (apt-get install valgrind)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", "valgrind"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "valgrind"]):
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if shutil.which("valgrind"):
            return


def ensure_python_package(module: str, package: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        pass
    say(f"{package} not installed: pip install {package}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=False)
    return done.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# --------------------------------------------------------------------------- servers
@dataclass
class Server:
    name: str
    cmd: list[str]
    env: dict
    log_path: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    cold_start_s: float | None = None
    cold_start_cpu_s: float | None = None  # CPU time (master and workers) used by then: what load changes less
    _peak_rss: float | None = None  # the largest VmHWM seen at note_rss() (after each run and at stop())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, probe_body: bytes, probe_headers=None) -> "Server":
        """Start, and time it until the first 200 answer to a hook call."""
        self.log = open(self.log_path, "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            try:
                status, _ = post(self.base + SERVICE_URL, probe_body, probe_headers() if probe_headers else None, timeout=2)
                if status == 200:
                    self.cold_start_s = time.monotonic() - started
                    self.cold_start_cpu_s = self.cpu_seconds()
                    return self
            except OSError:
                pass
            time.sleep(0.01)
        raise SystemExit(f"{self.name} did not answer within 60 s; see {self.log_path}")

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(c) for c in children]

    def note_rss(self) -> None:
        """Remember the workers' peak now: gunicorn recycles a worker after MAX_REQUESTS calls, and a new
        worker's VmHWM starts again (called after every wrk run)."""
        now = self._live_rss()
        if now is not None:
            self._peak_rss = max(self._peak_rss or 0.0, now)

    def peak_rss_mb(self) -> float | None:
        """Peak resident set size (VmHWM) of the largest worker, in MB, over every worker seen at a note_rss()."""
        live = None if self.proc is None or self.proc.poll() is not None else self._live_rss()
        known = [v for v in (self._peak_rss, live) if v is not None]
        return max(known) if known else None

    def _live_rss(self) -> float | None:
        peaks = []
        for pid in self.workers():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if m:
                peaks.append(int(m.group(1)) / 1024)
        return max(peaks) if peaks else None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers."""
        return self.cpu_by_pid()[1]

    def cpu_by_pid(self) -> tuple[frozenset[int], float]:
        """(the pids counted, their CPU time so far): a CPU difference is only meaningful between two
        readings of the same processes (a worker recycled in between takes its CPU time with it)."""
        total = 0
        pids = ([self.proc.pid] if self.proc else []) + self.workers()
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return frozenset(pids), total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.note_rss()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def serve_cmd(port: int, args, *extra: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers), "--threads", str(args.threads), *extra]


# ------------------------------------------------------------------------------- JWT
class Signer:
    """An EHR's ES384 key: a trust file for the service, and one fresh token per request."""

    def __init__(self, tmp: Path) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        self.jwt = jwt
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": KID, "alg": "ES384", "use": "sig"})
        self.trust = tmp / "trust.json"
        self.trust.write_text(json.dumps({"issuers": [{"iss": ISS, "jwks": {"keys": [public]}}]}))

    def token(self, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": ISS, "sub": "bench-client", "aud": audience, "iat": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex}
        return self.jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})

    def tokens_file(self, audience: str, count: int, path: Path) -> Path:
        path.write_text("\n".join(self.token(audience) for _ in range(count)) + "\n")
        return path


# ------------------------------------------------------------------------------ load
@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    cpu_s: float | None = 0.0  # CPU time the server used during the run; None: a worker was recycled meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(wrk_bin: str, url: str, body_file: Path, *, seconds: float, connections: int,
        tokens: Path | None = None, server: Server | None = None) -> Run:
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_TOKENS": str(tokens or "")}
    cmd = [wrk_bin, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url]
    pids_before, cpu_before = server.cpu_by_pid() if server else (frozenset(), 0.0)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu: float | None = 0.0
    if server:
        pids_after, cpu_after = server.cpu_by_pid()
        cpu = cpu_after - cpu_before if pids_after == pids_before else None
        server.note_rss()
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCH_JSON "):])
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return Run(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000, r["max_us"] / 1000, errors,
               cpu)


def cpu_ms_per_call(runs: list[Run]) -> float | None:
    """CPU ms per answered call over the runs whose CPU time is known (None when none is)."""
    known = [r for r in runs if r.cpu_s is not None]
    calls = sum(r.requests for r in known)
    return sum(r.cpu_s or 0.0 for r in known) / calls * 1000 if calls else None


@dataclass
class Row:
    key: str
    label: str
    server: Server
    body: Path
    reference_of: str | None = None  # for the JWT row: the reference numbers of this row
    jwt: bool = False
    runs: list[Run] = field(default_factory=list)

    def total(self) -> dict:
        n = sum(r.requests for r in self.runs)
        secs = sum(r.seconds for r in self.runs)
        return {
            "rps": n / secs if secs else 0.0,
            "p50_ms": statistics.median(r.p50_ms for r in self.runs),
            "p99_ms": statistics.median(r.p99_ms for r in self.runs),
            "max_ms": max(r.max_ms for r in self.runs),
            "errors": sum(r.errors for r in self.runs),
            "requests": n,
            "cpu_ms": cpu_ms_per_call(self.runs),
        }


# ------------------------------------------------------------------------ scenario (b)
def fhir_table(data: dict, templates: dict[str, str]) -> dict[str, dict]:
    """What the FHIR server answers to each query of the service's own prefetch templates."""
    from hooks.prefetch import render

    answers = {"patient": data["patient"]}
    for key in templates:
        if key != "patient":
            answers[key] = patient.searchset(data.get(key, []))
    return {render(t, {"patientId": patient.PID}) or t: answers[k] for k, t in templates.items()}


class Fhir:
    def __init__(self, kind: str, tmp: Path, data: dict, templates: dict[str, str], delay_ms: int) -> None:
        self.kind = kind
        if kind == "medplum":
            from tests.fhir_server.medplum import MedplumServer

            self.server = MedplumServer(delay_ms=delay_ms).start()
            self.server.load(patient.transaction(data))
            self.base_url = self.server.base_url
            self.proc = None
            return
        table = tmp / "fhir-table.json"
        table.write_text(json.dumps(fhir_table(data, templates)))
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "fhir_stub.py"), "--port", "0", "--delay-ms",
                                      str(delay_ms), "--table", str(table)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("LISTENING "):
            raise SystemExit("the FHIR stub did not start")
        self.base_url = line.split()[1]
        self.origin = self.base_url[: -len("/fhir")]

    def reset_log(self) -> None:
        if self.kind == "medplum":
            self.server.reset_log()
        else:
            _OPENER.open(urllib.request.Request(self.origin + "/__reset_log", data=b"", method="POST")).read()

    def log(self) -> tuple[list[dict], int]:
        if self.kind == "medplum":
            return self.server.request_log(), 0
        raw = json.loads(_OPENER.open(self.origin + "/__log").read())
        return raw["log"], raw["unknown"]

    def stop(self) -> None:
        if self.kind == "medplum":
            self.server.stop()
        elif self.proc:
            self.proc.terminate()
            self.proc.wait(10)


def probe_parallel(fhir: Fhir, url: str, body: bytes) -> dict:
    """One hook call of scenario (b): how many FHIR queries, and were they all in flight together?"""
    time.sleep(0.3)
    fhir.reset_log()
    status, answer = post(url, body)
    entries, unknown = fhir.log()
    starts = [e["start_ms"] for e in entries]
    ends = [e["end_ms"] for e in entries if e.get("end_ms")]
    return {
        "status": status,
        "queries": len(entries),
        "unknown": unknown,
        "all_in_flight_together": bool(entries) and max(starts) < min(ends),
        "span_ms": (max(ends) - min(starts)) if ends else None,
        "rules": rule_ids(answer),
    }


def rule_ids(answer: bytes) -> list[str]:
    try:
        return [c["source"]["topic"]["code"] for c in json.loads(answer)["cards"]]
    except (ValueError, KeyError, TypeError):
        return []


# ---------------------------------------------------------------------------- report
def machine() -> str:
    cpu = "unknown CPU"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, AttributeError):
        pass
    from importlib.metadata import version

    import gunicorn

    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    osname = platform.platform(terse=True)
    try:
        osname = re.search(r'^PRETTY_NAME="(.+)"', Path("/etc/os-release").read_text(), re.M).group(1)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    return (f"{os.cpu_count()} × {cpu}{mem}; {osname}; Python {platform.python_version()}, "
            f"gunicorn {gunicorn.__version__}, Flask {version('flask')}; {wrk_version}; JSON parser {json_parser()}")


def json_parser() -> str:
    try:
        from service.jsonbody import JSON_PARSER

        return JSON_PARSER
    except ImportError:
        return "json"


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


@dataclass
class InProcess:
    """The in-process figures by scenario: CPU ms per call and M instructions per call, for the
    service and the reference (a scenario missing from a dict was not measured)."""
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_ref: dict[str, float] = field(default_factory=dict)
    instr: dict[str, float] = field(default_factory=dict)
    instr_ref: dict[str, float] = field(default_factory=dict)


def table(rows: list[Row], refs: dict[str, Row], inproc: InProcess | None = None) -> str:
    """Service and reference side by side, one pair of lines per scenario (the JWT row has no
    reference line of its own: its ratio is to (a)'s reference)."""
    inproc = inproc or InProcess()
    head = ("| scenario | server | requests/s | p50 ms | p99 ms | max ms | errors | peak RSS/worker MB | "
            "CPU ms/call (gunicorn) | CPU ms/call (in-process) | M instructions/call | vs reference |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]
    for row in rows:
        t = row.total()
        ref = refs.get(row.reference_of or row.key)
        rt = ref.total() if ref else None
        ratio = f"{t['rps'] / rt['rps'] * 100:.0f} %" if rt and rt["rps"] else "–"
        key = "" if row.jwt else row.key  # the JWT row has no in-process figures of its own
        lines.append(f"| {row.label} | service{' + JWT' if row.jwt else ''} | {fmt(t['rps'], 0)} | {fmt(t['p50_ms'])} | "
                     f"{fmt(t['p99_ms'])} | {fmt(t['max_ms'])} | {t['errors']} | {fmt(row.server.peak_rss_mb(), 0)} | "
                     f"{fmt(t['cpu_ms'], 2)} | {fmt(inproc.cpu.get(key), 2)} | {fmt(inproc.instr.get(key), 2)} | {ratio} |")
        if ref and rt and not row.jwt:
            lines.append(f"| {row.label} | reference | {fmt(rt['rps'], 0)} | {fmt(rt['p50_ms'])} | {fmt(rt['p99_ms'])} | "
                         f"{fmt(rt['max_ms'])} | {rt['errors']} | {fmt(ref.server.peak_rss_mb(), 0)} | {fmt(rt['cpu_ms'], 2)} | "
                         f"{fmt(inproc.cpu_ref.get(key), 2)} | {fmt(inproc.instr_ref.get(key), 2)} | 100 % |")
    return "\n".join(lines)


@dataclass
class Target:
    """One target: ``measured`` against ``bound`` (``at_least``: measured >= bound, else <=)."""
    name: str
    measured: float | None
    bound: float
    at_least: bool
    unit: str  # "%" (of the reference's throughput), "ms", "s", "MB", "M" (instructions), "" (a count)
    note: str = ""  # said after the measured value, e.g. which server; or why it was not measured

    @property
    def holds(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def value(self) -> str:
        if self.measured is None:
            return "not measured"
        digits = {"%": 0, "ms": 1, "s": 2, "MB": 0, "M": 2, "": 0}[self.unit]
        unit = {"%": " % of the reference", "": "", "M": " M instructions/call"}.get(self.unit, " " + self.unit)
        return f"{self.measured:,.{digits}f}{unit}" + (f" ({self.note})" if self.note else "")

    def by_how_much(self) -> str:
        """How far from the bound: the miss (and the factor it needs), or the margin."""
        m, b = self.measured, self.bound
        if m is None:
            return self.note or "–"
        digits = {"%": 0, "ms": 1, "s": 2, "MB": 0, "M": 2, "": 0}[self.unit]
        unit = {"%": " points", "": "", "M": " M"}.get(self.unit, " " + self.unit)
        gap = abs(m - b)
        if self.holds:
            return f"holds with {gap:,.{digits}f}{unit} to spare" if gap else "holds"
        if self.at_least:
            need = f"; needs {b / m:.1f}× this throughput" if m > 0 else ""
            return f"misses by {gap:,.{digits}f}{unit}{need}"
        if b > 0:
            return f"misses by {gap:,.{digits}f}{unit} ({m / b:.1f}× the bound; −{(1 - b / m) * 100:.0f} % needed)"
        return f"misses by {gap:,.{digits}f}{unit}"


def targets_from(totals: dict[str, dict], ref_totals: dict[str, dict], service_servers: list, inproc: InProcess,
                 instructions_why: str = "") -> list[Target]:
    """The targets of issue 21 (then the older ones), from the run's figures. ``totals`` and
    ``ref_totals``: ``Row.total()`` by scenario; ``service_servers``: the service's servers (cold
    start, RSS), not the reference's."""

    def ratio(k: str) -> float | None:
        if k not in totals or k not in ref_totals or not ref_totals[k]["rps"]:
            return None
        return totals[k]["rps"] / ref_totals[k]["rps"] * 100

    def instr(k: str) -> float | None:
        return inproc.instr.get(k)

    why = instructions_why or "callgrind step skipped"
    colds = [(s.cold_start_s, s.name) for s in service_servers if s.cold_start_s is not None]
    rsss = [(s.peak_rss_mb(), s.name) for s in service_servers if s.peak_rss_mb() is not None]
    cold, cold_name = max(colds) if colds else (None, "")
    rss, rss_name = max(rsss) if rsss else (None, "")
    errors = sum(t["errors"] for t in list(totals.values()) + list(ref_totals.values()))
    a, b, c = totals.get("a"), totals.get("b"), totals.get("c")
    return [
        Target("other order: throughput ≥ 80 % of the reference", ratio("o"), TARGETS["o_ratio_pct"], True, "%"),
        Target("(a) throughput ≥ 50 % of the reference", ratio("a"), TARGETS["a_ratio_pct"], True, "%"),
        Target("(a) p99 ≤ 10 ms at 8 connections", a["p99_ms"] if a else None, TARGETS["a_p99_ms"], False, "ms"),
        Target("(a) ≤ 8 M instructions per call", instr("a"), TARGETS["a_minstr"], False, "M",
               "" if instr("a") is not None else why),
        Target("(c) ≤ 40 M instructions per call", instr("c"), TARGETS["c_minstr"], False, "M",
               "" if instr("c") is not None else why),
        Target("cold start to first answer ≤ 1 s", cold, TARGETS["cold_start_s"], False, "s",
               f"{cold_name}, slowest of {len(colds)} service servers" if colds else ""),
        Target("RSS ≤ 120 MB per worker", rss, TARGETS["rss_mb"], False, "MB",
               f"largest worker, {rss_name}" if rsss else ""),
        Target("(b) p50 ≤ 130 ms, FHIR queries in parallel (earlier issue)", b["p50_ms"] if b else None,
               TARGETS["b_p50_ms"], False, "ms"),
        Target("(c) p99 ≤ 50 ms (earlier issue)", c["p99_ms"] if c else None, TARGETS["c_p99_ms"], False, "ms"),
        Target("zero errors", float(errors), 0, False, ""),
    ]


def targets_table(targets: list[Target]) -> str:
    mark = {True: "yes", False: "**no**", None: "–"}
    return "\n".join(["| target | holds | measured | by how much |", "| --- | :---: | --- | --- |",
                      *[f"| {t.name} | {mark[t.holds]} | {t.value()} | {t.by_how_much()} |" for t in targets]])


def check_targets(rows: dict[str, Row], refs: dict[str, Row], servers: list[Server],
                  inproc: InProcess | None = None, instructions_why: str = "") -> list[Target]:
    totals = {k: r.total() for k, r in rows.items() if not r.jwt and r.runs}
    ref_totals = {k: r.total() for k, r in refs.items() if r.runs}
    for r in rows.values():  # the JWT row's errors count too
        if r.jwt and r.runs:
            totals["jwt"] = {**r.total(), "rps": 0.0}
    service_servers = [s for s in servers if s.name.startswith("service")]
    return targets_from(totals, ref_totals, service_servers, inproc or InProcess(), instructions_why)


def write_results(block: str, marker: str, path: Path = RESULTS) -> None:
    """Put ``block`` between the ``bench:<marker>`` markers of ``path`` (added at the end if missing)."""
    begin, end = f"<!-- bench:{marker}:begin -->", f"<!-- bench:{marker}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmark results\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    _, post_ = rest.split(end, 1)
    path.write_text(f"{pre}{begin}\n{block.strip()}\n{end}{post_}", encoding="utf-8")


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="service vs bare-Flask reference benchmark (make bench)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--delay-ms", type=int, default=100, help="FHIR server delay in scenario (b)")
    ap.add_argument("--fhir", choices=["stub", "medplum"], default="stub")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-instructions", action="store_true", help="skip the callgrind instruction counts")
    ap.add_argument("--accept-instructions", action="store_true",
                    help="write this run's instruction counts even when they rose (a deliberate change)")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round of 3 s per run, no profile, a tenth of the in-process calls")
    args = ap.parse_args(argv)
    args.cpu_calls_scale = 1.0
    if args.quick:
        args.rounds, args.duration, args.no_profile, args.cpu_calls_scale = 1, 3.0, True, 0.1
    return args


def scenario_bodies(keys: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(records, request bodies) of the prefetch scenarios o, a, c; (b)'s body needs the FHIR server's URL."""
    realistic, large = patient.realistic(), patient.large()
    records = {"o": patient.other_order(realistic), "a": realistic, "c": large}
    return records, {k: patient.hook_request(d, keys=keys) for k, d in records.items()}


def report_text(*, args, when: str, machine_text: str, load_before: float, load_after: float, results_table: str,
                checks: dict[str, list[str]], probe: dict, colds: str, targets: list[Target],
                bad_exit: dict | None = None) -> str:
    """The block written between the ``bench:table`` markers of RESULTS.md."""
    nothing = 'none (`{"cards": []}`)'
    cards = "; ".join(f"({k}) {', '.join(v) if v else nothing}" for k, v in checks.items())
    lines = [
        f"Run {when}, `make bench` ({args.rounds} interleaved rounds × {args.duration:g} s per server and scenario, "
        f"wrk -t1 -c{args.connections}; gunicorn {args.workers} workers × {args.threads} threads, gthread; "
        f"FHIR server for (b): {'Medplum test server' if args.fhir == 'medplum' else 'fhir_stub.py'}, "
        f"{args.delay_ms} ms per query).",
        "",
        f"Machine: {machine_text}. Load average (1 min) before the run {load_before:.1f}, at its end {load_after:.1f} "
        f"(the benchmark's own load included).",
        "",
        results_table,
        "",
        "(o) other order: the same patient and full prefetch as (a), the draft is amlodipine (no rule concerns it); "
        "its reference answers `{\"cards\": []}` as the service does, the others' reference the service's cards for (a). "
        "p50/p99: median over the rounds of wrk's per-run percentiles; max: over all rounds; errors: "
        "non-2xx answers, socket errors and timeouts; peak RSS: VmHWM of the largest worker after all runs; "
        "CPU ms/call (gunicorn): CPU time of the server's processes (master and workers, user + system) per answered "
        "call during the wrk runs, which other load on the machine changes less than requests/s; CPU ms/call "
        "(in-process) and M instructions/call: `benchmarks/cpu_per_call.py` through Flask's test client, the "
        "reference's with `--reference` (instructions under callgrind: the same whatever the load; not for (b), "
        "whose FHIR queries run on pool threads). For (b) the reference answers at once (it asks no FHIR "
        "server), so its ratio only shows the 100 ms wait.",
        "",
        f"Cards answered: {cards}.",
        f"Scenario (b), one call alone: {probe['queries']} FHIR queries, "
        f"{'all in flight together' if probe['all_in_flight_together'] else 'NOT all in flight together'}, "
        f"{fmt(probe['span_ms'], 0)} ms from the first query to the last answer"
        + (f"; {probe['unknown']} queries the FHIR stub did not know" if probe.get("unknown") else "") + ".",
        f"Cold start (start of `serve` to its first answer, wall clock; in brackets the CPU time its processes used "
        f"by then, which a loaded machine changes less): {colds}.",
        "",
        "Targets (issue 21, then the earlier ones still tracked), from this run:",
        "",
        targets_table(targets),
    ]
    if bad_exit:
        lines.append(f"\nServers that did not exit 0 on SIGTERM: {bad_exit}")
    return "\n".join(lines)


def profile_block(scenario: str, data: dict, calls: int = 400) -> str:
    """pyinstrument's call tree of one scenario in-process, as written into RESULTS.md."""
    import profile_a

    text, mean_ms = profile_a.profile(calls, data=data)
    what = "the other order" if scenario == "o" else "the realistic thiopurine call"
    return (f"pyinstrument, scenario ({scenario}), {what}, in-process (Flask test client, no HTTP server): "
            f"{mean_ms:.2f} ms per hook call without the profiler; call tree from Flask's dispatch down, "
            f"share of the total time (branches under 1.5 % left out):\n\n```\n{text}\n```")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_bin = ensure_wrk()
    if not args.no_instructions:
        ensure_valgrind()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="aza-bench-"))
    say(f"benchmark: work files in {tmp}")
    try:
        return _main(args, wrk_bin, tmp, started, load_before)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _main(args, wrk_bin: str, tmp: Path, started: float, load_before: float) -> int:
    from hooks.prefetch import PREFETCH

    keys = list(PREFETCH)
    records, bodies = scenario_bodies(keys)
    realistic = records["a"]
    signer = Signer(tmp)
    servers: list[Server] = []
    fhir = None
    answers: dict[str, Path] = {}  # what each reference sends: the service's answer to (o), and to (a)
    try:
        fhir = Fhir(args.fhir, tmp, realistic, PREFETCH, args.delay_ms)
        bodies["b"] = patient.hook_request(realistic, prefetch=False, fhir_server=fhir.base_url, token="bench-token")
        files = {}
        for k in SCENARIOS:
            files[k] = tmp / f"body-{k}.json"
            files[k].write_bytes(json.dumps(bodies[k], separators=(",", ":")).encode())
        sizes = {k: f.stat().st_size for k, f in files.items()}

        def service(name: str, *extra: str, env_extra: dict | None = None) -> Server:
            port = free_port()
            data_dir = tmp / f"data-{name}"
            data_dir.mkdir()
            env = {**os.environ, "AZA_CDS_DATA_DIR": str(data_dir), "AZA_CDS_FHIR_ALLOW_LOOPBACK": "1", **(env_extra or {})}
            env.pop("AZA_CDS_DATABASE_URL", None)
            env.pop("AZA_CDS_TRUST", None)
            s = Server(name, serve_cmd(port, args, *extra), env, tmp / f"{name}.log", port)
            servers.append(s)
            return s

        def reference(name: str, answer: Path) -> Server:
            port = free_port()
            s = Server(name, [sys.executable, str(BENCH / "reference_app.py"), "--host", "127.0.0.1", "--port",
                              str(port), "--workers", str(args.workers), "--threads", str(args.threads),
                              "--card", str(answer)], dict(os.environ), tmp / f"{name}.log", port)
            servers.append(s)
            return s

        say("starting servers (cold start = start to first answer)")
        svc = {k: service(f"service-{k}", "--insecure-no-auth").start(files[k].read_bytes()) for k in SCENARIOS}
        jwt_srv = service("service-jwt", "--trust", str(signer.trust))
        jwt_srv.start(files["a"].read_bytes(), lambda: {"Authorization": "Bearer " + signer.token(jwt_srv.base + SERVICE_URL)})

        # each reference answers with a body of the same size as the service's answer: (o)'s, and (a)'s for a, b, c
        for k in ("o", "a"):
            status, answer = post(svc[k].base + SERVICE_URL, files[k].read_bytes())
            answers[k] = tmp / f"reference-answer-{k}.json"
            answers[k].write_bytes(answer)
        ref = reference("reference", answers["a"]).start(files["a"].read_bytes())
        ref_o = reference("reference-o", answers["o"]).start(files["o"].read_bytes())

        # what each scenario answers: (o) must be no card at all, the others real work
        checks = {k: rule_ids(post(svc[k].base + SERVICE_URL, files[k].read_bytes())[1]) for k in ("o", "a", "c")}
        probe = probe_parallel(fhir, svc["b"].base + SERVICE_URL, files["b"].read_bytes())
        checks["b"] = probe["rules"]
        checks = {k: checks[k] for k in SCENARIOS}
        say(f"cards: {checks}; (b) one call: {probe}")
        if checks["o"]:
            say(f"WARNING: the other-order call answered cards {checks['o']}: it is not an other-order call")

        obs = {k: patient.observation_count(records[k]) for k in ("a", "c")}
        rows = {
            "o": Row("o", f"(o) other order, full prefetch, {obs['a']} Obs ({sizes['o'] // 1024} KiB)", svc["o"], files["o"]),
            "a": Row("a", f"(a) full prefetch, {obs['a']} Obs ({sizes['a'] // 1024} KiB)", svc["a"], files["a"]),
            "jwt": Row("jwt", "(a) + JWT ES384, fresh token per request", jwt_srv, files["a"], reference_of="a", jwt=True),
            "b": Row("b", f"(b) no prefetch, FHIR {args.delay_ms} ms/query", svc["b"], files["b"]),
            "c": Row("c", f"(c) full prefetch, {obs['c']} Obs ({sizes['c'] // 1024} KiB)", svc["c"], files["c"]),
        }
        refs = {k: Row(k, rows[k].label, ref_o if k == "o" else ref, files[k]) for k in SCENARIOS}

        say("warming up")
        for row in list(rows.values()) + list(refs.values()):
            tokens = None
            if row.jwt:
                tokens = signer.tokens_file(row.server.base + SERVICE_URL, 3000, tmp / "tokens-warm.txt")
            wrk(wrk_bin, row.server.base + SERVICE_URL, row.body, seconds=2, connections=args.connections, tokens=tokens)

        expected_rps = 0.0
        for rnd in range(args.rounds):
            for key in ("o", "a", "jwt", "b", "c"):
                row = rows[key]
                tokens = None
                if row.jwt:
                    count = int(max(expected_rps, 300) * args.duration * 1.6) + 500
                    tokens = signer.tokens_file(row.server.base + SERVICE_URL, count, tmp / "tokens.txt")
                run = wrk(wrk_bin, row.server.base + SERVICE_URL, row.body, seconds=args.duration,
                          connections=args.connections, tokens=tokens, server=row.server)
                row.runs.append(run)
                if key == "a":
                    expected_rps = max(expected_rps, run.rps)
                say(f"round {rnd + 1}/{args.rounds} {key:>3} service   {run.rps:8.0f} req/s  p50 {run.p50_ms:6.1f}  "
                    f"p99 {run.p99_ms:6.1f}  max {run.max_ms:7.1f} ms  errors {run.errors}")
                if key in refs:
                    rserver = refs[key].server
                    rrun = wrk(wrk_bin, rserver.base + SERVICE_URL, refs[key].body, seconds=args.duration,
                               connections=args.connections, server=rserver)
                    refs[key].runs.append(rrun)
                    say(f"round {rnd + 1}/{args.rounds} {key:>3} reference {rrun.rps:8.0f} req/s  p50 {rrun.p50_ms:6.1f}  "
                        f"p99 {rrun.p99_ms:6.1f}  max {rrun.max_ms:7.1f} ms  errors {rrun.errors}")

        load_after = os.getloadavg()[0]
        probe_after = probe_parallel(fhir, svc["b"].base + SERVICE_URL, files["b"].read_bytes())
    finally:
        codes = {s.name: s.stop() for s in servers}
        if fhir:
            fhir.stop()
    bad_exit = {n: c for n, c in codes.items() if c not in (0, None)}
    machine_text = machine()

    profile_text = profile_o_text = None
    if not args.no_profile and ensure_python_package("pyinstrument", "pyinstrument"):
        say("profiling scenarios (a) and (o) in-process with pyinstrument")
        profile_text = profile_block("a", realistic)
        profile_o_text = profile_block("o", records["o"])
    import cpu_per_call

    say("CPU per call in-process, service and reference")
    inproc = InProcess()
    for s in SCENARIOS:
        n = max(5, int(cpu_per_call.DEFAULT_CALLS[s] * args.cpu_calls_scale))
        inproc.cpu[s] = cpu_per_call.cpu_ms(s, n)
        inproc.cpu_ref[s] = cpu_per_call.cpu_ms(s, n, reference=True, body=files[s].read_bytes(),
                                                answer=answers["o" if s == "o" else "a"].read_bytes())
    cpu_text = ("CPU per hook call in-process (`benchmarks/cpu_per_call.py`: the Flask test client, "
                "`time.process_time` over many calls; (b) against fhir_stub.py with no delay): "
                + ", ".join(f"({s}) {inproc.cpu[s]:.2f} ms" for s in SCENARIOS)
                + "; the bare reference with the same bodies (`--reference`): "
                + ", ".join(f"({s}) {inproc.cpu_ref[s]:.2f} ms" for s in SCENARIOS) + ".")
    regressions: list[str] = []
    instructions_text = None
    instructions_why = "skipped (--no-instructions)" if args.no_instructions else ""
    if not args.no_instructions:
        say("instructions per call under callgrind, service and reference (several minutes)")
        previous = cpu_per_call.previous_instructions(RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "")
        ref_files = {s: (str(answers["o" if s == "o" else "a"]), str(files[s])) for s in cpu_per_call.INSTRUCTION_SCENARIOS}
        instructions_text, regressions, inproc.instr, inproc.instr_ref = cpu_per_call.instructions_block(
            previous, {k: rows[k].label[4:] for k in cpu_per_call.INSTRUCTION_SCENARIOS}, ref_files)
        if not inproc.instr:
            instructions_why = instructions_text.rstrip(".").replace("Instructions per call: not measured, ", "")
        for r in regressions:
            say(f"REGRESSION: {r}")

    colds = ", ".join(f"{s.name} {s.cold_start_s:.2f} s" + (f" ({s.cold_start_cpu_s:.2f} s CPU)" if s.cold_start_cpu_s else "")
                      for s in servers if s.cold_start_s is not None)
    targets = check_targets(rows, refs, servers, inproc, instructions_why)
    report = report_text(args=args, when=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), machine_text=machine_text,
                         load_before=load_before, load_after=load_after,
                         results_table=table(list(rows.values()), refs, inproc), checks=checks, probe=probe_after,
                         colds=colds, targets=targets, bad_exit=bad_exit)
    print(report)
    print("\n" + cpu_text)
    if instructions_text:
        print("\n" + instructions_text)
    for text in (profile_text, profile_o_text):
        if text:
            print("\n" + text)
    if not args.no_write:
        write_results(report, "table")
        write_results(cpu_text, "cpu")
        if profile_text:
            write_results(profile_text, "profile")
        if profile_o_text:
            write_results(profile_o_text, "profile-o")
        if instructions_text and (not regressions or args.accept_instructions):
            write_results(instructions_text, "instructions")
        say(f"written to {RESULTS.relative_to(ROOT)}")
    say(f"benchmark took {time.monotonic() - started:.0f} s")
    return 1 if regressions and not args.accept_instructions else 0


if __name__ == "__main__":
    sys.exit(main())
