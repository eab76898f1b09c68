"""``make bench``: the service against a bare Flask reference, same gunicorn settings, same load tool.

What it does, in one run (about 3.5 minutes on 2 cores):

1. Builds the requests (``patient.py``): (a) order-sign with full prefetch for a
   realistic patient (62 Observations, 10 MedicationRequests, 5 Conditions, an
   allergy); (b) the same call with no prefetch, so that the service fetches
   every key from a local FHIR server that holds every query 100 ms
   (``fhir_stub.py``, or the Medplum test server with ``--fhir medplum``); (c) a
   large patient (515 Observations) with full prefetch.
2. Starts, each on its own loopback port with the same gunicorn settings
   (``service.wsgi.gunicorn_settings``: ``--workers``/``--threads``): one
   ``azathioprine-cds serve --insecure-no-auth`` per scenario, one ``serve`` with
   JWT verification (a trust file with a fresh ES384 key), and the reference
   (``reference_app.py``: a bare Flask app that reads the same body and returns
   a fixed card of the same size as the service's answer). Cold start = from
   starting ``serve`` to its first answer to a hook call.
3. Drives them with wrk (Debian package ``wrk``; installed with apt-get if it is
   missing and we are root), interleaved: every round runs each scenario against
   the service, then the reference, so that a noisy neighbour hits both alike.
   JWT runs send a fresh token (new ``jti``) with every request.
4. Prints the table (requests/s, p50, p99, max, errors, peak RSS per worker, ratio
   to the reference), checks the targets, and writes the table into
   ``benchmarks/RESULTS.md`` (between the ``bench:`` markers) with the machine
   it ran on, plus a pyinstrument profile of scenario (a) (``profile_a.py``).

Options: ``--duration S`` per run (8), ``--rounds N`` (3), ``--connections C`` (8),
``--workers``/``--threads`` (2/4), ``--fhir stub|medplum``, ``--no-profile``,
``--no-write`` (leave RESULTS.md alone), ``--quick`` (1 round of 3 s: a smoke test).
After the wrk runs: CPU ms per call in-process for (a), (b), (c), and the stable regression
figure, instructions per call for (a) and (c) under valgrind callgrind (``cpu_per_call.py``;
skipped, saying why, where callgrind cannot run; ``--no-instructions`` skips it).
Exit status 0 whether or not a wall-clock target is missed (the table says so); 1 when the
instructions per call of (a) or (c) rose more than 3 % on the previous run's figure in
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

TARGETS = {
    "a_ratio": 0.50,     # throughput >= 50 % of the reference
    "a_p99_ms": 10.0,
    "b_p50_ms": 130.0,
    "c_p99_ms": 50.0,
    "cold_start_s": 1.0,
    "rss_mb": 120.0,
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

    def peak_rss_mb(self) -> float | None:
        """Peak resident set size (VmHWM) of the largest worker, in MB."""
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
        total = 0
        for pid in ([self.proc.pid] if self.proc else []) + self.workers():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
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
    cpu_s: float = 0.0  # CPU time the server used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(wrk_bin: str, url: str, body_file: Path, *, seconds: float, connections: int,
        tokens: Path | None = None, server: Server | None = None) -> Run:
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_TOKENS": str(tokens or "")}
    cmd = [wrk_bin, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url]
    cpu_before = server.cpu_seconds() if server else 0.0
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu_before if server else 0.0
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCH_JSON "):])
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return Run(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000, r["max_us"] / 1000, errors,
               cpu)


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
            "cpu_ms": sum(r.cpu_s for r in self.runs) / n * 1000 if n else None,
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


def table(rows: list[Row], refs: dict[str, Row], args) -> str:
    head = ("| scenario | server | requests/s | p50 ms | p99 ms | max ms | errors | peak RSS/worker MB | CPU ms/call | vs reference |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]
    for row in rows:
        t = row.total()
        ref = refs.get(row.reference_of or row.key)
        rt = ref.total() if ref else None
        ratio = f"{t['rps'] / rt['rps'] * 100:.0f} %" if rt and rt["rps"] else "–"
        lines.append(f"| {row.label} | service{' + JWT' if row.jwt else ''} | {fmt(t['rps'], 0)} | {fmt(t['p50_ms'])} | "
                     f"{fmt(t['p99_ms'])} | {fmt(t['max_ms'])} | {t['errors']} | {fmt(row.server.peak_rss_mb(), 0)} | {fmt(t['cpu_ms'], 2)} | {ratio} |")
        if ref and rt and not row.jwt:
            lines.append(f"| {row.label} | reference | {fmt(rt['rps'], 0)} | {fmt(rt['p50_ms'])} | {fmt(rt['p99_ms'])} | "
                         f"{fmt(rt['max_ms'])} | {rt['errors']} | {fmt(ref.server.peak_rss_mb(), 0)} | {fmt(rt['cpu_ms'], 2)} | 100 % |")
    return "\n".join(lines)


def check_targets(rows: dict[str, Row], refs: dict[str, Row], servers: list[Server]) -> list[tuple[str, bool, str]]:
    out = []
    a, b, c = rows["a"].total(), rows["b"].total(), rows["c"].total()
    ratio = a["rps"] / refs["a"].total()["rps"]
    out.append(("(a) throughput ≥ 50 % of the reference", ratio >= TARGETS["a_ratio"], f"{ratio * 100:.0f} %"))
    out.append(("(a) p99 ≤ 10 ms at 8 connections", a["p99_ms"] <= TARGETS["a_p99_ms"], f"{a['p99_ms']:.1f} ms"))
    out.append(("(b) p50 ≤ 130 ms (FHIR queries in parallel)", b["p50_ms"] <= TARGETS["b_p50_ms"], f"{b['p50_ms']:.1f} ms"))
    out.append(("(c) p99 ≤ 50 ms", c["p99_ms"] <= TARGETS["c_p99_ms"], f"{c['p99_ms']:.1f} ms"))
    cold = max(s.cold_start_s for s in servers if s.cold_start_s is not None)
    out.append(("cold start to first answer ≤ 1 s", cold <= TARGETS["cold_start_s"], f"{cold:.2f} s (slowest of {len(servers)})"))
    rss = max(s.peak_rss_mb() or 0 for s in servers)
    out.append(("RSS ≤ 120 MB per worker", rss <= TARGETS["rss_mb"], f"{rss:.0f} MB (largest worker)"))
    errors = sum(r.total()["errors"] for r in list(rows.values()) + list(refs.values()))
    out.append(("zero errors", errors == 0, f"{errors}"))
    return out


def write_results(block: str, marker: str) -> None:
    begin, end = f"<!-- bench:{marker}:begin -->", f"<!-- bench:{marker}:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else f"# Benchmark results\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    _, post_ = rest.split(end, 1)
    RESULTS.write_text(f"{pre}{begin}\n{block.strip()}\n{end}{post_}", encoding="utf-8")


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
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
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s per run (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3.0

    wrk_bin = ensure_wrk()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="aza-bench-"))
    say(f"benchmark: work files in {tmp}")
    from hooks.prefetch import PREFETCH

    keys = list(PREFETCH)
    realistic, large = patient.realistic(), patient.large()
    bodies = {
        "a": patient.hook_request(realistic, keys=keys),
        "c": patient.hook_request(large, keys=keys),
    }
    signer = Signer(tmp)
    servers: list[Server] = []
    fhir = None
    try:
        fhir = Fhir(args.fhir, tmp, realistic, PREFETCH, args.delay_ms)
        bodies["b"] = patient.hook_request(realistic, prefetch=False, fhir_server=fhir.base_url, token="bench-token")
        files = {}
        for k, b in bodies.items():
            files[k] = tmp / f"body-{k}.json"
            files[k].write_bytes(json.dumps(b, separators=(",", ":")).encode())
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

        say("starting servers (cold start = start to first answer)")
        svc = {k: service(f"service-{k}", "--insecure-no-auth").start(files[k].read_bytes()) for k in ("a", "b", "c")}
        jwt_srv = service("service-jwt", "--trust", str(signer.trust))
        jwt_srv.start(files["a"].read_bytes(), lambda: {"Authorization": "Bearer " + signer.token(jwt_srv.base + SERVICE_URL)})

        # the reference answers with a card of the same size as the service's answer to (a)
        status, answer_a = post(svc["a"].base + SERVICE_URL, files["a"].read_bytes())
        card_file = tmp / "reference-card.json"
        card_file.write_bytes(answer_a)
        ref_port = free_port()
        ref = Server("reference", [sys.executable, str(BENCH / "reference_app.py"), "--host", "127.0.0.1", "--port",
                                   str(ref_port), "--workers", str(args.workers), "--threads", str(args.threads),
                                   "--card", str(card_file)], dict(os.environ), tmp / "reference.log", ref_port)
        ref.start(files["a"].read_bytes())
        servers.append(ref)

        # what each scenario answers (it must be real work: cards, and in (b) every query answered)
        checks = {k: rule_ids(post(svc[k].base + SERVICE_URL, files[k].read_bytes())[1]) for k in ("a", "c")}
        probe = probe_parallel(fhir, svc["b"].base + SERVICE_URL, files["b"].read_bytes())
        checks["b"] = probe["rules"]
        say(f"cards: {checks}; (b) one call: {probe}")

        obs = {"a": patient.observation_count(realistic), "c": patient.observation_count(large)}
        rows = {
            "a": Row("a", f"(a) full prefetch, {obs['a']} Obs ({sizes['a'] // 1024} KiB)", svc["a"], files["a"]),
            "jwt": Row("jwt", "(a) + JWT ES384, fresh token per request", jwt_srv, files["a"], reference_of="a", jwt=True),
            "b": Row("b", f"(b) no prefetch, FHIR {args.delay_ms} ms/query", svc["b"], files["b"]),
            "c": Row("c", f"(c) full prefetch, {obs['c']} Obs ({sizes['c'] // 1024} KiB)", svc["c"], files["c"]),
        }
        refs = {k: Row(k, rows[k].label, ref, files[k]) for k in ("a", "b", "c")}

        say("warming up")
        for row in list(rows.values()) + list(refs.values()):
            tokens = None
            if row.jwt:
                tokens = signer.tokens_file(row.server.base + SERVICE_URL, 3000, tmp / "tokens-warm.txt")
            wrk(wrk_bin, row.server.base + SERVICE_URL, row.body, seconds=2, connections=args.connections, tokens=tokens)

        expected_rps = 0.0
        for rnd in range(args.rounds):
            for key in ("a", "jwt", "b", "c"):
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
                    rrun = wrk(wrk_bin, ref.base + SERVICE_URL, refs[key].body, seconds=args.duration,
                               connections=args.connections, server=ref)
                    refs[key].runs.append(rrun)
                    say(f"round {rnd + 1}/{args.rounds} {key:>3} reference {rrun.rps:8.0f} req/s  p50 {rrun.p50_ms:6.1f}  "
                        f"p99 {rrun.p99_ms:6.1f}  max {rrun.max_ms:7.1f} ms  errors {rrun.errors}")

        load_after = os.getloadavg()[0]
        probe_after = probe_parallel(fhir, svc["b"].base + SERVICE_URL, files["b"].read_bytes())
        results_table = table(list(rows.values()), refs, args)
        targets = check_targets(rows, refs, servers)
    finally:
        codes = {s.name: s.stop() for s in servers}
        if fhir:
            fhir.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    bad_exit = {n: c for n, c in codes.items() if c not in (0, None)}

    colds = ", ".join(f"{s.name} {s.cold_start_s:.2f} s" for s in servers if s.cold_start_s is not None)
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"Run {when}, `make bench` ({args.rounds} interleaved rounds × {args.duration:g} s per server and scenario, "
        f"wrk -t1 -c{args.connections}; gunicorn {args.workers} workers × {args.threads} threads, gthread; "
        f"FHIR server for (b): {'Medplum test server' if args.fhir == 'medplum' else 'fhir_stub.py'}, "
        f"{args.delay_ms} ms per query).",
        "",
        f"Machine: {machine()}. Load average (1 min) before the run {load_before:.1f}, at its end {load_after:.1f} "
        f"(the benchmark's own load included).",
        "",
        results_table,
        "",
        "p50/p99: median over the rounds of wrk's per-run percentiles; max: over all rounds; errors: "
        "non-2xx answers, socket errors and timeouts; peak RSS: VmHWM of the largest worker after all runs; "
        "CPU ms/call: CPU time of the server's processes (master and workers, user + system) per answered call, "
        "which other load on the machine changes less than requests/s. For (b) the reference answers at once "
        "(it asks no FHIR server), so its ratio only shows the 100 ms wait.",
        "",
        f"Cards answered: (a) {', '.join(checks['a'])}; (b) {', '.join(checks['b'])}; (c) {', '.join(checks['c'])}.",
        f"Scenario (b), one call alone: {probe_after['queries']} FHIR queries, "
        f"{'all in flight together' if probe_after['all_in_flight_together'] else 'NOT all in flight together'}, "
        f"{fmt(probe_after['span_ms'], 0)} ms from the first query to the last answer"
        + (f"; {probe_after['unknown']} queries the FHIR stub did not know" if probe_after["unknown"] else "") + ".",
        f"Cold start (start of `serve` to its first answer): {colds}.",
        "",
        "| target | holds | measured |",
        "| --- | :---: | --- |",
        *[f"| {name} | {'yes' if ok else '**no**'} | {value} |" for name, ok, value in targets],
    ]
    if bad_exit:
        lines.append(f"\nServers that did not exit 0 on SIGTERM: {bad_exit}")
    report = "\n".join(lines)
    print(report)

    profile_text = None
    if not args.no_profile and ensure_python_package("pyinstrument", "pyinstrument"):
        import profile_a

        say("profiling scenario (a) in-process with pyinstrument")
        profile_text, mean_ms = profile_a.profile(400, data=realistic)
        profile_text = (f"pyinstrument, scenario (a) in-process (Flask test client, no HTTP server): "
                        f"{mean_ms:.2f} ms per hook call without the profiler; call tree from Flask's dispatch down, "
                        f"share of the total time (branches under 1.5 % left out):\n\n```\n{profile_text}\n```")
        print("\n" + profile_text)
    import cpu_per_call

    say("CPU per call in-process")
    cpu = {s: cpu_per_call.cpu_ms(s, cpu_per_call.DEFAULT_CALLS[s]) for s in ("a", "b", "c")}
    cpu_text = ("CPU per hook call in-process (`benchmarks/cpu_per_call.py`: the Flask test client, "
                "`time.process_time` over many calls; (b) against fhir_stub.py with no delay): "
                + ", ".join(f"({s}) {v:.2f} ms" for s, v in cpu.items()) + ".")
    print("\n" + cpu_text)
    regressions: list[str] = []
    instructions_text = None
    if not args.no_instructions:
        say("instructions per call under callgrind (a few minutes)")
        previous = cpu_per_call.previous_instructions(RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "")
        instructions_text, regressions, _ = cpu_per_call.instructions_block(
            previous, {"a": rows["a"].label[4:], "c": rows["c"].label[4:]})
        print("\n" + instructions_text)
        for r in regressions:
            say(f"REGRESSION: {r}")
    if not args.no_write:
        write_results(report, "table")
        write_results(cpu_text, "cpu")
        if profile_text:
            write_results(profile_text, "profile")
        if instructions_text and (not regressions or args.accept_instructions):
            write_results(instructions_text, "instructions")
        say(f"written to {RESULTS.relative_to(ROOT)}")
    say(f"benchmark took {time.monotonic() - started:.0f} s")
    return 1 if regressions and not args.accept_instructions else 0


if __name__ == "__main__":
    sys.exit(main())
