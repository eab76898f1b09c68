"""``make demo`` (scripts/demo.py) as a newcomer runs it: links printed, servers answer with CORS, Ctrl-C stops all."""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Origin": SANDBOX_ORIGIN, **(headers or {})})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname, parts.port)) == 0


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(params=["terminal", "sigint-ignored"])
def demo(request, tmp_path):
    """``sigint-ignored``: started as make or a shell may start it, with SIGINT ignored (inherited by
    the service; Node resets it), so Ctrl-C used to stop only the FHIR server."""
    proc = subprocess.Popen([sys.executable, "scripts/demo.py", "--port", "0", "--fhir-port", "0"], cwd=ROOT,
                            env={**os.environ, "AZA_CDS_DATA_DIR": str(tmp_path)},  # the feedback store is kept there
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as under a terminal
                            preexec_fn=_ignore_sigint if request.param == "sigint-ignored" else None)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    while True:
        try:
            line = lines.get(timeout=180)  # npm ci on a fresh clone, then Node and the service start
        except queue.Empty:
            proc.kill()
            pytest.fail("make demo printed nothing for 3 minutes:\n" + "".join(out))
        if line is None:
            pytest.fail(f"make demo exited ({proc.wait()}):\n{''.join(out)}\n{proc.stderr.read() if proc.stderr else ''}")
        out.append(line)
        if line.startswith("Demo ready."):
            break
    yield proc, "".join(out), lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_demo_prints_sandbox_links_to_servers_that_answer_the_browser(demo):
    proc, text, rest = demo
    links = [line.strip() for line in text.splitlines() if line.strip().startswith("https://sandbox.cds-hooks.org/?")]
    examples = [p for p in (ROOT / "examples").glob("*.json") if not p.name.startswith("trust-")]
    assert len(links) == len(examples)  # one patient per example
    assert '"Rx View"' in text and "azathioprine 50 MG Oral Tablet" in text and "Number 2 (tablets of 50 mg" in text

    link = next(link for link in links if "tpmt-poor-metabolizer" in link)
    params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert set(params) == {"serviceDiscoveryURL", "fhirServiceUrl", "patientId"}
    discovery, fhir, pid = params["serviceDiscoveryURL"], params["fhirServiceUrl"], params["patientId"]
    assert urlsplit(discovery).hostname == "127.0.0.1" and urlsplit(fhir).hostname == "127.0.0.1"

    # the sandbox page (another origin) reads discovery and the FHIR server from the browser
    status, headers, body = _request(discovery)
    assert status == 200 and headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)
    assert {s["id"] for s in json.loads(body)["services"]} >= {"thiopurine-order-sign", "thiopurine-order-select"}
    status, headers, body = _request(f"{fhir}/Patient/{pid}")
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == "*"
    assert json.loads(body)["id"] == pid
    status, headers, _ = _request(f"{fhir}/Observation?patient={pid}", method="OPTIONS",
                                  headers={"Access-Control-Request-Method": "GET",
                                           "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and "authorization" in headers.get("Access-Control-Allow-Headers", "").lower()

    # the patient on the FHIR server is the example's: the service finds the poor metabolizer there
    request = json.loads((ROOT / "examples" / "tpmt-poor-metabolizer.json").read_text())
    request.pop("prefetch")
    request["fhirServer"] = fhir
    request["context"]["patientId"] = pid
    service = discovery.rsplit("/cds-services", 1)[0]
    status, _, body = _request(f"{service}/cds-services/thiopurine-order-sign", method="POST", body=request)
    assert status == 200
    assert "pgx-poor-metabolizer" in [c["source"]["topic"]["code"] for c in json.loads(body)["cards"]]

    # Ctrl-C stops everything, quietly: a terminal sends SIGINT to the whole foreground group (the
    # service and the FHIR server too, which may exit before the demo sees it)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    err = proc.stderr.read() if proc.stderr else ""
    assert "on its own" not in err and "unexpectedly" not in err and "Traceback" not in err, err
    assert err.strip() in ("", "stopping"), err
    after = []
    while (line := rest.get(timeout=30)) is not None:
        after.append(line)
    assert "azathioprine-cds report" in after[-1]  # the demo ends by saying how to read its feedback
    assert not _port_open(discovery) and not _port_open(fhir)


def test_demo_patients_have_names_conditions_and_an_app_link(demo):
    proc, text, _ = demo
    block = next(b for b in text.split("\n== ") if b.startswith("lupus-nephritis-tpmt-im-allopurinol:"))
    link = next(line.split(": ", 1)[1].strip() for line in block.splitlines() if "SMART app for this patient" in line)
    params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert set(params) == {"iss", "launch"} and urlsplit(link).path == "/smart/launch"
    fhir = params["iss"]
    pid = "lupus-nephritis-tpmt-im-allopurinol-pt-1"
    status, _, body = _request(f"{fhir}/Patient/{pid}")
    assert status == 200 and json.loads(body)["name"][0]["text"] == "Maria Okafor"
    status, _, body = _request(f"{fhir}/Condition?patient={pid}")
    texts = [e["resource"]["code"].get("text") for e in json.loads(body)["entry"]]
    assert texts == ["Lupus nephritis"]  # the sandbox's "Treating" choice shows code.text
    status, _, body = _request(f"{fhir}/.well-known/smart-configuration")
    assert status == 200 and json.loads(body)["code_challenge_methods_supported"] == ["S256"]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
