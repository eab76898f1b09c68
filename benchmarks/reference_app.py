"""The reference: a bare Flask app that answers every CDS service call with a fixed card.

It does what any Flask endpoint must do for the same request (route it, read
the whole body, send a JSON answer of the same shape and size as the
service's) and nothing else: no JSON parsing, no validation, no rules. Served
by the same gunicorn settings as the service (``service.wsgi.gunicorn_settings``),
so the ratio service / reference is the cost of our own work.

    python benchmarks/reference_app.py --host 127.0.0.1 --port 8081 --workers 2 --threads 4 --card card.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CARD = {"cards": [{"uuid": "00000000-0000-4000-8000-000000000000", "summary": "Reference card", "indicator": "info",
                           "source": {"label": "reference"}}]}


def create_reference_app(answer: bytes):
    from flask import Flask, Response, request

    app = Flask("reference")

    @app.get("/cds-services")
    def discovery() -> Response:
        return Response(b'{"services":[]}', mimetype="application/json")

    @app.post("/cds-services/<service_id>")
    def call(service_id: str) -> Response:
        request.get_data(cache=False)  # the body is received in full, as the service receives it
        return Response(answer, mimetype="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--card", help="JSON file with the response body to send (default: a small fixed card)")
    args = p.parse_args(argv)
    answer = Path(args.card).read_bytes() if args.card else json.dumps(DEFAULT_CARD).encode()

    from service.wsgi import serve_wsgi

    return serve_wsgi(lambda: create_reference_app(answer), host=args.host, port=args.port,
                      workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
