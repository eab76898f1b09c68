"""Work per call is bounded: linear in the input, and capped per prefetch key with a card saying so.

No timings: the interaction check's work is counted (calls of its live-vaccine test, made per
candidate pair), and the cap is
checked by what the cards say.
"""
from __future__ import annotations

import pytest

import rules.interactions as interactions
from tests.builders import hook_request, med_request, prefetch
from tests.conftest import rule_ids


def _many_orders(n: int) -> dict:
    meds = [med_request("197388", "azathioprine 50 MG Oral Tablet", id=f"aza-{i}", status="active") for i in range(n)]
    meds += [med_request("519", "allopurinol", id=f"allo-{i}", status="active", daily_mg=300) for i in range(n)]
    return hook_request(pre=prefetch(meds=meds))


def _work(client, monkeypatch, n: int) -> int:
    calls = [0]
    real = interactions._live

    def counted(m):
        calls[0] += 1
        return real(m)

    monkeypatch.setattr(interactions, "_live", counted)
    resp = client.post("/cds-services/thiopurine-order-sign", json=_many_orders(n))
    assert resp.status_code == 200
    monkeypatch.setattr(interactions, "_live", real)
    return calls[0]


def test_interaction_work_is_linear_in_active_orders(client, monkeypatch):
    small, large = _work(client, monkeypatch, 100), _work(client, monkeypatch, 400)
    assert large <= 4.5 * small, (small, large)  # quadratic would be ~16x


@pytest.mark.parametrize("key", ["medications", "labs", "conditions"])
def test_a_prefetch_key_over_the_cap_is_truncated_and_said_so(key):
    from service import create_app

    client = create_app({"auth_required": False, "database_url": "sqlite://", "max_entries_per_key": 50}).test_client()
    pre = prefetch()
    filler = {"medications": lambda i: med_request("197388", "azathioprine", id=f"a{i}", status="active"),
              "labs": lambda i: {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                                 "code": {"text": "x"}},
              "conditions": lambda i: {"resourceType": "Condition", "id": f"c{i}", "code": {"text": "x"}}}[key]
    pre[key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": filler(i)} for i in range(51)]}
    resp = client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=pre))
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    assert "record-truncated" in rule_ids(cards)  # its own catalogue entry, never merged away
    text = "\n".join(c["detail"] for c in cards)
    assert "truncated" in text and "51 entries" in text


def test_under_the_cap_nothing_is_said(client):
    cards = client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch())).get_json()["cards"]
    assert "truncated" not in "\n".join(c["detail"] for c in cards)


def _vaccine_timing_work(monkeypatch, n: int) -> int:
    """Calls of the thiopurine and live-vaccine tests made by the live-vaccine timing check, with ``n``
    live-vaccine orders, ``n`` thiopurines stopped long ago, ``n`` thiopurine orders and ``n`` old vaccines."""
    from tests import test_cards_catalogue as tc
    from tests.builders import days_ago

    vaccines = [dict(tc._vaccine("03"), id=f"vac-{i}") for i in range(n)]
    stopped = [med_request(id=f"st-{i}", status="stopped", daily_mg=100, authored=days_ago(900)) for i in range(n)]
    old = [{"resourceType": "Immunization", "id": f"im-{i}", "status": "completed", "occurrenceDateTime": days_ago(400),
            "vaccineCode": {"coding": [{"system": tc.CVX, "code": "21"}]}} for i in range(n)]
    orders = [med_request(id=f"aza-{i}", daily_mg=100) for i in range(n)]
    calls = [0]
    real_live, real_tp = interactions._live, interactions.thiopurine_of

    def live(m):
        calls[0] += 1
        return real_live(m)

    def tp(m):
        calls[0] += 1
        return real_tp(m)

    for order_set in (vaccines, orders):
        facts = tc.facts_for(order_set, past_meds=stopped, immunizations=old)
        monkeypatch.setattr(interactions, "_live", live)
        monkeypatch.setattr(interactions, "thiopurine_of", tp)
        interactions.vaccine_timing_findings(facts)
        monkeypatch.setattr(interactions, "_live", real_live)
        monkeypatch.setattr(interactions, "thiopurine_of", real_tp)
    return calls[0]


def test_live_vaccine_timing_work_is_linear(monkeypatch):
    small, large = _vaccine_timing_work(monkeypatch, 50), _vaccine_timing_work(monkeypatch, 200)
    assert large <= 4.5 * small, (small, large)  # quadratic would be ~16x
