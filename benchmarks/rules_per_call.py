"""Instructions (or CPU) of ``rules.evaluate`` alone, on the facts of scenario (a) and (c).

The facts are captured from one real hook call (the app built as ``cpu_per_call.Harness`` builds it),
then ``rules.evaluate`` runs on them alone: the rules' own share of a call, without decoding, mapping
or rendering. ``--instructions`` counts under callgrind as ``cpu_per_call.py --instructions`` does
(collection only inside ``functools.reduce``); ``--guideline dpwg`` evaluates with the DPWG profile.

    .venv/bin/python benchmarks/rules_per_call.py [--instructions] [--scenarios a,c] [--guideline dpwg]
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

import cpu_per_call  # noqa: E402


def captured_facts(scenario: str):
    """The ClinicalFacts one hook call of ``scenario`` hands to ``rules.evaluate``."""
    import rules

    seen: list = []
    original = rules.evaluate

    def spy(facts, *args, **kwargs):
        seen.append(facts)
        return original(facts, *args, **kwargs)

    with tempfile.TemporaryDirectory(prefix="aza-rules-") as tmp:
        h = cpu_per_call.Harness(scenario, tmp)
        rules.evaluate = spy
        try:
            h.call()
        finally:
            rules.evaluate = original
            h.close()
    return seen[-1]


def _child(scenario: str, calls: int, guideline: str) -> None:
    import rules

    facts = captured_facts(scenario)
    options = rules.RuleOptions(guideline=guideline)
    for _ in range(3):
        rules.evaluate(facts, options)
    functools.reduce(lambda n, _: n + len(rules.evaluate(facts, options)), range(calls), 0)


def instructions(scenario: str, calls: int, guideline: str) -> float:
    with tempfile.TemporaryDirectory(prefix="aza-cg-out-") as out:
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
               f"--callgrind-out-file={out}/cg.out", sys.executable, str(Path(__file__).resolve()),
               "--child", scenario, str(calls), guideline]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed: {done.stderr[-800:]}")
        m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(out, "cg.out").read_text(), re.M)
        if not m:
            raise SystemExit("no instruction total in the callgrind output")
        return int(m.group(1)) / calls


def cpu_ms(scenario: str, calls: int, guideline: str) -> float:
    import rules

    facts = captured_facts(scenario)
    options = rules.RuleOptions(guideline=guideline)
    for _ in range(20):
        rules.evaluate(facts, options)
    started = time.process_time()
    for _ in range(calls):
        rules.evaluate(facts, options)
    return (time.process_time() - started) / calls * 1000


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]), argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="a,c")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--guideline", default="cpic")
    p.add_argument("--instructions", action="store_true")
    args = p.parse_args(argv)
    for s in args.scenarios.split(","):
        if args.instructions:
            n = args.calls or 20
            print(f"({s}) rules.evaluate: {instructions(s, n, args.guideline) / 1e6:.3f} M instructions per call")
        else:
            print(f"({s}) rules.evaluate: {cpu_ms(s, args.calls or 500, args.guideline):.3f} ms CPU per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
