"""CPU per hook call, in-process: the figure that other load on the machine changes least.

The app is built as ``serve`` builds it for a worker (auth off, feedback store in a
temporary directory, ``service.wsgi.prepare_worker_heap`` after the build) and called
through Flask's test client; ``time.process_time`` over many calls, after a warm-up.

- (a) realistic patient, full prefetch; (c) 515 Observations, full prefetch;
- (b) no prefetch: the FHIR server is ``fhir_stub.py`` in its own process with no delay,
  so only the service's own CPU (the FHIR client's included) is counted.

``--instructions`` counts instructions per call instead (stable under load): the same
calls run under ``valgrind --tool=callgrind`` with collection off (start-up, app build and
warm-up are not counted) except inside ``functools.reduce`` (a C function, so callgrind can
toggle on it), through which the measured calls, and only they, are made.

    .venv/bin/python benchmarks/cpu_per_call.py [--scenarios a,b,c] [--calls 200]
    .venv/bin/python benchmarks/cpu_per_call.py --instructions [--scenarios a,c]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import patient  # noqa: E402

DEFAULT_CALLS = {"a": 300, "b": 100, "c": 40}
# valgrind runs about 50 times slower: few calls, enough to be stable to a fraction of a per cent
CALLGRIND_CALLS = {"a": 10, "c": 3}


class Harness:
    """One app, one scenario's body; ``call()`` is one hook call."""

    def __init__(self, scenario: str, tmp: str) -> None:
        os.environ["AZA_CDS_DATA_DIR"] = tmp
        os.environ["AZA_CDS_FHIR_ALLOW_LOOPBACK"] = "1"
        import logging

        from service import create_app

        try:
            from service.wsgi import prepare_worker_heap
        except ImportError:  # older code (the A/B's "before"): it did not prepare the heap
            def prepare_worker_heap() -> None:
                pass

        self.stub = None
        app = create_app({"auth_required": False})
        logging.getLogger("aza_cds").setLevel(logging.WARNING)
        self.app = app
        self.client = app.test_client()
        keys = list(json.loads(self.client.get("/cds-services").data)["services"][0]["prefetch"])
        if scenario == "b":
            self.stub = _start_stub(Path(tmp), patient.realistic(), self._templates())
            req = patient.hook_request(patient.realistic(), prefetch=False, fhir_server=self.stub[1], token="bench-token")
        else:
            data = patient.large() if scenario == "c" else patient.realistic()
            req = patient.hook_request(data, keys=keys)
        self.body = json.dumps(req).encode()
        self.url = "/cds-services/" + patient.SERVICE
        prepare_worker_heap()

    def _templates(self) -> dict[str, str]:
        return json.loads(self.client.get("/cds-services").data)["services"][0]["prefetch"]

    def call(self) -> bytes:
        resp = self.client.post(self.url, data=self.body, content_type="application/json")
        if resp.status_code != 200:
            raise SystemExit(f"hook call failed: {resp.status_code} {resp.data[:300]!r}")
        return resp.data

    def close(self) -> None:
        store = self.app.extensions.get("aza_feedback_store")
        if store is not None and hasattr(store, "close"):
            store.close()
        if self.stub is not None:
            self.stub[0].terminate()
            self.stub[0].wait(10)


def _start_stub(tmp: Path, data: dict, templates: dict[str, str]):
    from hooks.prefetch import render

    answers = {"patient": data["patient"]}
    for key in templates:
        if key != "patient":
            answers[key] = patient.searchset(data.get(key, []))
    table = {render(t, {"patientId": patient.PID}) or t: answers[k] for k, t in templates.items()}
    path = tmp / "fhir-table.json"
    path.write_text(json.dumps(table))
    proc = subprocess.Popen([sys.executable, str(BENCH / "fhir_stub.py"), "--port", "0", "--delay-ms", "0",
                             "--table", str(path)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("LISTENING "):
        raise SystemExit("the FHIR stub did not start")
    return proc, line.split()[1]


def cpu_ms(scenario: str, calls: int, warmup: int = 20) -> float:
    with tempfile.TemporaryDirectory(prefix="aza-cpu-") as tmp:
        h = Harness(scenario, tmp)
        try:
            for _ in range(warmup):
                h.call()
            started = time.process_time()
            for _ in range(calls):
                h.call()
            return (time.process_time() - started) / calls * 1000
        finally:
            h.close()


def _run_calls(scenario: str, calls: int) -> None:
    """Child of ``--instructions``: warm up, then ``calls`` calls, then exit."""
    with tempfile.TemporaryDirectory(prefix="aza-cg-") as tmp:
        h = Harness(scenario, tmp)
        try:
            for _ in range(3):
                h.call()
            functools.reduce(lambda n, _: n + len(h.call()), range(calls), 0)  # counted: see _instructions
        finally:
            h.close()


def callgrind_available() -> str | None:
    """Why instructions cannot be counted here, or None when they can."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian package valgrind)"
    probe = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "true"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "valgrind --tool=callgrind does not run here: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


def _instructions(scenario: str, calls: int) -> int:
    with tempfile.TemporaryDirectory(prefix="aza-cg-out-") as out:
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
               f"--callgrind-out-file={out}/cg.out", sys.executable,
               str(Path(__file__).resolve()), "--child", scenario, str(calls)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed: {done.stderr[-800:]}")
        m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(out, "cg.out").read_text(), re.M)
        if not m:
            raise SystemExit("no instruction total in the callgrind output")
        return int(m.group(1))


def instructions_per_call(scenario: str, calls: int | None = None) -> float:
    n = calls or CALLGRIND_CALLS[scenario]
    return _instructions(scenario, n) / n


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _run_calls(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=None, help="comma-separated: a,b,c (default a,b,c; a,c with --instructions)")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--instructions", action="store_true", help="instructions per call under callgrind")
    args = p.parse_args(argv)
    scenarios = (args.scenarios or ("a,c" if args.instructions else "a,b,c")).split(",")
    if args.instructions:
        why = callgrind_available()
        if why:
            print(f"instructions per call: skipped, {why}")
            return 0
        for s in scenarios:
            print(f"({s}) {instructions_per_call(s, args.calls) / 1e6:.2f} M instructions per call")
        return 0
    for s in scenarios:
        print(f"({s}) {cpu_ms(s, args.calls or DEFAULT_CALLS[s]):.3f} ms CPU per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------- the regression figure (make bench)
TOLERANCE = 0.03  # instructions per call may grow this much from one run to the next (interpreter noise is < 0.5 %)
_ROW = re.compile(r"^\| \((?P<s>[a-z])\)[^|]*\| (?P<m>[\d.]+) \|", re.M)


def previous_instructions(results_text: str) -> dict[str, float]:
    """Millions of instructions per call by scenario, from the ``bench:instructions`` block of RESULTS.md."""
    begin, end = "<!-- bench:instructions:begin -->", "<!-- bench:instructions:end -->"
    if begin not in results_text or end not in results_text:
        return {}
    block = results_text.split(begin, 1)[1].split(end, 1)[0]
    return {m["s"]: float(m["m"]) for m in _ROW.finditer(block)}


def instructions_block(previous: dict[str, float], labels: dict[str, str]) -> tuple[str, list[str], dict[str, float]]:
    """(markdown block, regressions, new figures): callgrind instructions per call for (a) and (c),
    each against the previous run's figure. Empty block and no regressions when callgrind cannot run."""
    why = callgrind_available()
    if why:
        return f"Instructions per call: not measured, {why}.", [], {}
    now = {s: instructions_per_call(s) / 1e6 for s in ("a", "c")}
    rows, regressions = [], []
    for s, m in now.items():
        before = previous.get(s)
        change = (m - before) / before if before else None
        verdict = "first run" if change is None else ("**regression**" if change > TOLERANCE else "ok")
        if change is not None and change > TOLERANCE:
            regressions.append(f"({s}) {m:.2f} M instructions per call, {change * 100:+.1f} % on the previous {before:.2f} M")
        rows.append(f"| ({s}) {labels.get(s, '')} | {m:.2f} | {f'{before:.2f}' if before else '–'} | "
                    f"{f'{change * 100:+.1f} %' if change is not None else '–'} | {verdict} |")
    block = "\n".join([
        f"Instructions per hook call, in-process (`benchmarks/cpu_per_call.py --instructions`: valgrind "
        f"callgrind, counted only inside the measured calls, {CALLGRIND_CALLS['a']} calls of (a), "
        f"{CALLGRIND_CALLS['c']} of (c), after a warm-up). A rise of more than {TOLERANCE * 100:.0f} % on the "
        f"previous run fails `make bench` (exit status 1) and leaves the previous figures here.",
        "",
        "| scenario | M instructions/call | previous | change | check |",
        "| --- | ---: | ---: | ---: | --- |",
        *rows,
    ])
    return block, regressions, now
