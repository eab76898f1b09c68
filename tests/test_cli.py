"""The command line: check (offline), serve (real process), and the conformance replay."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service.cli import is_loopback, main

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_FIXTURES = ROOT / "tests" / "fixtures" / "public"
HOOKS = {"order-sign", "order-select", "medication-prescribe"}
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("name,expected", [
    ("normal-patient", "No cards"),
    ("tpmt-poor-metabolizer", "[CRITICAL] Azathioprine: TPMT poor metabolizer: consider a non-thiopurine alternative"),
    ("tpmt-intermediate-metabolizer", "reduce to 50 mg/day (range 44-72 mg/day)"),  # round-16 M1: a new start, of the normal dose
    ("missing-pgx-test", "[WARNING]  Azathioprine: no TPMT and NUDT15 result on record"),
])
def test_check_examples(capsys, name, expected):
    assert main(["check", "--today", "2026-11-23", str(EXAMPLES / f"{name}.json")]) == 0
    assert expected in capsys.readouterr().out


def test_check_json_is_a_cds_hooks_response(capsys):
    assert main(["check", "--json", "--today", "2026-11-23", str(EXAMPLES / "tpmt-poor-metabolizer.json")]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["cards"][0]["indicator"] == "critical"


def test_check_never_contacts_the_named_fhir_server(tmp_path, capsys):
    req = json.loads((EXAMPLES / "missing-pgx-test.json").read_text())
    del req["prefetch"]["pgx"]
    req["fhirServer"] = "https://ehr.example.org/fhir"  # would be off the machine: check must not call it
    f = tmp_path / "req.json"
    f.write_text(json.dumps(req))
    assert main(["check", str(f)]) == 0
    out = capsys.readouterr().out
    assert "could not be retrieved" in out


def test_check_bad_file(tmp_path, capsys):
    f = tmp_path / "bad.json"
    f.write_text("{nope")
    assert main(["check", str(f)]) == 2


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_insecure_no_auth_refuses_non_loopback():
    assert main(["serve", "--insecure-no-auth", "--host", "0.0.0.0"]) == 2


def test_serve_without_trust_refuses(monkeypatch):
    monkeypatch.delenv("AZA_CDS_TRUST", raising=False)
    assert main(["serve"]) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):  # up to a minute: a loaded machine starts slowly
        try:
            urllib.request.urlopen(base + "/cds-services", timeout=0.5).read()
            return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.communicate()[1].decode()) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture
def dev_server(tmp_path):
    proc, base = start_server("--dev", env={"AZA_CDS_DATA_DIR": str(tmp_path)})
    yield base
    proc.terminate()
    proc.wait(10)


def test_dev_server_says_it_loudly(tmp_path):
    proc, base = start_server("--dev", env={"AZA_CDS_DATA_DIR": str(tmp_path)})
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert b"NO JWT AUTHENTICATION" in err and b"/cds-services" in err


def test_conformance_replay_of_public_fixtures(dev_server, tmp_path):
    """scripts/replay_fixtures.py against `serve --dev`: every public fixture answered validly (0 failed)."""
    _issue_fixture_cards(tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "replay_fixtures.py"), "--base", dev_server,
                          "--fixtures", str(PUBLIC_FIXTURES)], capture_output=True, text=True, timeout=300)
    last = out.stdout.strip().splitlines()[-1]
    assert last.endswith(" 0 failed"), out.stdout[-3000:]
    fixtures = {f.name: json.loads(f.read_text()) for f in PUBLIC_FIXTURES.rglob("*.json")}
    replayable = [name for name, fx in fixtures.items()
                  if isinstance(fx, dict) and ("context" in fx and fx.get("hook") in HOOKS or "feedback" in fx)]
    assert len(replayable) >= 19 and all(f"PASS {name} -> " in out.stdout for name in replayable), out.stdout


def _issue_fixture_cards(data_dir) -> None:
    """Feedback is stored only about cards the service issued (issue 18 R5): the spec's feedback examples
    name cards of their own, recorded here in the dev server's store as each service's, as a hook call would."""
    from hooks import SERVICES
    from service.storage import FeedbackStore, default_database_url
    from tests.issued import issue

    cards = {i["card"] for f in PUBLIC_FIXTURES.rglob("*.json") if isinstance(fx := json.loads(f.read_text()), dict)
             and isinstance(fx.get("feedback"), list) for i in fx["feedback"] if isinstance(i, dict) and "card" in i}
    store = FeedbackStore.open(default_database_url(data_dir))
    try:
        issue(store, *sorted(cards), service_id=next(iter(SERVICES)))
    finally:
        store.close()


def _serve_fails(tmp_path, *args: str, env: dict | None = None) -> str:
    full_env = {**os.environ, "AZA_CDS_DATA_DIR": str(tmp_path), **(env or {})}
    full_env.pop("AZA_CDS_TRUST", None)
    out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(free_port()),
                          *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr and "discovery" not in out.stderr, out.stderr
    return lines[0]


@pytest.mark.parametrize("mode", [(), ("--dev",)], ids=["gunicorn", "dev"])
def test_start_up_failures_are_one_line_and_exit_2(tmp_path, mode):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    no_iss = tmp_path / "no-iss.json"
    no_iss.write_text(json.dumps({"issuers": [{"jwks": {"keys": []}}]}))
    if not mode:  # the trust file is read only when JWTs are checked
        assert str(tmp_path / "missing.json") in _serve_fails(tmp_path, "--trust", str(tmp_path / "missing.json"))
        assert str(bad_json) in _serve_fails(tmp_path, "--trust", str(bad_json))
        assert str(no_iss) in _serve_fails(tmp_path, "--trust", str(no_iss))
    trust = ["--trust", str(EXAMPLES / "trust-sandbox.json")] if not mode else []
    assert "AZA_CDS_GUIDELINE" in _serve_fails(tmp_path, *mode, *trust, env={"AZA_CDS_GUIDELINE": "foo"})
    line = _serve_fails(tmp_path, *mode, *trust,
                        env={"AZA_CDS_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"})
    assert "feedback store" in line and "AZA_CDS_DATABASE_URL" in line
