"""Types at the boundary (issue 18 R2): 10,000 seeded mutations of real hook requests, 0 x 5xx.

Every request of ``examples/`` is mutated at random places (a field replaced by a value of
another JSON type, a negative or absurd number, deleted, wrapped in an array, an array entry
duplicated), 1-4 mutations a request, from a fixed seed, and sent to the app in-process (Flask's
test client; no sockets). Each answer must be a 200 that is a CDS Hooks response, or a 4xx
OperationOutcome: never a 5xx. The seed is fixed, so a failure names the case that can be replayed
(``_case(seed, i)``). The FHIR server of a request is always dropped (nothing to fetch: the
prefetch, or a data gap).
"""
from __future__ import annotations

import copy
import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from hooks import SERVICES
from service import create_app
from service.validation import first_error
from tests.isolation import isolated  # noqa: F401  (autouse: nothing leaves the machine)

ROOT = Path(__file__).resolve().parent.parent
SEED = 18_2026
MUTATIONS = 10_000
SERVICE_OF_HOOK = {s.hook: s.id for s in SERVICES.values()}

BASES = [json.loads(p.read_text()) for p in sorted((ROOT / "examples").glob("*.json")) if not p.name.startswith("trust")]

ODD_VALUES: list = [None, True, False, 0, -1, -170, -1e308, 1e308, 10**40, -(10**40), 0.5, -0.0, 1e-320, "", " ",
                    "-5", "abc", "\ud800", "\u0000", "x" * 300, {}, [], [None], [{}], {"a": 1}, {"value": -1},
                    {"coding": "x"}, {"reference": 5}, [1, 2], [[[]]], {"resourceType": "Bundle", "entry": {}}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _mutate(rng: random.Random, req: dict) -> None:
    paths = [p for p in _paths(req) if p]
    path = rng.choice(paths)
    parent = req
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    old = parent[last]
    op = rng.random()
    if op < 0.10:
        del parent[last]
    elif op < 0.15:
        parent[last] = [old]
    elif op < 0.20 and isinstance(parent, list):
        parent.append(copy.deepcopy(old))
    elif op < 0.45 and isinstance(old, (int, float)) and not isinstance(old, bool):
        parent[last] = rng.choice([-old, -abs(old) - 1, 0, old * 1e6, -1e308, 1e308, 10**30, 0.0001])
    else:
        parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))


def _case(seed: int, i: int) -> tuple[str, dict]:
    rng = random.Random(seed * 1_000_003 + i)
    req = copy.deepcopy(rng.choice(BASES))
    for _ in range(rng.randint(1, 4)):
        _mutate(rng, req)
    if isinstance(req, dict):
        req.pop("fhirServer", None)
    hook = req.get("hook") if isinstance(req, dict) else None
    service = SERVICE_OF_HOOK.get(hook, "thiopurine-order-sign") if isinstance(hook, str) else "thiopurine-order-sign"
    return service, req


@pytest.fixture(scope="module")
def client():
    app = create_app({"auth_required": False, "fhir_deadline": 0.3, "database_url": "sqlite://",
                      "evaluation_date": "2026-11-23"})
    logging.getLogger("aza_cds").setLevel(logging.WARNING)  # 10,000 access-log lines cost more than the calls
    yield app.test_client()
    logging.getLogger("aza_cds").setLevel(logging.NOTSET)


def test_ten_thousand_seeded_mutations_never_get_a_5xx(client):
    statuses: Counter[int] = Counter()
    failures: list[tuple[int, int, str]] = []
    for i in range(MUTATIONS):
        service, req = _case(SEED, i)
        resp = client.post(f"/cds-services/{service}", data=json.dumps(req, allow_nan=False),
                           content_type="application/json")
        statuses[resp.status_code] += 1
        body = resp.get_json(silent=True)
        ok = isinstance(body, dict) and (
            (resp.status_code == 200 and first_error("ServiceResponse", body) is None)
            or (400 <= resp.status_code < 500 and body.get("resourceType") == "OperationOutcome"))
        if not ok and len(failures) < 10:
            failures.append((i, resp.status_code, resp.get_data(as_text=True)[:300]))
    print(f"\n{MUTATIONS} seeded mutations: {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) == MUTATIONS
    assert not failures, failures  # (case index, status, body): replay with _case(SEED, index)
    assert statuses[200] > MUTATIONS // 4, statuses  # most mutations reach the clinical pipeline
