"""Dependencies: the runtime ones are what the request path imports; test-only ones stay in extras."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = {"pytest", "responses", "hypothesis", "schemathesis", "fhir.resources"}

# one hook call and one feedback post through a freshly built app, then the modules it loaded
PROBE = """
import json, sys
from service import create_app
from tests.builders import hook_request, prefetch
client = create_app({"auth_required": False, "database_url": "sqlite://"}).test_client()
assert client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch())).status_code == 200
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _requirement_names(reqs: list[str]) -> set[str]:
    return {r.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in reqs}


def test_test_only_and_postgres_packages_are_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _requirement_names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert not runtime & TEST_ONLY
    assert TEST_ONLY <= _requirement_names(extras["test"])
    assert "psycopg" not in runtime and "psycopg" in _requirement_names(extras["postgres"])


def test_the_request_path_imports_no_test_only_package():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"pytest", "responses", "hypothesis", "schemathesis", "fhir", "psycopg"}, loaded
