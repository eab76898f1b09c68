"""Advice converges (issue 17 item 5): following any suggestion and signing again gives no new dose.

For every example in examples/ and the cases below, under both guideline profiles: each suggestion is
applied as a CDS Hooks 2.0 client applies it (``update``: the resource replaces the one with its id;
``delete``: the draft with that id is removed; ``create``: added to the record), the hook is called
again, and no card may then change a dose (an ``update`` of a MedicationRequest) or state a dose the
first answer did not give.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from tests import builders as b
from tests.builders import days_ago, med_request, weight

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.json"))
EXAMPLES = [p for p in EXAMPLES if json.loads(p.read_text()).get("hook")]

TPMT_IM = [b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*1")]
ALLO = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo", status="active", daily_mg=300,
                   authored=days_ago(300))
LN = {"resourceType": "Condition", "id": "cond-ln", "clinicalStatus": {"coding": [
    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "68815009"}]},
      "subject": {"reference": f"Patient/{b.PID}"}}


def _drafts(req: dict) -> list[dict]:
    ctx = req["context"]
    orders = ctx.get("draftOrders") or ctx.get("medications") or {}
    return [e["resource"] for e in orders.get("entry", [])]


def _set_drafts(req: dict, drafts: list[dict]) -> None:
    ctx = req["context"]
    key = "draftOrders" if "draftOrders" in ctx else "medications"
    ctx[key] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}


def dose_updates(cards: list[dict]) -> list[dict]:
    return [a for c in cards for s in c.get("suggestions", []) for a in s["actions"]
            if a["type"] == "update" and a.get("resource", {}).get("resourceType") == "MedicationRequest"]


def applied(req: dict, action: dict) -> dict | None:
    """``req`` with one suggestion action applied; None when nothing is left to sign."""
    out = copy.deepcopy(req)
    drafts = _drafts(out)
    if action["type"] == "update":
        res = action["resource"]
        ids = [d.get("id") for d in drafts]
        assert res.get("id") in ids, "a dose change targets a draft of this call, by its own id"
        drafts = [copy.deepcopy(res) if d.get("id") == res["id"] else d for d in drafts]
    elif action["type"] == "delete":
        rid = action["resourceId"].rsplit("/", 1)[-1]
        drafts = [d for d in drafts if d.get("id") != rid]
        if not drafts:
            return None
    else:
        return None  # a created test or measurement does not change the order
    _set_drafts(out, drafts)
    return out


def _doses(cards: list[dict]) -> set[str]:
    """The recommended doses the cards state (their plan lines)."""
    return {m for c in cards for m in re.findall(r"Recommended dose for this \w+ order: ([^*]+)\*\*", c["detail"])}


def assert_converges(call, req: dict) -> None:
    first = call(req)
    for card in first:
        for s in card.get("suggestions", []):
            for action in s["actions"]:
                again_req = applied(req, action)
                if again_req is None:
                    continue
                again = call(again_req)
                assert not dose_updates(again), (s["label"], [c["summary"] for c in again])
                new = _doses(again) - _doses(first)
                if action["type"] == "update":
                    assert not _doses(again), (s["label"], _doses(again))
                assert not new, (s["label"], new)
                assert not any("ask a specialist" in c["summary"] for c in again) or \
                    any("ask a specialist" in c["summary"] for c in first)


def _app(guideline: str, evaluation_date: str | None):
    """The examples are dated for 2026-11-23 (as their snapshots); the cases built here are dated from today."""
    from service import create_app

    key = (guideline, evaluation_date)
    if key not in _APPS:
        config = {"auth_required": False, "database_url": "sqlite:///:memory:", "guideline": guideline}
        if evaluation_date:
            config["evaluation_date"] = evaluation_date
        _APPS[key] = create_app(config)
    return _APPS[key]


_APPS: dict = {}


@pytest.fixture(params=["cpic", "dpwg"])
def call(request):
    from tests.builders import SERVICE

    dated = "2026-11-23" if "example" in request.node.name else None
    client = _app(request.param, dated).test_client()

    def _call(req: dict) -> list[dict]:
        resp = client.post(f"/cds-services/{SERVICE[req['hook']]}", json=req)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()["cards"]

    return _call


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_converges(call, path):
    assert_converges(call, json.loads(path.read_text()))


def _req(orders, **pre):
    pre.setdefault("weights", [weight(75)])
    return b.hook_request("order-sign", orders=orders, pre=b.prefetch(**pre))


CASES = {
    "headline": _req([med_request(daily_mg=150)], pgx=TPMT_IM, conditions=[LN], meds=[ALLO]),
    "allopurinol-alone": _req([med_request(daily_mg=150)], meds=[ALLO]),
    "allopurinol-draft-active-aza": _req([med_request("519", "allopurinol 100 MG Oral Tablet", id="allo-new",
                                                      daily_mg=300)],
                                         meds=[med_request(id="aza-on", status="active", daily_mg=150,
                                                           authored=days_ago(200))]),
    "tid-order": _req([med_request(dosages=[b.dosage(50, frequency=3)])], pgx=TPMT_IM),
    "no-weight": _req([med_request(daily_mg=200)], pgx=TPMT_IM, weights=[]),
    "mercaptopurine-ml": _req([med_request("1234", "mercaptopurine 20 MG/ML Oral Suspension", id="mp",
                                           dosages=[b.dosage(5, unit="mL", code="mL")])], meds=[ALLO]),
    "above-range": _req([med_request(daily_mg=300)], conditions=[LN]),
    "above-range-with-allopurinol": _req([med_request(daily_mg=300)], conditions=[LN], meds=[ALLO], pgx=TPMT_IM),
    "thioguanine-im": _req([med_request("10485", "thioguanine 40 MG Oral Tablet", id="tg", daily_mg=80)], pgx=TPMT_IM),
    "renewal-with-allopurinol": _req([dict(med_request(id="aza-renew", daily_mg=150),
                                           priorPrescription={"reference": "MedicationRequest/aza-prior"}),
                                      med_request("519", "allopurinol 100 MG Oral Tablet", id="allo-new", daily_mg=300)],
                                     meds=[med_request(id="aza-prior", status="active", daily_mg=150,
                                                       authored=days_ago(120))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_cases_converge(call, name):
    assert_converges(call, CASES[name])


# ------------------------------------------------------------ generated cases
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

NUDT15_IM = [b.genotype_ig("TPMT", "*1/*1"), b.genotype_ig("NUDT15", "*1/*3")]
BOTH_IM = [b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*3")]
DRUGS = [("197388", "azathioprine 50 MG Oral Tablet"), ("197931", "mercaptopurine 50 MG Oral Tablet")]


@st.composite
def cases(draw):
    rxnorm, name = draw(st.sampled_from(DRUGS))
    per_dose = draw(st.sampled_from([12.5, 25, 37.5, 50, 75, 100, 150, 200]))
    freq = draw(st.sampled_from([1, 2, 3]))
    pgx = draw(st.sampled_from([None, TPMT_IM, NUDT15_IM, BOTH_IM]))
    kg = draw(st.one_of(st.none(), st.integers(min_value=35, max_value=120)))
    meds = [ALLO] if draw(st.booleans()) else []
    conditions = [LN] if draw(st.booleans()) else []
    order = med_request(rxnorm, name, id="gen", dosages=[b.dosage(per_dose, frequency=freq)])
    return b.hook_request("order-sign", orders=[order], pre=b.prefetch(
        pgx=pgx, meds=meds, conditions=conditions, weights=[weight(kg)] if kg else []))


@pytest.mark.parametrize("guideline", ["cpic", "dpwg"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=cases())
def test_generated_orders_converge(guideline, req):
    from tests.builders import SERVICE

    client = _app(guideline, None).test_client()

    def _call(r):
        resp = client.post(f"/cds-services/{SERVICE[r['hook']]}", json=r)
        assert resp.status_code == 200
        return resp.get_json()["cards"]

    assert_converges(_call, req)

