"""The SMART app in a real browser: headless Chromium (Debian's package, driven by playwright-core)
follows the headline example's card link through a whole SMART App Launch 2.0 against the test
FHIR server with SMART endpoints (tests/fhir_server, ``--smart``), and the page shows the patient's
TPMT result. Real processes throughout: the service (``serve --dev``), the FHIR server, Chromium.

Screenshots go to ``test-artefacts/smart/`` (git-ignored); ``docs/smart-app.png`` is one of them.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from examples.people import history, storied
from tests.fhir_server.medplum import MedplumServer

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "smart_app"
ARTEFACTS = ROOT / "test-artefacts" / "smart"
HEADLINE = ROOT / "examples" / "lupus-nephritis-tpmt-im-allopurinol.json"
TOKEN = "smart-test-token"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=30) as resp:
        return json.loads(resp.read())


def _chromium() -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "install"], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, f"Chromium could not be installed: {out.stderr[-2000:]}"
    return out.stdout.strip().splitlines()[-1]


def _npm_ci() -> None:
    if not (APP / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the SMART app's libraries"
        out = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=APP, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]


def _bundle(request: dict) -> dict:
    """The example's prefetched resources as a transaction (ids kept), with the demo's story: the
    patient's name, readable conditions and an earlier record for the trend charts."""
    seen, entries = set(), []
    for value in request["prefetch"].values():
        resources = [e["resource"] for e in value.get("entry", [])] if value.get("resourceType") == "Bundle" else [value]
        resources = [storied(HEADLINE.stem, r) for r in resources]
        resources += history(HEADLINE.stem, f"Patient/{request['context']['patientId']}") if value is request["prefetch"]["patient"] else []
        for r in resources:
            key = f"{r['resourceType']}/{r['id']}"
            if key not in seen:
                seen.add(key)
                entries.append({"resource": r, "request": {"method": "PUT", "url": key}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    _npm_ci()
    chromium = _chromium()
    request = json.loads(HEADLINE.read_text(encoding="utf-8"))
    fhir = MedplumServer(token=TOKEN, smart=True)
    fhir.start()
    port = _free_port()
    data = tmp_path_factory.mktemp("smart-data")
    env = {**os.environ, "AZA_CDS_DATA_DIR": str(data), "AZA_CDS_EVALUATION_DATE": "2026-11-23"}
    log = open(data / "service.log", "wb")
    service = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--dev", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        fhir.load(_bundle(request))
        deadline = time.monotonic() + 60
        while True:
            try:
                _http(base + "/healthz")
                break
            except OSError:
                assert service.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        yield {"fhir": fhir, "base": base, "request": request, "chromium": chromium}
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
        log.close()
        fhir.stop()


def _browse(servers, url: str, name: str) -> dict:
    out = subprocess.run(["node", "test/browser.mjs", "--url", url, "--out", str(ARTEFACTS), "--name", name,
                          "--chromium", servers["chromium"]], cwd=APP, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _smart_link(servers) -> dict:
    request = servers["request"]
    service = {"order-select": "thiopurine-order-select", "order-sign": "thiopurine-order-sign"}[request["hook"]]
    cards = _http(f"{servers['base']}/cds-services/{service}", request)["cards"]
    assert cards
    links = [[link for link in c.get("links", []) if link["type"] == "smart"] for c in cards]
    assert all(len(ls) == 1 for ls in links), "every card links the SMART app once"
    return links[0][0]


def _origin(fhir: MedplumServer) -> str:
    assert fhir.origin is not None
    return fhir.origin


def test_ehr_launch_from_the_headline_card_completes_and_shows_the_tpmt_result(servers):
    fhir: MedplumServer = servers["fhir"]
    link = _smart_link(servers)
    context = json.loads(link["appContext"])
    assert context["findings"] and context["draftOrders"][0]["resourceType"] == "MedicationRequest"
    pid = servers["request"]["context"]["patientId"]
    # what an EHR does when the clinician clicks the link: a launch id bound to the patient and appContext
    launch = _http(_origin(fhir) + "/__smart/launch", {"patient": pid, "appContext": link["appContext"]})["launch"]
    fhir.reset_log()
    url = link["url"] + "?" + urlencode({"iss": fhir.base_url, "launch": launch})
    page = _browse(servers, url, "ehr-launch")
    assert page["ok"], json.dumps(page)[:3000]

    smart_log = _http(_origin(fhir) + "/__smart/log")
    authorize = [q for q in smart_log["authorize"] if q.get("launch") == launch]
    assert len(authorize) == 1
    q = authorize[0]
    assert q["response_type"] == "code" and q["aud"] == fhir.base_url and q["state"]
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert "launch" in q["scope"].split() and q["redirect_uri"].startswith(servers["base"] + "/smart/")
    assert smart_log["token"] and smart_log["token"][-1]["grant_type"] == "authorization_code"
    assert smart_log["token"][-1]["code_verifier_present"] and smart_log["token"][-1]["pkce_ok"]

    reads = [r for r in fhir.request_log() if r["method"] == "GET" and not r["path"].endswith("/metadata")]
    assert reads and all(r["authorization_present"] and r["status"] == 200 for r in reads)
    assert any(r["path"] == f"/fhir/Patient/{pid}" for r in reads)
    assert any(r["path"] == "/fhir/Observation" and "84413-4" in parse_qs(r["query"]).get("code", [""])[0]
               for r in reads)  # the pharmacogenomic query, with the token

    text = page["text"]
    assert "Maria Okafor" in text and "start at 30-80 % of the normal dose (CPIC, azathioprine)" in text
    assert "TPMT" in text and "*1/*3A" in text and "Intermediate Metabolizer (CPIC)" in text
    assert "Lymphocytes" in text and "Thresholds: below 0.5" in text  # the rules' cut-off, drawn and said
    assert "mg/kg/day" in text and "Findings" in text
    assert page["violations"] == [], page["violations"]
    assert all(Path(p).stat().st_size > 10_000 for p in page["screenshots"])


def test_standalone_launch_with_iss_only(servers):
    fhir: MedplumServer = servers["fhir"]
    pid = servers["request"]["context"]["patientId"]
    _http(_origin(fhir) + "/__smart/launch", {"patient": pid})  # names the patient the "user" picks
    before = len(_http(_origin(fhir) + "/__smart/log")["authorize"])
    page = _browse(servers, servers["base"] + "/smart/launch?" + urlencode({"iss": fhir.base_url}), "standalone")
    assert page["ok"], json.dumps(page)[:3000]
    q = _http(_origin(fhir) + "/__smart/log")["authorize"][before:]
    assert len(q) == 1 and "launch" not in q[0] and q[0]["aud"] == fhir.base_url
    assert q[0]["code_challenge_method"] == "S256"
    assert "*1/*3A" in page["text"]


def test_a_wrong_state_is_refused_by_the_app(servers):
    """A redirect whose state the app did not send (a forged callback) never completes the launch."""
    url = servers["base"] + "/smart/?" + urlencode({"code": "forged", "state": "not-ours"})
    page = _browse(servers, url, "forged-state")
    assert not page["ok"] and "could not be completed" in page["text"]
    assert urlsplit(page["finalUrl"]).path == "/smart/"


def test_the_sandbox_open_link_shape_reads_an_open_server_without_oauth(servers):
    """The public CDS Hooks sandbox, on an open FHIR server, opens a smart link with
    ``fhirServiceUrl`` and ``patientId`` added (no iss, no launch): the app reads without a token."""
    request = servers["request"]
    with MedplumServer(cors=True) as open_fhir:
        open_fhir.load(_bundle(request))
        url = servers["base"] + "/smart/launch?" + urlencode({"fhirServiceUrl": open_fhir.base_url,
                                                              "patientId": request["context"]["patientId"]})
        page = _browse(servers, url, "sandbox-open")
        assert page["ok"], json.dumps(page)[:3000]
        assert "*1/*3A" in page["text"]
        reads = [r for r in open_fhir.request_log() if r["method"] == "GET"]
        assert reads and not any(r["authorization_present"] for r in reads)
