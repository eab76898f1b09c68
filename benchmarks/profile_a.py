"""Profile of scenario (a) with pyinstrument: where one hook call's time goes.

In-process (the WSGI app called through Flask's test client, no HTTP server,
no load tool), so that only our own code and Flask are on the profile. The
same request as scenario (a) of ``run.py``; the app is built as ``serve``
builds it (auth off, feedback store in a temporary directory).

    .venv/bin/python benchmarks/profile_a.py [--requests 500] [--flat] [--scenario a|o]

``--scenario o``: the other-order call (``patient.other_order``: the same prefetch, a draft no
rule concerns), to see what the service still does for a call that answers no card.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

import patient  # noqa: E402


def build(data_dir: str):
    import os

    os.environ["AZA_CDS_DATA_DIR"] = data_dir
    from service import create_app

    app = create_app({"auth_required": False})
    logging.getLogger("aza_cds").setLevel(logging.WARNING)  # one JSON line per call is not what we profile
    return app


def profile(requests: int = 500, flat: bool = False, data: dict | None = None, threshold: float = 0.015) -> tuple[str, float]:
    """(pyinstrument text, mean ms per call without the profiler)."""
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer

    with tempfile.TemporaryDirectory(prefix="aza-profile-") as tmp:
        app = build(tmp)
        client = app.test_client()
        keys = list(json.loads(client.get("/cds-services").data)["services"][0]["prefetch"])
        body = json.dumps(patient.hook_request(data or patient.realistic(), keys=keys)).encode()
        url = "/cds-services/" + patient.SERVICE

        def call():
            resp = client.post(url, data=body, content_type="application/json")
            assert resp.status_code == 200, resp.data[:500]

        for _ in range(50):
            call()
        started = time.perf_counter()
        for _ in range(requests):
            call()
        mean_ms = (time.perf_counter() - started) / requests * 1000
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(requests):
            call()
        profiler.stop()
        store = app.extensions.get("aza_feedback_store")
        if store is not None and hasattr(store, "close"):
            store.close()
    session = profiler.last_session
    assert session is not None
    rendered = ConsoleRenderer(time="percent_of_total", processor_options={"filter_threshold": threshold}).render(session)
    text = _from_dispatch(rendered)
    if flat:
        text += "\n\n" + ConsoleRenderer(flat=True, time="percent_of_total",
                                          processor_options={"filter_threshold": threshold}).render(session)
    return text, mean_ms


def _from_dispatch(rendered: str) -> str:
    """The call tree from Flask's dispatch of the request down (the test client above it is not ours)."""
    lines = rendered.splitlines()
    start = next((i for i, line in enumerate(lines) if "dispatch_request" in line), 0)
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = [line[indent:] for line in lines[start:] if line.strip() and not line.startswith("To view")]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--flat", action="store_true", help="also print the functions by self time")
    p.add_argument("--scenario", choices=["a", "o"], default="a")
    args = p.parse_args(argv)
    data = patient.other_order(patient.realistic()) if args.scenario == "o" else patient.realistic()
    text, mean_ms = profile(args.requests, args.flat, data=data)
    print(f"scenario ({args.scenario}), in-process: {mean_ms:.2f} ms per hook call (without the profiler)\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
