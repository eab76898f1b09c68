"""Bounded work per call (issue 18 R4): a cap on draft orders (400 above it), work linear in the
record (counted, never timed), and an answer whose cards are merged above a count, never dropped."""
from __future__ import annotations

import pytest

import fhir_mappers.build as fhir_build
import rules.monitoring as monitoring
from hooks.bounds import MAX_CARDS, MAX_DRAFT_ORDERS, merge_cards
from tests.builders import bundle, hook_request, med_request, prefetch
from tests.conftest import assert_valid_response, rule_ids


@pytest.fixture
def client():
    from service import create_app

    return create_app({"auth_required": False, "database_url": "sqlite://"}).test_client()


def _drafts(n: int, mg: float = 100) -> list[dict]:
    return [med_request(id=f"d{i}", daily_mg=mg) for i in range(n)]


def test_more_draft_orders_than_the_cap_get_a_400_naming_the_field(client):
    resp = client.post("/cds-services/thiopurine-order-sign", json=hook_request(orders=_drafts(MAX_DRAFT_ORDERS + 1),
                                                                                 pre=prefetch()))
    assert resp.status_code == 400
    issue = resp.get_json()["issue"][0]
    assert issue["expression"] == ["context.draftOrders"]
    assert str(MAX_DRAFT_ORDERS) in issue["diagnostics"] and str(MAX_DRAFT_ORDERS + 1) in issue["diagnostics"]


def test_at_the_cap_every_order_is_answered_in_merged_cards(client):
    resp = client.post("/cds-services/thiopurine-order-sign", json=hook_request(orders=_drafts(MAX_DRAFT_ORDERS, 600),
                                                                                 pre=prefetch()))
    assert resp.status_code == 200
    body = resp.get_json()
    assert_valid_response(body)
    cards = body["cards"]
    assert len(cards) <= MAX_CARDS
    assert "dose-above-range" in rule_ids(cards)
    merged = next(c for c in cards if c["source"]["topic"]["code"] == "dose-above-range")
    assert merged["extension"]["azathioprine-cds"]["mergedCards"] == MAX_DRAFT_ORDERS
    assert merged["detail"].count("\n- ") >= MAX_DRAFT_ORDERS - 1  # one line per order: merged, none dropped
    # round-14 H1: a new start above the maximum is brought to the start dose (1 mg/kg/day of 70 kg), not the maximum
    assert "start at 75 mg/day" in merged["detail"] and len(merged["summary"]) < 140
    assert len(resp.get_data()) < 256 * 1024


def test_a_few_cards_are_left_as_they_are():
    cards = [{"uuid": str(i), "summary": "s", "indicator": "warning", "source": {"topic": {"code": "r"}}} for i in range(3)]
    assert merge_cards(cards) is cards
    many = cards * 10
    merged = merge_cards(many)
    assert len(merged) == 1 and merged[0]["extension"]["azathioprine-cds"]["mergedCards"] == 30


def _counted_work(client, monkeypatch, n: int) -> int:
    """Calls that pair an order with earlier orders (history entries judged, active starts read) for
    20 draft orders beside ``n`` active and ``n`` stopped orders of the same drug."""
    calls = [0]
    real_q, real_start = fhir_build._HistoryIndex._qualifies, monitoring._start

    def qualifies(self, i, order):
        calls[0] += 1
        return real_q(self, i, order)

    def start(m):
        calls[0] += 1
        return real_start(m)

    monkeypatch.setattr(fhir_build._HistoryIndex, "_qualifies", qualifies)
    monkeypatch.setattr(monitoring, "_start", start)
    pre = prefetch(meds=[med_request(id=f"a{i}", status="active", authored="2026-01-01") for i in range(n)])
    pre["past_medications"] = bundle(*[med_request(id=f"s{i}", status="completed", authored="2025-01-01")
                                       for i in range(n)])
    resp = client.post("/cds-services/thiopurine-order-sign", json=hook_request(orders=_drafts(20), pre=pre))
    assert resp.status_code == 200
    monkeypatch.setattr(fhir_build._HistoryIndex, "_qualifies", real_q)
    monkeypatch.setattr(monitoring, "_start", real_start)
    return calls[0]


def test_pairing_orders_with_earlier_orders_is_linear(client, monkeypatch):
    small, large = _counted_work(client, monkeypatch, 100), _counted_work(client, monkeypatch, 400)
    assert small > 0
    assert large <= 4.5 * small, (small, large)  # quadratic would be ~16x


def test_the_history_index_names_the_same_evidence_as_a_full_scan():
    from datetime import date

    from fhir_mappers.facts import MedicationFact

    history: list[tuple[frozenset[str], str, str, date | None]] = [(frozenset({"azathioprine"}), f"MedicationRequest/h{i}", f"earlier order h{i}", date(2020 + i % 6, 1, 1))
               for i in range(12)] + [(frozenset({"azathioprine"}), "", "dispensed", None)]
    order = MedicationFact(ref="MedicationRequest/h3", display="aza", ingredients=frozenset({"azathioprine"}),
                           status="draft", is_draft=True, authored_on=date(2022, 6, 1))
    fact = fhir_build._with_history(order, history)
    assert fact.prior_therapy is not None
    assert fact.prior_therapy.since == date(2020, 1, 1)
    # the first three that are not the order itself and not dated after it, in history order
    assert fact.prior_therapy.evidence == "earlier order h0; earlier order h1; earlier order h2"
