"""Instructions per scenario (b) call (no prefetch, every query answered by ``fhir_stub.py`` with
no delay), counted over all threads of the process: the FHIR queries run on the client's thread
pool, which ``cpu_per_call.py --instructions`` (collection toggled in the calling thread) does not
see. The whole process runs under callgrind twice, with ``--few`` and with ``--many`` calls after
the same warm-up; the difference of the totals over the difference of the calls is the cost of
one call (start-up, app build and warm-up cancel out). The stub is another process, not counted.

    .venv/bin/python benchmarks/instructions_b.py [--few 2] [--many 12] [--tree DIR]

``--tree``: measure the code in DIR (e.g. ``git archive main | tar -x -C DIR``) with this
tree's benchmark harness, for a before/after on a loaded machine.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def _child(tree: str, calls: int) -> None:
    sys.path[:0] = [tree, str(BENCH)]
    import cpu_per_call

    with tempfile.TemporaryDirectory(prefix="aza-ib-") as tmp:
        h = cpu_per_call.Harness("b", tmp)
        try:
            for _ in range(5):
                h.call()
            for _ in range(calls):
                h.call()
        finally:
            h.close()


def _total(tree: str, calls: int) -> int:
    with tempfile.TemporaryDirectory(prefix="aza-ib-out-") as out:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", sys.executable,
               str(Path(__file__).resolve()), "--child", tree, str(calls)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": "0"}, cwd=tree)
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed: {done.stderr[-800:]}")
        total = 0
        for f in Path(out).glob("cg.out*"):
            m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read_text(errors="replace"), re.M)
            total += int(m.group(1)) if m else 0
        return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--few", type=int, default=2)
    p.add_argument("--many", type=int, default=12)
    p.add_argument("--tree", default=str(BENCH.parent))
    args = p.parse_args(argv)
    tree = str(Path(args.tree).resolve())
    few, many = _total(tree, args.few), _total(tree, args.many)
    print(f"(b) {(many - few) / (args.many - args.few) / 1e6:.2f} M instructions per call, all threads "
          f"({tree})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
