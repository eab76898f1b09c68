"""Issue 21, the common call first: an order that concerns no thiopurine, no interacting medicine and no live
vaccine is answered ``{"cards": []}`` from the drafts alone (the prefetch is never decoded); every drug the
knowledge names still gets the full evaluation, with the answer the whole-body reader gives."""
from __future__ import annotations

import copy

import pytest

import hooks.pipeline
import service.api
from fhir_mappers.terminology import CVX, terminology
from hooks.envelope import Prefetch
from rules.common import thiopurines
from rules.interactions import interacting_ingredients
from tests.builders import RXNORM, bundle, hook_request, med_request, prefetch

SIGN = "/cds-services/thiopurine-order-sign"


@pytest.fixture
def spy(monkeypatch):
    """Which prefetch keys a call decodes, and whether it built the clinical facts."""
    seen: dict = {"keys": [], "facts": 0}
    original_get = Prefetch.__getitem__
    original_build = hooks.pipeline.build_facts

    def getitem(self, key):
        seen["keys"].append(key)
        return original_get(self, key)

    def build(*args, **kwargs):
        seen["facts"] += 1
        return original_build(*args, **kwargs)

    monkeypatch.setattr(Prefetch, "__getitem__", getitem)
    monkeypatch.setattr(hooks.pipeline, "build_facts", build)
    return seen


def _without_uuids(value):
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


def _answers(client, monkeypatch, req: dict, url: str = SIGN):
    """(status, answer) through the typed envelope, then through the whole-body reader (as before issue 21)."""
    new = client.post(url, json=req)
    with monkeypatch.context() as m:
        m.setattr(service.api, "_typed_request", lambda raw, svc: None)
        old = client.post(url, json=req)
    return (new.status_code, _without_uuids(new.get_json())), (old.status_code, _without_uuids(old.get_json()))


def _rich_prefetch() -> dict:
    """A prefetch the full evaluation reads: an active azathioprine among the medications."""
    return prefetch(meds=[med_request(id="mr-aza-active", status="active", daily_mg=100)])


def _order(code: str | None, text: str, *, system: str = RXNORM, id: str = "mr-draft") -> dict:
    r = med_request(id=id, daily_mg=10)
    coding = {"system": system, "code": code} if code else None
    r["medicationCodeableConcept"] = {"coding": [coding]} if coding else {"text": text}
    return r


def _knowledge_drugs() -> list[tuple[str, str, dict]]:
    """Every thiopurine and interacting ingredient the knowledge names, by its name and by each RxNorm code the
    terminology gives it; every live vaccine by its CVX code."""
    rxnorm = terminology().rxnorm
    out = []
    for kind, names in (("thiopurine", thiopurines()), ("interacting", interacting_ingredients())):
        assert names, kind
        for name in sorted(names):
            out.append((kind, name, _order(None, name)))
            for code, ingredient in sorted(rxnorm.items()):
                if ingredient == name:
                    out.append((kind, f"{name} RxNorm {code}", _order(code, "")))
    live = sorted(code for code, spec in terminology().cvx.items() if spec.get("live"))
    assert len(live) > 10
    for code in live:
        out.append(("live vaccine", f"CVX {code}", _order(code, "", system=CVX)))
    return out


KNOWLEDGE = _knowledge_drugs()
UNRELATED = [("amoxicillin", "723"), ("amoxicillin 250 MG capsule", "308182"), ("metformin", "6809"),
             ("atorvastatin", "83367"), ("paracetamol", "161")]


@pytest.mark.parametrize(("kind", "name", "order"), KNOWLEDGE, ids=[n for _, n, _ in KNOWLEDGE])
def test_every_drug_the_knowledge_names_gets_the_full_evaluation(client, monkeypatch, spy, kind, name, order):
    req = hook_request(orders=[order], pre=_rich_prefetch())
    new, old = _answers(client, monkeypatch, req)
    assert spy["keys"], f"{kind} {name}: the prefetch was not read"
    assert spy["facts"] >= 1, f"{kind} {name}: no full evaluation"
    assert new == old
    assert new[0] == 200


@pytest.mark.parametrize(("name", "code"), UNRELATED)
def test_an_unrelated_order_is_answered_from_the_drafts_alone(client, spy, name, code):
    for order in (_order(code, ""), _order(None, name), med_request(code, name, id="mr-x", daily_mg=500)):
        req = hook_request(orders=[order], pre=_rich_prefetch())
        resp = client.post(SIGN, json=req)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.get_json() == {"cards": []}
    assert spy["keys"] == [] and spy["facts"] == 0


def test_the_unrelated_order_would_have_read_that_prefetch(client, monkeypatch, spy):
    """The same prefetch with a thiopurine draft is read (the spy sees it), and the old reader agrees."""
    req = hook_request(orders=[med_request()], pre=_rich_prefetch())
    new, old = _answers(client, monkeypatch, req)
    assert new == old and new[0] == 200
    assert "medications" in spy["keys"] and spy["facts"] == 2


def test_only_the_keys_the_call_needs_are_decoded(client, spy):
    """An ACE inhibitor only asks whether a thiopurine is active: no labs, no genotype decoded."""
    req = hook_request(orders=[_order(None, "lisinopril")], pre=_rich_prefetch())
    assert client.post(SIGN, json=req).status_code == 200
    assert "medications" in spy["keys"]
    assert not {"labs", "pgx", "weight"} & set(spy["keys"])


def test_no_selection_and_a_selection_without_the_thiopurine(client, monkeypatch, spy):
    url = "/cds-services/thiopurine-order-select"
    orders = [med_request(id="mr-aza"), _order("723", "", id="mr-amox")]
    for selections in ([], ["MedicationRequest/mr-amox"], ["MedicationRequest/mr-amox/_history/2"]):
        req = hook_request("order-select", orders=orders, pre=_rich_prefetch(), selections=selections)
        new, old = _answers(client, monkeypatch, req, url)
        assert new == old == (200, {"cards": []})
    assert spy["keys"] == [] and spy["facts"] == 0
    req = hook_request("order-select", orders=orders, pre=_rich_prefetch(), selections=["MedicationRequest/mr-aza"])
    new, old = _answers(client, monkeypatch, req, url)
    assert new == old and new[0] == 200 and spy["keys"] and spy["facts"] == 2


def test_medication_prescribe_reads_context_medications(client, monkeypatch, spy):
    url = "/cds-services/thiopurine-medication-prescribe"
    req = hook_request("medication-prescribe", orders=[_order("723", "")], pre=_rich_prefetch())
    new, old = _answers(client, monkeypatch, req, url)
    assert new == old == (200, {"cards": []}) and spy["keys"] == []
    req = hook_request("medication-prescribe", orders=[med_request()], pre=_rich_prefetch())
    new, old = _answers(client, monkeypatch, req, url)
    assert new == old and new[0] == 200 and spy["keys"] and spy["facts"] == 2


def test_draft_orders_as_a_bare_list(client, monkeypatch, spy):
    """Old clients send draftOrders as a list of resources (or of entries)."""
    for order, facts in ((_order("723", ""), 0), (med_request(), 4)):
        for shape in ([copy.deepcopy(order)], [{"resource": copy.deepcopy(order)}]):
            req = hook_request(orders=[order], pre=_rich_prefetch())
            req["context"]["draftOrders"] = shape
            new, old = _answers(client, monkeypatch, req)
            assert new == old and new[0] == 200
        assert spy["facts"] == facts  # both shapes, each through both readers


def _referencing(ref: str) -> dict:
    r = med_request(id="mr-ref")
    del r["medicationCodeableConcept"]
    r["medicationReference"] = {"reference": ref}
    return r


def test_an_unidentified_medication_reference_keeps_its_card(client, monkeypatch):
    req = hook_request(orders=[_referencing("Medication/nowhere")], pre=_rich_prefetch())
    new, old = _answers(client, monkeypatch, req)
    assert new == old and new[0] == 200
    assert [c["source"]["topic"]["code"] for c in new[1]["cards"]] == ["data-incomplete"]
    assert "Medication/nowhere" in str(new[1])


def test_a_medication_reference_is_resolved_from_the_prefetch(client, monkeypatch, spy):
    """A draft naming its drug by a Medication sent in the prefetch: the prefetch is read to find it."""
    pre = _rich_prefetch()
    aza = {"resourceType": "Medication", "id": "med-aza",
           "code": {"coding": [{"system": RXNORM, "code": "197388", "display": "azathioprine 50 MG Oral Tablet"}]}}
    pre["medications"]["entry"].append({"resource": aza, "search": {"mode": "include"}})
    req = hook_request(orders=[_referencing("Medication/med-aza")], pre=pre)
    new, old = _answers(client, monkeypatch, req)
    assert new == old and new[0] == 200
    assert spy["keys"] and spy["facts"] == 2
    assert "Medication/med-aza" not in str(new[1])  # recognised: not an unidentified reference


def test_a_contained_medication_needs_no_prefetch(client, spy):
    r = med_request(id="mr-amox")
    del r["medicationCodeableConcept"]
    r["contained"] = [{"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RXNORM, "code": "723"}]}}]
    r["medicationReference"] = {"reference": "#m1"}
    resp = client.post(SIGN, json=hook_request(orders=[r], pre=_rich_prefetch()))
    assert resp.get_json() == {"cards": []}
    assert spy["keys"] == []


def test_no_prefetch_and_an_empty_one(client, monkeypatch):
    pre: dict | None
    for pre in (None, {}):
        req = hook_request(orders=[_order("723", "")], pre=pre)
        new, old = _answers(client, monkeypatch, req)
        assert new == old == (200, {"cards": []})
    req = hook_request(orders=[med_request()], pre={"patient": None, "medications": bundle()})
    new, old = _answers(client, monkeypatch, req)
    assert new == old
