"""A/B of an older commit against the working tree, in one process, calls interleaved.

The older tree (``git archive REF``) is imported first and its app built; then its modules are
dropped from ``sys.modules`` (its functions keep their own globals, so its app keeps working)
and the working tree is imported and its app built. Rounds then alternate: N calls to the old
app, N to the new, so that load from elsewhere on the machine hits both alike. CPU time per
call (``time.process_time``) per scenario; the heap is frozen (``gc.freeze``) once both apps
exist, as ``serve`` does before forking, so both sides run with the same collector state.

Scenarios (``cpu_per_call.py``): (o) the other order (a draft no rule concerns, full prefetch),
(a) realistic thiopurine call, (b) no prefetch, (c) 515 Observations. ``PACKAGES`` are the
project's top-level packages (a test checks it names every one); a package the older commit
does not have is left out of its tree, and every project module the older app imported must
come from the older tree (else the A/B would compare the new code with itself in part).

    .venv/bin/python benchmarks/ab_old_new.py [--ref main] [--scenarios o,a,b,c] [--rounds 8]
"""
from __future__ import annotations

import argparse
import gc
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PACKAGES = ("service", "outbound", "hooks", "fhir_mappers", "rules")
CALLS = {"o": 40, "a": 40, "b": 15, "c": 6}


def _drop_project_modules() -> None:
    """Forget the project's modules (and the Prometheus metrics they registered at import, which a
    second import would register again); objects already built keep working."""
    try:
        from prometheus_client import REGISTRY

        for collector in list(REGISTRY._collector_to_names):
            if any(n.startswith("aza_cds") for n in REGISTRY._collector_to_names[collector]):
                REGISTRY.unregister(collector)
    except ImportError:
        pass
    for name in list(sys.modules):
        if name.split(".", 1)[0] in PACKAGES:
            del sys.modules[name]


def _comparable(answer: bytes):
    """The answer without what differs from call to call (card and suggestion uuids)."""
    import json

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "uuid"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(json.loads(answer))


def _harness(tree: Path, scenario: str, tmp: str):
    _drop_project_modules()
    sys.path[:] = [str(tree), str(BENCH)] + [p for p in sys.path if p not in (str(tree), str(BENCH), str(ROOT))]
    cpu_per_call = sys.modules["cpu_per_call"]  # imported by main() before sys.path is changed here

    h = cpu_per_call.Harness(scenario, tmp)
    h.call()
    strays = foreign_modules(tree)
    if strays:
        raise SystemExit(f"the app of {tree} imported project modules from elsewhere: " + ", ".join(strays[:5]))
    return h


def foreign_modules(tree: Path) -> list[str]:
    """The project's modules now imported that do not come from ``tree`` (name: file)."""
    out = []
    for name, module in list(sys.modules.items()):
        if name.split(".", 1)[0] not in PACKAGES:
            continue
        file = getattr(module, "__file__", None) or ""
        paths = list(getattr(module, "__path__", []) or [])
        where = file or (paths[0] if paths else "")
        if where and not str(Path(where).resolve()).startswith(str(tree.resolve())):
            out.append(f"{name}: {where}")
    return out


def packages_at(ref: str) -> list[str]:
    """The PACKAGES that exist at ``ref`` (an older commit may predate one, e.g. ``outbound``)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", ref], capture_output=True, text=True,
                            check=True).stdout.split()
    return [p for p in PACKAGES if p in listed]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", default="main", help="the older commit (default: main)")
    p.add_argument("--scenarios", default="o,a,b,c")
    p.add_argument("--rounds", type=int, default=8)
    args = p.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    import cpu_per_call  # noqa: F401 - it puts ROOT on sys.path when first imported: before _harness
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, *packages_at(args.ref)], capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryDirectory(prefix="aza-ab-") as tmp:
        old_tree = Path(tmp, "old")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(old_tree, filter="data")
        for scenario in args.scenarios.split(","):
            old = _harness(old_tree, scenario, tempfile.mkdtemp(dir=tmp))
            new = _harness(ROOT, scenario, tempfile.mkdtemp(dir=tmp))
            same = _comparable(old.call()) == _comparable(new.call())
            gc.collect()
            gc.freeze()
            cpu = {"old": 0.0, "new": 0.0}
            n = CALLS[scenario]
            for _ in range(2):  # warm-up
                old.call()
                new.call()
            for _ in range(args.rounds):
                for name, h in (("old", old), ("new", new)):
                    started = time.process_time()
                    for _ in range(n):
                        h.call()
                    cpu[name] += time.process_time() - started
            o, w = (cpu[k] / (n * args.rounds) * 1000 for k in ("old", "new"))
            print(f"({scenario}) {args.ref}: {o:.2f} ms CPU per call; working tree: {w:.2f} ms ({(w - o) / o * 100:+.0f} %); "
                  f"answers {'identical' if same else 'DIFFERENT'} (card uuids aside)")
            old.close()
            new.close()
            gc.unfreeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
