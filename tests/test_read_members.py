"""Results keys read with only the members the mappers read (``fhir_mappers/read_members.py``): the same answers.

- Every request in the test data and the examples answers the same, byte for byte (card and suggestion uuids
  aside), through the typed decoder as through the whole parse; so do random mutations of their results.
- Every member a mapper reads of a resource under a results key (``.get``, ``[]``, ``in``: recorded whether the
  member is there or not) is one the decoder keeps: a mapper that starts reading a new member fails here until
  ``read_members.Resource`` names it.
- A shape the decoder does not take is parsed whole, never dropped.
"""
from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

import service.api as api
from fhir_mappers import read_members
from service import jsonbody
from tests.builders import SERVICE

ROOT = Path(__file__).resolve().parent.parent
_UUID = re.compile(r'"uuid":\s*"[^"]*"')


def _requests() -> list[Path]:
    files = sorted((ROOT / "tests" / "data").rglob("*.json")) + sorted((ROOT / "examples").glob("*.json"))
    out = []
    for f in files:
        try:
            body = json.loads(f.read_text())
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("prefetch"), dict) and body.get("hook") in SERVICE \
                and read_members.RESULT_KEYS & set(body["prefetch"]):
            out.append(f)
    return out


REQUESTS = _requests()


def _answer(client, body: bytes, hook: str) -> tuple[int, str]:
    resp = client.post(f"/cds-services/{SERVICE[hook]}", data=body, content_type="application/json")
    return resp.status_code, _UUID.sub('"uuid": "-"', resp.get_data(as_text=True))


def _both(client, monkeypatch, body: bytes, hook: str) -> tuple[tuple[int, str], tuple[int, str]]:
    typed = _answer(client, body, hook)
    with monkeypatch.context() as m:
        m.setattr(api, "RESULT_KEYS", frozenset())
        whole = _answer(client, body, hook)
    return typed, whole


def test_there_are_requests_with_results() -> None:
    assert len(REQUESTS) >= 100, "the equivalence below needs the test data's requests"


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_same_answer_through_the_typed_decoder(client, monkeypatch, path: Path) -> None:
    body = path.read_bytes()
    typed, whole = _both(client, monkeypatch, body, json.loads(body)["hook"])
    assert typed == whole


_ODD: list[Any] = [None, "", "x", 0, -1, 1.5, True, [], {}, [None], [{}], {"coding": "x"}, {"value": "1,5"}, "< 0.5"]


def _mutate(rng: random.Random, resource: dict) -> None:
    """One random change to a resource: a member replaced by an odd value, deleted, or added."""
    roll = rng.random()
    if roll < 0.15:
        resource[rng.choice(sorted(read_members.RESOURCE_MEMBERS))] = copy.deepcopy(rng.choice(_ODD))
        return
    keys = sorted(resource)
    if not keys:
        return
    key = rng.choice(keys)
    if roll < 0.3:
        del resource[key]
        return
    value = resource[key]
    if isinstance(value, dict) and value:
        value[rng.choice(sorted(value))] = copy.deepcopy(rng.choice(_ODD))
    elif isinstance(value, list) and value:
        value[rng.randrange(len(value))] = copy.deepcopy(rng.choice(_ODD))
    else:
        resource[key] = copy.deepcopy(rng.choice(_ODD))


def test_same_answer_for_mutated_results(client, monkeypatch) -> None:
    rng = random.Random(20261207)
    checked = 0
    for _ in range(400):
        path = rng.choice(REQUESTS)
        req = json.loads(path.read_text())
        keys = sorted(k for k in read_members.RESULT_KEYS & set(req["prefetch"]) if isinstance(req["prefetch"][k], dict))
        if not keys:
            continue
        value = req["prefetch"][rng.choice(keys)]
        entries = value.get("entry") if isinstance(value.get("entry"), list) else []
        resources = [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        if not resources:
            continue
        for _ in range(rng.randint(1, 3)):
            _mutate(rng, rng.choice(resources))
        if rng.random() < 0.1:  # a shape the typed decoder does not take: an entry that is not an object
            entries.append(rng.choice(["x", 1, None, []]))
        typed, whole = _both(client, monkeypatch, json.dumps(req).encode(), req["hook"])
        assert typed == whole, path.name
        checked += 1
    assert checked >= 200


class _Recorder(dict):
    """A resource that records every member looked up (present or not)."""

    seen: set[str]

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)


def test_every_member_a_mapper_reads_is_kept(client, monkeypatch) -> None:
    """Run the requests with each resource of a results key as a recorder; what they look up must be kept.
    (A MedicationStatement is copied whole into an order before it is read: ``_statement_as_order``; its reads
    are those of an order, whose members ``Resource`` keeps.)"""
    looked_up: dict[str, set[str]] = {}

    def recording(raw: bytes) -> Any:
        value = jsonbody.parse(raw)
        entries = value.get("entry") if isinstance(value, dict) else None
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and type(e.get("resource")) is dict:
                rtype = e["resource"].get("resourceType")
                rec = _Recorder(e["resource"])
                rec.seen = looked_up.setdefault(rtype if isinstance(rtype, str) else "?", set())
                e["resource"] = rec
        return value

    monkeypatch.setattr(api, "_read_results", recording)
    for path in REQUESTS:
        body = path.read_bytes()
        assert _answer(client, body, json.loads(body)["hook"])[0] in (200, 400, 412)
    assert "Observation" in looked_up and {"code", "status"} <= looked_up["Observation"]
    missing = {rtype: sorted(k for k in keys if isinstance(k, str) and k not in read_members.RESOURCE_MEMBERS)
               for rtype, keys in looked_up.items()}
    assert not any(missing.values()), f"members read but not kept by read_members.Resource: {missing}"


def test_a_shape_the_decoder_does_not_take_is_parsed_whole() -> None:
    raw = b'{"resourceType": "Bundle", "entry": ["x", {"resource": {"resourceType": "Observation", "meta": {}}}]}'
    assert api._read_results(raw) == json.loads(raw)
    raw = b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "meta": {"v": 1}, ' \
          b'"status": "final"}}]}'
    assert api._read_results(raw) == {"resourceType": "Bundle",
                                      "entry": [{"resource": {"resourceType": "Observation", "status": "final"}}]}
