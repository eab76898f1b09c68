"""CPU per hook call, in-process: the figure that other load on the machine changes least.

The app is built as ``serve`` builds it for a worker (auth off, feedback store in a
temporary directory, ``service.wsgi.prepare_worker_heap`` after the build) and called
through Flask's test client; ``time.process_time`` over many calls, after a warm-up.

- (o) other order: the realistic patient's full prefetch, a draft that no rule concerns
  (amlodipine: ``patient.other_order``), the call an EHR sends for every order;
- (a) realistic patient, full prefetch; (c) 515 Observations, full prefetch;
- (b) no prefetch: the FHIR server is ``fhir_stub.py`` in its own process with no delay,
  so only the service's own CPU (the FHIR client's included) is counted.

``--reference``: the same bodies sent to the bare Flask reference (``reference_app.py``) instead,
through the same test client: the floor that Flask, Werkzeug and reading the body cost.

``--instructions`` counts instructions per call instead (stable under load): the same
calls run under ``valgrind --tool=callgrind`` with collection off (start-up, app build and
warm-up are not counted) except inside ``functools.reduce`` (a C function, so callgrind can
toggle on it), through which the measured calls, and only they, are made. Not for (b): its
FHIR queries run on the FHIR client's pool threads, which the toggle does not follow, and
whole-process totals (differenced between two call counts) were not stable for it (the same
code gave 25 and 44 M: valgrind serialises the threads and the GIL's timed hand-offs depend on
wall time); ``fhir_query_ab.py --instructions`` counts one FHIR query in the calling thread.

    .venv/bin/python benchmarks/cpu_per_call.py [--scenarios o,a,b,c] [--calls 200] [--reference]
    .venv/bin/python benchmarks/cpu_per_call.py --instructions [--scenarios o,a,c] [--reference]
    .venv/bin/python benchmarks/cpu_per_call.py --instructions --scenarios a --stage hooks.pipeline:gather

``--stage MODULE:NAME``: only the instructions spent inside that function, per call (the function is looked up
as ``MODULE.NAME`` by its callers: ``hooks.pipeline:build_facts``, not where it is defined): where a call's
instructions go, stage by stage (``benchmarks/RESULTS.md``, "Stages of (a)").
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

SCENARIOS = ("o", "a", "b", "c")
DEFAULT_CALLS = {"o": 300, "a": 300, "b": 100, "c": 40}
# valgrind runs about 50 times slower: few calls, enough to be stable to a fraction of a per cent
CALLGRIND_CALLS = {"o": 10, "a": 10, "c": 3}
INSTRUCTION_SCENARIOS = ("o", "a", "c")  # not (b): see the module's docstring
LABELS = {
    "o": "other order (amlodipine), full prefetch, 62 Obs",
    "a": "full prefetch, 62 Obs",
    "b": "no prefetch, FHIR stub",
    "c": "full prefetch, 515 Obs",
}


def scenario_data(scenario: str) -> dict:
    """The patient record of a prefetch scenario (o, a or c)."""
    if scenario == "c":
        return patient.large()
    if scenario == "o":
        return patient.other_order(patient.realistic())
    if scenario == "a":
        return patient.realistic()
    raise ValueError(f"unknown prefetch scenario {scenario!r}")


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
            req = patient.hook_request(scenario_data(scenario), keys=keys)
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


class ReferenceHarness:
    """The bare Flask reference (``reference_app.py``) called with a scenario's body through the
    same test client: what routing, reading the body and answering cost, with no work of ours."""

    def __init__(self, scenario: str, answer: bytes | None = None, body: bytes | None = None) -> None:
        from reference_app import DEFAULT_CARD, create_reference_app

        if answer is None:
            answer = b'{"cards":[]}' if scenario == "o" else json.dumps(DEFAULT_CARD).encode()
        if body is not None:  # make bench hands over the very bytes it sent to the servers
            self.body = body
        elif scenario == "b":
            self.body = json.dumps(patient.hook_request(patient.realistic(), prefetch=False,
                                                        fhir_server="http://127.0.0.1:9/fhir", token="bench-token")).encode()
        else:
            from hooks.prefetch import PREFETCH

            self.body = json.dumps(patient.hook_request(scenario_data(scenario), keys=list(PREFETCH))).encode()
        self.client = create_reference_app(answer).test_client()
        self.url = "/cds-services/" + patient.SERVICE

    def call(self) -> bytes:
        resp = self.client.post(self.url, data=self.body, content_type="application/json")
        if resp.status_code != 200:
            raise SystemExit(f"reference call failed: {resp.status_code}")
        return resp.data

    def close(self) -> None:
        pass


def _harness(scenario: str, tmp: str, reference: bool, answer: bytes | None = None, body: bytes | None = None):
    return ReferenceHarness(scenario, answer, body) if reference else Harness(scenario, tmp)


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


def cpu_ms(scenario: str, calls: int, warmup: int = 20, *, reference: bool = False,
           answer: bytes | None = None, body: bytes | None = None) -> float:
    with tempfile.TemporaryDirectory(prefix="aza-cpu-") as tmp:
        h = _harness(scenario, tmp, reference, answer, body)
        try:
            for _ in range(warmup):
                h.call()
            started = time.process_time()
            for _ in range(calls):
                h.call()
            return (time.process_time() - started) / calls * 1000
        finally:
            h.close()


def _run_calls(scenario: str, calls: int, reference: bool = False, answer_file: str = "", body_file: str = "",
               stage: str = "") -> None:
    """Child of ``--instructions``: warm up, then ``calls`` calls, then exit. ``stage``: only inside that function."""
    answer = Path(answer_file).read_bytes() if answer_file else None
    body = Path(body_file).read_bytes() if body_file else None
    with tempfile.TemporaryDirectory(prefix="aza-cg-") as tmp:
        h = _harness(scenario, tmp, reference, answer, body)
        try:
            for _ in range(3):
                h.call()
            if stage:
                _count_only_inside(stage)
                for _ in range(calls):
                    h.call()
            else:
                functools.reduce(lambda n, _: n + len(h.call()), range(calls), 0)  # counted: see _instructions
        finally:
            h.close()


def _count_only_inside(stage: str) -> None:
    """Replace ``MODULE.NAME`` by a function that runs it inside ``functools.reduce``, the C function callgrind
    toggles collection on (``_instructions``): only the time inside it is counted."""
    import importlib

    module, name = stage.split(":", 1)
    owner = importlib.import_module(module)
    *path, last = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    inner = getattr(owner, last)

    def counted(*args, **kwargs):
        return functools.reduce(lambda _acc, _item: inner(*args, **kwargs), (None,), None)

    setattr(owner, last, counted)


def callgrind_available() -> str | None:
    """Why instructions cannot be counted here, or None when they can."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian package valgrind)"
    probe = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "true"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "valgrind --tool=callgrind does not run here: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


def _instructions(scenario: str, calls: int, reference: bool = False, answer_file: str = "", body_file: str = "",
                  stage: str = "") -> int:
    if scenario not in INSTRUCTION_SCENARIOS:
        raise SystemExit(f"instructions per call: not for ({scenario}); see benchmarks/cpu_per_call.py's docstring")
    with tempfile.TemporaryDirectory(prefix="aza-cg-out-") as out:
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
               f"--callgrind-out-file={out}/cg.out", sys.executable,
               str(Path(__file__).resolve()), "--child", scenario, str(calls), "ref" if reference else "svc", answer_file, body_file, stage]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed: {done.stderr[-800:]}")
        m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(out, "cg.out").read_text(), re.M)
        if not m:
            raise SystemExit("no instruction total in the callgrind output")
        return int(m.group(1))


def instructions_per_call(scenario: str, calls: int | None = None, *, reference: bool = False,
                          answer_file: str = "", body_file: str = "", stage: str = "") -> float:
    n = calls or CALLGRIND_CALLS[scenario]
    return _instructions(scenario, n, reference, answer_file, body_file, stage) / n


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _run_calls(argv[1], int(argv[2]), argv[3:4] == ["ref"], (argv[4:5] or [""])[0], (argv[5:6] or [""])[0],
                   (argv[6:7] or [""])[0])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=None,
                   help="comma-separated: o,a,b,c (default o,a,b,c; o,a,c with --instructions)")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--instructions", action="store_true", help="instructions per call under callgrind")
    p.add_argument("--reference", action="store_true", help="the bare Flask reference instead of the service")
    p.add_argument("--stage", action="append", default=[], metavar="MODULE:NAME",
                   help="with --instructions: count only inside this function (repeatable)")
    args = p.parse_args(argv)
    if args.stage and (not args.instructions or args.reference):
        p.error("--stage counts the service's instructions: use it with --instructions, without --reference")
    scenarios = (args.scenarios or ",".join(INSTRUCTION_SCENARIOS if args.instructions else SCENARIOS)).split(",")
    unknown = [s for s in scenarios if s not in (INSTRUCTION_SCENARIOS if args.instructions else SCENARIOS)]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}" + (" (instructions: not for (b), see --help)" if args.instructions else ""))
    who = "reference" if args.reference else "service"
    if args.instructions:
        why = callgrind_available()
        if why:
            print(f"instructions per call: skipped, {why}")
            return 0
        for s in scenarios:
            print(f"({s}) {who}: {instructions_per_call(s, args.calls, reference=args.reference) / 1e6:.2f} M instructions per call")
            for stage in args.stage:
                print(f"({s})   inside {stage}: {instructions_per_call(s, args.calls, stage=stage) / 1e6:.2f} M per call")
        return 0
    for s in scenarios:
        print(f"({s}) {who}: {cpu_ms(s, args.calls or DEFAULT_CALLS[s], reference=args.reference):.3f} ms CPU per call")
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


def measure_instructions(scenarios=INSTRUCTION_SCENARIOS, reference_files: dict[str, tuple[str, str]] | None = None,
                         ) -> tuple[dict[str, float], dict[str, float]]:
    """Millions of instructions per call: the service's by scenario, and the reference's for the
    scenarios in ``reference_files`` (scenario -> (file with the answer the reference sends, file
    with the request body))."""
    from concurrent.futures import ThreadPoolExecutor

    # each count is its own valgrind process, mostly start-up (building the app ≈ 50× slower under
    # valgrind): two at a time; the counts do not depend on what else runs
    with ThreadPoolExecutor(max_workers=2) as pool:
        svc = {s: pool.submit(instructions_per_call, s) for s in scenarios}
        refs = {s: pool.submit(instructions_per_call, s, reference=True, answer_file=a, body_file=b)
                for s, (a, b) in (reference_files or {}).items() if s in scenarios}
        return ({s: f.result() / 1e6 for s, f in svc.items()}, {s: f.result() / 1e6 for s, f in refs.items()})


def instructions_text(now: dict[str, float], previous: dict[str, float], labels: dict[str, str],
                      ref: dict[str, float] | None = None) -> tuple[str, list[str]]:
    """(markdown block, regressions): each scenario's figure against the previous run's; a scenario
    with no previous figure is a first run, never a regression."""
    ref = ref or {}
    rows, regressions = [], []
    for s, m in now.items():
        before = previous.get(s)
        change = (m - before) / before if before else None
        verdict = "first run" if change is None else ("**regression**" if change > TOLERANCE else "ok")
        if change is not None and change > TOLERANCE:
            regressions.append(f"({s}) {m:.2f} M instructions per call, {change * 100:+.1f} % on the previous {before:.2f} M")
        r = ref.get(s)
        rows.append(f"| ({s}) {labels.get(s, LABELS.get(s, ''))} | {m:.2f} | {f'{before:.2f}' if before else '–'} | "
                    f"{f'{change * 100:+.1f} %' if change is not None else '–'} | {verdict} | "
                    f"{f'{r:.2f}' if r is not None else '–'} |")
    counts = ", ".join(f"{CALLGRIND_CALLS[s]} calls of ({s})" for s in now)
    block = "\n".join([
        f"Instructions per hook call, in-process (`benchmarks/cpu_per_call.py --instructions`: valgrind "
        f"callgrind, counted only inside the measured calls, {counts}, after a warm-up; the reference: "
        f"`reference_app.py` called the same way, `--reference`). A rise of more than {TOLERANCE * 100:.0f} % on the "
        f"previous run fails `make bench` (exit status 1) and leaves the previous figures here. (b) is not "
        f"counted: its FHIR queries run on pool threads that callgrind's toggle does not follow (see "
        f"`cpu_per_call.py`).",
        "",
        "| scenario | M instructions/call | previous | change | check | reference M/call |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
        *rows,
    ])
    return block, regressions


def instructions_block(previous: dict[str, float], labels: dict[str, str],
                       reference_files: dict[str, tuple[str, str]] | None = None,
                       ) -> tuple[str, list[str], dict[str, float], dict[str, float]]:
    """(markdown block, regressions, service figures, reference figures): callgrind instructions per
    call for (o), (a) and (c), each against the previous run's figure. A block saying why, no
    regressions and no figures when callgrind cannot run."""
    why = callgrind_available()
    if why:
        return f"Instructions per call: not measured, {why}.", [], {}, {}
    now, ref = measure_instructions(INSTRUCTION_SCENARIOS, reference_files)
    block, regressions = instructions_text(now, previous, labels, ref)
    return block, regressions, now, ref
