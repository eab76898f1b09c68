"""CPU per FHIR query, side by side in one process, interleaved: the FHIR client as it is against
the same GETs made with urllib3's connection pool directly and with ``http.client`` directly.

The FHIR server is ``fhir_stub.py`` with no delay, answering the realistic patient's 10 queries
(the ones a scenario (b) call makes). Each variant makes the 10 queries of one call, one after the
other in this thread (the pure per-query cost, no thread hand-offs), reads the body and parses it
with orjson; rounds alternate between the variants so that load from elsewhere hits all alike.

- ``client``: ``FhirClient.search`` (requests, the egress guard, the deadline, ``read_limited``);
- ``client+pool``: the same, each query submitted to the client's thread pool and waited for
  (what ``hooks.gather`` does, one query at a time);
- ``urllib3``: ``HTTPConnectionPool.urlopen`` with the URL already encoded, body read whole,
  no guard, no deadline bookkeeping;
- ``http.client``: one keep-alive ``HTTPConnection``, request/getresponse/read.

The last two are lower bounds: they do none of what the guarantees need (address check at
connect time, deadline over DNS/connect/headers/body, byte caps, decompression caps).

    .venv/bin/python benchmarks/fhir_query_ab.py [--rounds 10] [--calls 20]
"""
from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import orjson  # noqa: E402
import urllib3  # noqa: E402

import patient  # noqa: E402
from cpu_per_call import _start_stub  # noqa: E402


def _queries() -> list[str]:
    from hooks.prefetch import render
    from service import create_app

    app = create_app({"auth_required": False})
    import json
    templates = json.loads(app.test_client().get("/cds-services").data)["services"][0]["prefetch"]
    return [str(render(t, {"patientId": patient.PID})) for t in templates.values()]


def _old_client(ref: str, tmp: Path):
    """``outbound.fhir_client`` (and its ``netguard``) as of ``ref``, imported as package ``hooks_ref``."""
    import importlib
    pkg = tmp / "hooks_ref"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("fhir_client.py", "netguard.py"):
        found = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:outbound/{name}"], capture_output=True, text=True)
        if found.returncode != 0:  # before the move to outbound/
            found = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:hooks/{name}"], capture_output=True,
                                   text=True, check=True)
        text = found.stdout
        (pkg / name).write_text(text)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("hooks_ref.fhir_client")


def _instructions(args) -> int:
    import os
    import re
    import threading
    out: dict[str, float] = {}

    def one(variant: str) -> None:
        with tempfile.TemporaryDirectory(prefix="aza-qi-") as tmp:
            cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
                   f"--callgrind-out-file={tmp}/cg.out", sys.executable, str(Path(__file__).resolve()),
                   "--only", variant, "--calls", str(args.calls), "--ref", args.ref]
            subprocess.run(cmd, capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            m = re.search(r"^(?:summary|totals):\s+(\d+)", Path(tmp, "cg.out").read_text(), re.M)
            out[variant] = int(m[1]) / (args.calls * 11) if m else float("nan")

    threads = [threading.Thread(target=one, args=(v,)) for v in ("client", f"client@{args.ref}")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"instructions per FHIR query (callgrind, {args.calls} calls of 11 queries, in the calling thread):")
    for v, n in out.items():
        print(f"  {v:12s} {n / 1e3:.0f} k")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=10, help="calls (of 11 queries) per variant per round")
    p.add_argument("--ref", default="main", help="git ref whose FHIR client runs as 'client@REF' (empty: none)")
    p.add_argument("--only", default=None, help="run this variant only (e.g. under callgrind, see --instructions)")
    p.add_argument("--instructions", action="store_true",
                   help="instructions per query of 'client' and 'client@REF' (each in its own callgrind run, "
                        "counted only inside the measured queries: functools.reduce toggles collection)")
    args = p.parse_args(argv)
    if args.instructions:
        return _instructions(args)
    import logging
    import os
    os.environ["AZA_CDS_FHIR_ALLOW_LOOPBACK"] = "1"
    from outbound.fhir_client import Deadline, FhirClient
    from outbound.netguard import EgressPolicy

    with tempfile.TemporaryDirectory(prefix="aza-q-") as tmp:
        from service import create_app
        app = create_app({"auth_required": False})
        import json
        templates = json.loads(app.test_client().get("/cds-services").data)["services"][0]["prefetch"]
        logging.getLogger("aza_cds").setLevel(logging.WARNING)
        proc, base = _start_stub(Path(tmp), patient.realistic(), templates)
        try:
            queries = _queries()
            client = FhirClient()
            policy = EgressPolicy(allow_loopback=True)
            parts = urlsplit(base)
            from outbound.fhir_client import join_url
            from requests.models import PreparedRequest
            encoded = []
            for q in queries:
                pr = PreparedRequest()
                pr.prepare_url(join_url(base, q), None)
                encoded.append(pr.path_url)
            pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=4, retries=False)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            headers = {"Accept": "application/fhir+json", "Authorization": "Bearer bench-token"}

            def v_client():
                d = Deadline(5, policy=policy)
                for q in queries:
                    client.search(base, q, "bench-token", d)

            def v_client_pool():
                d = Deadline(5, policy=policy)
                for q in queries:
                    client.pool.submit(client.search, base, q, "bench-token", d).result()

            def v_urllib3():
                for u in encoded:
                    r = pool.urlopen("GET", u, headers=headers, preload_content=True, redirect=False,
                                     assert_same_host=False, timeout=5.0)
                    orjson.loads(r.data)

            def v_http_client():
                for u in encoded:
                    conn.request("GET", u, headers=headers)
                    orjson.loads(conn.getresponse().read())

            variants = {"client": v_client, "client+pool": v_client_pool, "urllib3": v_urllib3,
                        "http.client": v_http_client}
            if args.ref:
                old = _old_client(args.ref, Path(tmp))

                def v_old():
                    d = old.Deadline(5, policy=policy)
                    for q in queries:
                        old_client.search(base, q, "bench-token", d)

                old_client = old.FhirClient()
                variants[f"client@{args.ref}"] = v_old
            if args.only:
                import functools
                f = variants[args.only]
                for _ in range(3):
                    f()
                functools.reduce(lambda n, _: f() or n + 1, range(args.calls), 0)
                return 0
            for f in variants.values():
                for _ in range(5):
                    f()
            spent = {k: 0.0 for k in variants}
            for _ in range(args.rounds):
                for name, f in variants.items():
                    t = time.process_time()
                    for _ in range(args.calls):
                        f()
                    spent[name] += time.process_time() - t
            n = args.rounds * args.calls * len(queries)
            ref = spent[f"client@{args.ref}" if args.ref else "client"] / n * 1000
            print(f"CPU ms per FHIR query ({len(queries)} queries per call, {n} queries per variant, "
                  f"client and stub in separate processes; stub CPU not counted):")
            for name, s in sorted(spent.items(), key=lambda kv: "@" not in kv[0]):
                ms = s / n * 1000
                print(f"  {name:12s} {ms:.3f} ms  ({(ms - ref) / ref * 100:+.0f} % on the first line)")
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
