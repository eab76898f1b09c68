"""``make demo``: the service and a FHIR server with one synthetic patient per problem, on loopback,
with a CDS Hooks sandbox link for each patient.

Starts, on 127.0.0.1 only:
1. the project's in-memory FHIR R4 test server (``tests/fhir_server``, Medplum) with CORS, so that
   the sandbox page in your browser can read it, loaded with the patients of ``examples/`` (each
   example's prefetch: Patient, medications, weight, TPMT/NUDT15 results, labs, conditions...),
   every id prefixed with the example's name and every date moved so that the examples' "today"
   (2026-11-23) is today;
2. the service in development mode (``serve --dev``: no JWT, loopback only), its feedback store
   and log in the data directory (``AZA_CDS_DATA_DIR``, else ``./data``), so that feedback given
   in the sandbox outlives the demo and ``azathioprine-cds report`` reads it afterwards.

The patients have names and readable conditions (``examples/people.py``); the FHIR server also
answers SMART App Launch (``--smart``), so each patient gets a link that launches the SMART app.
Then prints, per patient, a sandbox link (``serviceDiscoveryURL``, ``fhirServiceUrl``, ``patientId``),
what to click and the app link. Ctrl-C stops both and prints the ``report`` command.
``--port`` / ``--fhir-port`` choose the ports (0: free ones).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.people import history, storied  # noqa: E402
from service.config import default_data_dir  # noqa: E402
from tests.fhir_server.medplum import MedplumServer, MedplumServerError  # noqa: E402

SANDBOX = "https://sandbox.cds-hooks.org/"
EXAMPLES_DAY = date(2026, 11, 23)  # the day examples/generate.py wrote the examples for
READY = "Demo ready."  # printed after the last link (tests wait for it)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")


def example_files() -> list[Path]:
    return [p for p in sorted((ROOT / "examples").glob("*.json")) if not p.name.startswith("trust-")]


def notes() -> dict[str, str]:
    """One line per example, as examples/generate.py describes it."""
    try:
        from examples.generate import EXAMPLES
    except Exception:  # noqa: BLE001 - the descriptions are a nicety
        return {}
    return {name: note for name, (note, _) in EXAMPLES.items()}


def shift_dates(node: Any, days: int) -> Any:
    """Every FHIR date / dateTime moved by ``days`` (ages and "how long ago" stay as written)."""
    if isinstance(node, dict):
        return {k: shift_dates(v, days) for k, v in node.items()}
    if isinstance(node, list):
        return [shift_dates(v, days) for v in node]
    if isinstance(node, str) and (m := _DATE.match(node)):
        try:
            moved = date.fromisoformat(m.group(1)) + timedelta(days=days)
        except ValueError:
            return node
        return moved.isoformat() + (m.group(2) or "")
    return node


def patient_bundle(name: str, request: dict, days: int) -> tuple[str, dict]:
    """The example's prefetched resources as a transaction Bundle, ids prefixed with ``name``."""
    resources: list[dict] = []
    for value in (request.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry", []) if isinstance(e.get("resource"), dict)]
        elif isinstance(value, dict) and value.get("resourceType"):
            resources.append(value)
    patient_ref = next((f"Patient/{r['id']}" for r in resources if r.get("resourceType") == "Patient"), "")
    resources = [storied(name, r) for r in resources] + history(name, patient_ref)
    ids = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{name}-{r['id']}"[:64 + len(r["resourceType"]) + 1]
           for r in resources if r.get("id")}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items()}
            if isinstance(out.get("reference"), str) and out["reference"] in ids:
                out["reference"] = ids[out["reference"]]
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    entries, patient_id, seen = [], None, set()
    for r in resources:
        key = f"{r['resourceType']}/{r.get('id')}"
        if key in seen:  # the same resource in two prefetch keys
            continue
        seen.add(key)
        new = shift_dates(rewrite(r), days)
        new["id"] = ids[key].split("/", 1)[1]
        if r["resourceType"] == "Patient":
            patient_id = new["id"]
        entries.append({"resource": new, "request": {"method": "PUT", "url": f"{r['resourceType']}/{new['id']}"}})
    if patient_id is None:
        raise SystemExit(f"examples/{name}.json has no Patient in its prefetch")
    return patient_id, {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def clicks(request: dict) -> str:
    """What to do in the sandbox to place the example's draft order."""
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    coding = (draft.get("medicationCodeableConcept") or {}).get("coding") or [{}]
    drug = coding[0].get("display") or "the drug"
    dose = ((draft.get("dosageInstruction") or [{}])[0].get("doseAndRate") or [{}])[0].get("doseQuantity") or {}
    strength = re.search(r"(\d+) MG", drug)
    how = ""
    if dose.get("value") and strength:
        tablets = dose["value"] / int(strength.group(1))
        how = f", Number {tablets:g} (tablets of {strength.group(1)} mg = {dose['value']:g} mg), Frequency: daily"
    search = drug.split()[0]
    return (f'"Rx View" tab -> Medication: type "{search}", choose "{drug}"{how}; the cards appear on the right '
            '(order-select); "Rx Sign" sends order-sign')


def wait_for(url: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with _OPENER.open(url, timeout=2) as resp:
                resp.read()
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"the service exited ({proc.returncode}) before answering {url}") from None
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def _stopped_by_a_signal(returncode: int | None) -> bool:
    """Did a child exit because it was told to (Ctrl-C, SIGTERM)? ``serve --dev`` exits 0 on
    either; Node dies of the signal (negative code) or exits 128 + its number."""
    stops = (signal.SIGINT, signal.SIGTERM)
    return returncode is not None and (returncode == 0 or -returncode in stops or returncode - 128 in stops)


def app_link(base: str, fhir: MedplumServer, patient_id: str) -> str:
    """An EHR launch of the SMART app for this patient: a launch id from the FHIR server's SMART
    endpoints (what an EHR makes when the clinician opens the app), then ``iss`` and ``launch``."""
    req = urllib.request.Request(f"{fhir.origin}/__smart/launch", data=json.dumps({"patient": patient_id}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with _OPENER.open(req, timeout=10) as resp:
        launch = json.loads(resp.read())["launch"]
    return f"{base}/smart/launch?" + urlencode({"iss": fhir.base_url, "launch": launch})


def report_command(data_dir: Path) -> str:
    here = data_dir.resolve() == (Path.cwd() / "data").resolve()
    prefix = "" if here else f"AZA_CDS_DATA_DIR={data_dir} "
    return f"{prefix}.venv/bin/azathioprine-cds report"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080, help="service port (0: a free one; default 8080)")
    ap.add_argument("--fhir-port", type=int, default=8090, help="FHIR server port (0: a free one; default 8090)")
    args = ap.parse_args(argv)
    port = args.port or free_port()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C, even where this process was started with SIGINT ignored (make or a shell that ignores
    # it for its children): otherwise only Node, which resets it, would stop
    signal.signal(signal.SIGINT, stop)
    fhir = MedplumServer(cors=True, smart=True, port=args.fhir_port)
    service: subprocess.Popen | None = None
    data_dir = default_data_dir()  # kept: the feedback given in the sandbox is what `report` reads
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        print("Starting the FHIR test server (the first time, npm ci in tests/fhir_server: a few seconds)...",
              flush=True)
        try:
            fhir.start()
        except MedplumServerError as exc:
            print(f"cannot start the FHIR test server: {exc}", file=sys.stderr)
            return 1
        days = (date.today() - EXAMPLES_DAY).days
        described = notes()
        patients = []
        for path in example_files():
            request = json.loads(path.read_text(encoding="utf-8"))
            pid, bundle = patient_bundle(path.stem, request, days)
            fhir.load(bundle)
            patients.append((path.stem, pid, request))

        base = f"http://127.0.0.1:{port}"
        print(f"Loaded {len(patients)} patients. Starting the service...", flush=True)
        log_path = data_dir / "demo-service.log"
        with open(log_path, "ab") as log:
            service = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT, env={**os.environ, "AZA_CDS_DATA_DIR": str(data_dir)}, stdout=log, stderr=log)
        wait_for(base + "/healthz", service)

        discovery = base + "/cds-services"
        print(f"\nCDS service (development mode, no JWT): {discovery}")
        print(f"FHIR R4 server (in memory, CORS open):   {fhir.base_url}")
        print(f"service log (one JSON line per call):    {log_path}")
        print(f"feedback store (kept after the demo):    {data_dir}")
        print(f"\nOpen a link in your browser (the sandbox page calls these two loopback servers from your "
              f"browser; if it asks to let {SANDBOX.rstrip('/')} reach devices on your local network, allow it).\n")
        for name, pid, request in patients:
            link = SANDBOX + "?" + urlencode({"serviceDiscoveryURL": discovery, "fhirServiceUrl": fhir.base_url,
                                              "patientId": pid})
            print(f"== {name}: {described.get(name, '')}")
            print(f"   {link}")
            print(f"   {clicks(request)}")
            print(f"   SMART app for this patient: {app_link(base, fhir, pid)}\n")
        print(f"{READY} {datetime.now():%H:%M:%S}. Ctrl-C stops the service and the FHIR server.", flush=True)
        print(f"Afterwards, the cards shown and what was done with them: {report_command(data_dir)}", flush=True)
        while service.poll() is None and fhir.running:
            time.sleep(0.5)
        # Ctrl-C reaches every process of the terminal's group at once: a child may exit on it before
        # this process sees its own KeyboardInterrupt, which then arrives during this pause
        time.sleep(1.0)
        if _stopped_by_a_signal(service.poll()) or _stopped_by_a_signal(fhir.returncode):
            print("\nstopping", file=sys.stderr)
            return 0
        which = "the service" if service.poll() is not None else "the FHIR server"
        print(f"{which} exited unexpectedly (see {log_path}); stopping the other", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
        fhir.stop()
        print(f"\nFeedback is kept in {data_dir}. Cards shown and what was done with them:\n"
              f"  {report_command(data_dir)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
