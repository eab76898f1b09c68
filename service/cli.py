"""``azathioprine-cds``: serve, check, report."""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import sys
from pathlib import Path

BANNER_DEV = """
************************************************************************
*  DEVELOPMENT MODE: Flask development server, NO JWT AUTHENTICATION.  *
*  Anyone who can reach this port can call the service. Not for use   *
*  with real patient data.                                             *
************************************************************************
"""

SANDBOX_HELP = """
CDS Hooks discovery: {base}/cds-services

Try it from the public CDS Hooks sandbox (https://sandbox.cds-hooks.org):
  Settings (gear) -> Add CDS Services -> {base}/cds-services
  (the sandbox runs in your browser, so a service on 127.0.0.1 is reachable from it)
  then open "Rx Sign" / "Rx View" and order azathioprine.
With a FHIR server holding one synthetic patient per problem, and a sandbox link for each: make demo
Offline: azathioprine-cds check examples/tpmt-poor-metabolizer.json
"""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def _serve(args: argparse.Namespace) -> int:
    from .config import Config

    overrides = {}
    if args.trust:
        overrides["trust"] = args.trust
    if args.dev or args.insecure_no_auth:
        overrides["auth_required"] = False
    if args.dev:
        overrides["dev"] = True
        overrides["fhir_allow_loopback"] = True  # local trials: a FHIR server on this machine
    try:
        cfg = Config.from_env().with_overrides(overrides)
    except ValueError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 2
    if not cfg.auth_required and not is_loopback(args.host):  # however it was switched off
        print(f"refusing to serve without JWT authentication on non-loopback address {args.host!r}: "
              "bind to 127.0.0.1", file=sys.stderr)
        return 2
    if cfg.auth_required and not cfg.trust:
        print("no trust file: pass --trust FILE or set AZA_CDS_TRUST (see examples/trust-sandbox.json), "
              "or use --dev for local trials", file=sys.stderr)
        return 2
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    if cfg.auth_required and not cfg.public_base_url:
        # a token's aud is compared with the public base URL, never with the Host header a caller sends
        if args.host in ("0.0.0.0", "::", ""):
            print("set AZA_CDS_PUBLIC_BASE_URL to the URL EHRs call (e.g. https://cds.example.org): with a "
                  "wildcard listen address the JWT audience cannot be derived", file=sys.stderr)
            return 2
        hosts = [f"[{args.host}]" if ":" in args.host else args.host]
        if is_loopback(args.host):  # this machine, however a local client names it
            hosts = list(dict.fromkeys(hosts + ["127.0.0.1", "localhost"]))
        cfg = cfg.with_overrides({"public_base_url": tuple(f"http://{h}:{args.port}" for h in hosts)})
    if args.dev:
        from . import create_app

        try:
            app = create_app(cfg)  # before the banner: a service that cannot start says so, and only that
        except _startup_errors() as exc:
            return _startup_failed(exc)
        print(BANNER_DEV, file=sys.stderr)
        print(SANDBOX_HELP.format(base=base), file=sys.stderr)
        return _run_dev(app, args.host, args.port)

    def ready() -> None:  # the app is built (in this process, before gunicorn forks): now say how to reach it
        started.append(True)
        if not cfg.auth_required:
            print("WARNING: --insecure-no-auth: production server WITHOUT JWT authentication (loopback only)",
                  file=sys.stderr)
        print(SANDBOX_HELP.format(base=base), file=sys.stderr)

    from .wsgi import run_gunicorn

    started: list[bool] = []
    try:
        return run_gunicorn(cfg, host=args.host, port=args.port, workers=args.workers or cfg.workers,
                            threads=args.threads or cfg.threads, ready=ready)
    except _startup_errors() as exc:
        if started:
            raise
        return _startup_failed(exc)


def _startup_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    return (ValueError, RuntimeError, OSError, SQLAlchemyError)


def _startup_failed(exc: BaseException) -> int:
    """One line on stderr, no traceback, exit 2: what could not be read or reached, and where."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        message = (f"cannot start: the feedback store does not answer ({type(exc).__name__}); it is needed at "
                   "start-up to migrate its schema and for the JWT replay table: check AZA_CDS_DATABASE_URL "
                   "and that the database is up, then start again")
    else:
        message = f"cannot start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    print(message, file=sys.stderr)
    return 2


def _run_dev(app, host: str, port: int) -> int:
    """The Flask development server, stopped by SIGTERM as by Ctrl-C: queued card records are
    written before the process exits (``FeedbackStore.close``), so feedback on them is attributed."""
    import signal

    def _stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True,
                request_handler=_quiet_request_handler())
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        store = app.extensions.get("aza_feedback_store")
        if store is not None:
            store.close()
    return 0


def _quiet_request_handler():
    """Werkzeug's request handler without its own per-request lines: the app writes one JSON access
    line per request (route, never the raw path or query string), and Werkzeug's colourised
    lines echo the raw request line, a ``?token=...`` included. Its error messages (a malformed
    request line, a dropped connection) quote caller text too: logged as one JSON line without it."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietRequestHandler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args) -> None:
            if type == "error":
                logging.getLogger("aza_cds.dev_server").warning(
                    "development server: request could not be handled", extra={"event": "dev-server-error"})

    return QuietRequestHandler


def _check(args: argparse.Namespace) -> int:
    """Run one request file through the service in-process, offline, and print the cards."""
    from . import create_app

    try:
        body = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    server = None
    if isinstance(body, dict):
        # offline: never contact the FHIR server a fixture names (its references are still compared with it)
        server = body.pop("fhirServer", None)
        body.pop("fhirAuthorization", None)
    hook = body.get("hook") if isinstance(body, dict) else None
    overrides = {"auth_required": False, "database_url": "sqlite:///:memory:"}  # offline: nothing is stored
    if args.today:
        overrides["evaluation_date"] = args.today
    try:
        app = create_app(overrides)
    except _startup_errors() as exc:  # a knowledge file that cannot be used: one line, no traceback
        return _startup_failed(exc)
    from hooks import SERVICES

    if isinstance(server, str) and server.strip():
        app.extensions["aza_hook_env"].offline_fhir_server = server.strip()  # round-11 H2

    service = args.service or next((s.id for s in SERVICES.values() if s.hook == hook), None)
    if service is None:
        print(f"no service answers hook {hook!r}", file=sys.stderr)
        return 2
    logger = logging.getLogger("aza_cds")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the cards are the output here
    try:
        resp = app.test_client().post(f"/cds-services/{service}", json=body)
    finally:
        logger.setLevel(level)  # in-process callers (tests) keep their logs
    result = resp.get_json(silent=True) or {}
    if args.json or resp.status_code != 200:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0 if resp.status_code == 200 else 1
    print(render_text(result["cards"]))
    return 0


def render_text(cards: list[dict]) -> str:
    if not cards:
        return "No cards: nothing to say about these orders."
    out = []
    marks = {"critical": "[CRITICAL]", "warning": "[WARNING] ", "info": "[INFO]    "}
    for c in cards:
        out.append(f"{marks[c['indicator']]} {c['summary']}")
        out.append(f"    rule: {c['source'].get('topic', {}).get('code', '-')}   source: {c['source']['label']}")
        for s in c.get("suggestions", []):
            out.append(f"    suggestion: {s['label']}")
        out.append("")
    return "\n".join(out).rstrip()


def _report(args: argparse.Namespace) -> int:
    from .report import main as report_main

    return report_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="azathioprine-cds", description="CDS Hooks service for thiopurine prescribing safety")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: $AZA_CDS_WORKERS, 2)")
    s.add_argument("--threads", type=int, default=None, help="threads per worker (default: $AZA_CDS_THREADS, 4)")
    s.add_argument("--trust", help="trusted issuers JSON file (default: $AZA_CDS_TRUST)")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--dev", action="store_true", help="Flask development server, no JWT (local trials only)")
    mode.add_argument("--insecure-no-auth", action="store_true",
                      help="production server without JWT checks; loopback addresses only")
    s.set_defaults(func=_serve)

    c = sub.add_parser("check", help="evaluate one CDS Hooks request file offline and print the cards")
    c.add_argument("file")
    c.add_argument("--service", help="service id (default: the one for the request's hook)")
    c.add_argument("--json", action="store_true", help="print the raw CDS Hooks response")
    c.add_argument("--today", help="evaluate as of this date (YYYY-MM-DD) instead of today")
    c.set_defaults(func=_check)

    r = sub.add_parser("report", help="feedback analytics")
    r.add_argument("--since", help="only feedback on or after this date (YYYY-MM-DD)")
    r.add_argument("--format", choices=["table", "csv", "html"], default="table")
    r.add_argument("--output", "-o", help="write to this file instead of standard output")
    r.add_argument("--database-url", help="feedback store to read (default: $AZA_CDS_DATABASE_URL, "
                                          "else the SQLite file in $AZA_CDS_DATA_DIR)")
    r.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
