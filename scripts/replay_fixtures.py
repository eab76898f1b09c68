#!/usr/bin/env python3
"""Replay CDS Hooks request fixtures against a running CDS Service and check
the responses against the structural rules of CDS Hooks 2.0 (HL7 spec text,
sections "CDS Service Response", "Card Attributes", "Suggestion", "Action",
"Link", "Coding").  Standard library only.

Copied (but for this docstring and one line typed for mypy) from the project's shared material
(shared/scripts/replay_fixtures.py, written for this project, stdlib only);
its fixtures are in tests/fixtures/public/ (README.md there names each file's
source and licence). tests/test_cli.py runs it against `serve --dev`.

Usage:
    python3 scripts/replay_fixtures.py --base http://127.0.0.1:5000 \
        --fixtures tests/fixtures/public [--bearer JWT] [--only-hook order-sign] \
        [--fhir-server http://127.0.0.1:8090/fhir]

What it does:
  1. GET {base}/cds-services and checks the discovery document.
  2. For every *.json fixture that looks like a hook request (has "hook" and
     "context"), POSTs it to every discovered service whose `hook` matches.
     A missing hookInstance is filled in.  The fixtures' `fhirServer` URLs name
     hosts that are not ours (some public, one localhost:8080), so each is
     rewritten, keeping its path, to a loopback port where nothing listens
     (or to --fhir-server): the replay never makes the service reach off this
     machine.  Expected status: 200, or 412 when the service cannot get the
     data it declared: some of its prefetch keys (or, declaring none, all its
     data) are not in the fixture's prefetch and there is no FHIR server to
     fetch them from (none, or the unreachable one) (spec: service MAY answer
     412 Precondition Failed when it cannot get required data).
  3. For every fixture that has a top-level "feedback" array, POSTs it to
     {base}/cds-services/{id}/feedback for each discovered service and expects
     200 (services that do not implement feedback will fail this: informative).
  4. Prints one line per check and a closing "N passed, N failed" line.

This is a smoke/conformance aid, not a full validator: for normative
validation use the FHIR validator with the HL7 Tools IG logical models
(CDSHooksRequest / CDSHooksResponse / CDSHooksServices / CDSHooksFeedback).
"""
import argparse
import json
import pathlib
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

INDICATORS = {"info", "warning", "critical"}
SELECTION = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}


def http(method, url, body=None, bearer=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer:
        req.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, dict(r.headers), raw
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def dead_loopback_base():
    """http://127.0.0.1:PORT on a port that was free a moment ago: nothing answers there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def check_coding(c, where, errs, need_display=False):
    if not isinstance(c, dict):
        errs.append(f"{where}: Coding is not an object")
        return
    for k in ("code", "system"):
        if not isinstance(c.get(k), str) or not c.get(k):
            errs.append(f"{where}: Coding.{k} missing")
    if need_display and not c.get("display"):
        errs.append(f"{where}: overrideReason Coding.display is required")


def check_action(a, where, errs):
    if not isinstance(a, dict):
        errs.append(f"{where}: action is not an object")
        return
    t = a.get("type")
    if t not in ACTION_TYPES:
        errs.append(f"{where}: action.type {t!r} not in {sorted(ACTION_TYPES)}")
    if not isinstance(a.get("description"), str):
        errs.append(f"{where}: action.description missing")
    if t in ("create", "update") and not isinstance(a.get("resource"), dict):
        errs.append(f"{where}: action.resource required for {t}")
    if t == "delete" and not a.get("resourceId"):
        errs.append(f"{where}: action.resourceId should be given for delete")


def check_null_empty(obj, where, errs):
    """Spec: JSON elements SHALL NOT be null, and SHALL NOT be empty (except cards: [])."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if v is None:
                errs.append(f"{where}.{k}: null value")
            elif v in ("", [], {}) and k != "cards":
                errs.append(f"{where}.{k}: empty value")
            else:
                check_null_empty(v, f"{where}.{k}", errs)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_null_empty(v, f"{where}[{i}]", errs)


def check_response(resp):
    errs = []
    if not isinstance(resp, dict):
        return ["response is not a JSON object"]
    cards = resp.get("cards")
    if not isinstance(cards, list):
        errs.append("cards missing or not an array")
        cards = []
    for i, c in enumerate(cards):
        w = f"cards[{i}]"
        s = c.get("summary")
        if not isinstance(s, str) or not s:
            errs.append(f"{w}: summary missing")
        elif len(s) >= 140:
            errs.append(f"{w}: summary has {len(s)} chars (must be <140)")
        if c.get("indicator") not in INDICATORS:
            errs.append(f"{w}: indicator {c.get('indicator')!r} invalid")
        src = c.get("source")
        if not isinstance(src, dict) or not src.get("label"):
            errs.append(f"{w}: source.label missing")
        elif "topic" in src:
            check_coding(src["topic"], f"{w}.source.topic", errs)
        sugg = c.get("suggestions")
        if sugg is not None:
            if c.get("selectionBehavior") not in SELECTION:
                errs.append(f"{w}: suggestions present but selectionBehavior missing/invalid")
            for j, sg in enumerate(sugg):
                if not sg.get("label"):
                    errs.append(f"{w}.suggestions[{j}]: label missing")
                for k, a in enumerate(sg.get("actions") or []):
                    check_action(a, f"{w}.suggestions[{j}].actions[{k}]", errs)
        for j, r in enumerate(c.get("overrideReasons") or []):
            check_coding(r, f"{w}.overrideReasons[{j}]", errs, need_display=True)
        for j, ln in enumerate(c.get("links") or []):
            lw = f"{w}.links[{j}]"
            if not ln.get("label") or not ln.get("url"):
                errs.append(f"{lw}: label/url missing")
            if ln.get("type") not in LINK_TYPES:
                errs.append(f"{lw}: type {ln.get('type')!r} invalid")
            if "appContext" in ln and ln.get("type") != "smart":
                errs.append(f"{lw}: appContext only valid for smart links")
        if (c.get("suggestions") or c.get("overrideReasons")) and not c.get("uuid"):
            errs.append(f"{w}: no uuid, so feedback cannot reference this card")
    for k, a in enumerate(resp.get("systemActions") or []):
        check_action(a, f"systemActions[{k}]", errs)
    check_null_empty(resp, "response", errs)
    return errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--bearer")
    ap.add_argument("--only-hook")
    ap.add_argument("--fhir-server", help="FHIR base URL to put in every fixture's fhirServer "
                    "(default: an unreachable loopback port, keeping each fixture's path)")
    args = ap.parse_args()
    base = args.base.rstrip("/")
    dead = dead_loopback_base()
    passed = failed = 0

    def report(ok, msg):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
        print(("PASS " if ok else "FAIL ") + msg)

    st, hdr, raw = http("GET", base + "/cds-services", bearer=args.bearer)
    try:
        disc = json.loads(raw)
    except ValueError:
        disc = None
    ok = st == 200 and isinstance(disc, dict) and isinstance(disc.get("services"), list)
    report(ok, f"discovery GET /cds-services -> {st}")
    services = (disc or {}).get("services") or []
    for s in services:
        miss = [k for k in ("hook", "description", "id") if not s.get(k)]
        report(not miss, f"discovery service {s.get('id')!r} required fields {'ok' if not miss else 'missing ' + str(miss)}")

    for path in sorted(pathlib.Path(args.fixtures).rglob("*.json")):
        try:
            fx = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(fx, dict) and "hook" in fx and "context" in fx:
            if args.only_hook and fx["hook"] != args.only_hook:
                continue
            fx.setdefault("hookInstance", str(uuid.uuid4()))
            if fx.get("fhirServer"):
                fx["fhirServer"] = args.fhir_server or dead + urllib.parse.urlsplit(str(fx["fhirServer"])).path
            no_server = not fx.get("fhirServer") or not args.fhir_server
            prefetched = fx["prefetch"] if isinstance(fx.get("prefetch"), dict) else {}
            targets = [s for s in services if s.get("hook") == fx["hook"]]
            for s in targets:
                url = f"{base}/cds-services/{s['id']}"
                st, hdr, raw = http("POST", url, fx, bearer=args.bearer)
                declared = s.get("prefetch") if isinstance(s.get("prefetch"), dict) else {}
                lacking = not declared or any(prefetched.get(k) is None for k in declared)
                if st == 412 and lacking and no_server:
                    report(True, f"{path.name} -> {s['id']}: 412 (prefetch lacks the service's keys, "
                                 f"no reachable fhirServer)")
                    continue
                if st != 200:
                    report(False, f"{path.name} -> {s['id']}: HTTP {st}")
                    continue
                try:
                    errs = check_response(json.loads(raw))
                except ValueError:
                    errs = ["body is not JSON"]
                report(not errs, f"{path.name} -> {s['id']}: " + ("valid" if not errs else "; ".join(errs[:5])))
        elif isinstance(fx, dict) and isinstance(fx.get("feedback"), list):
            for s in services:
                st, _, _ = http("POST", f"{base}/cds-services/{s['id']}/feedback", fx, bearer=args.bearer)
                report(st == 200, f"{path.name} -> {s['id']}/feedback: HTTP {st}")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
