"""The SMART app's service side: the cards' smart links, the queries, the picture endpoint (the
same pipeline as a hook call) and its 4xx answers. The browser flow is tests/test_smart_browser.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import create_app
from tests.conftest import assert_valid_response

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = json.loads((ROOT / "examples" / "lupus-nephritis-tpmt-im-allopurinol.json").read_text(encoding="utf-8"))
SERVICE = {"order-select": "thiopurine-order-select", "order-sign": "thiopurine-order-sign"}[HEADLINE["hook"]]


@pytest.fixture
def client():
    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-11-23"})
    return app.test_client()


def _cards(client) -> list[dict]:
    resp = client.post(f"/cds-services/{SERVICE}", json=HEADLINE)
    assert resp.status_code == 200
    assert_valid_response(resp.get_json())
    return resp.get_json()["cards"]


def test_every_card_links_the_app_with_the_order_and_its_findings(client):
    cards = _cards(client)
    assert len(cards) >= 2
    for c in cards:
        smart = [link for link in c["links"] if link["type"] == "smart"]
        assert len(smart) == 1 and smart[0]["url"] == "http://localhost/smart/launch"
        context = json.loads(smart[0]["appContext"])
        assert context["findings"] == [c["source"]["topic"]["code"]]
        assert context["patient"] == HEADLINE["context"]["patientId"]
        assert context["order"] == "MedicationRequest/" + context["draftOrders"][0]["id"]


def test_the_picture_has_the_same_cards_and_the_values_they_used(client):
    cards = _cards(client)
    context = json.loads(cards[0]["links"][-1]["appContext"])
    resp = client.post("/smart/api/picture", json={"patientId": context["patient"], "prefetch": HEADLINE["prefetch"],
                                                   "appContext": context})
    assert resp.status_code == 200
    body = resp.get_json()
    assert [c["summary"] for c in body["cards"]] == [c["summary"] for c in cards]
    assert body["named"] == context["findings"]
    pic = body["picture"]
    tpmt = next(g for g in pic["genes"] if g["gene"] == "TPMT")
    assert tpmt["phenotype"] == "Intermediate Metabolizer" and tpmt["results"][0]["kind"] == "diplotype"
    draft = next(d for d in pic["doses"] if d["draft"])
    assert draft["mg_per_kg_day"] == round(draft["mg_per_day"] / draft["weight_kg"], 2)
    assert draft["max_mg_per_kg_day"] is not None
    assert {t["value"] for t in pic["labs"]["lymphocytes"]["thresholds"]} == {0.5}
    assert any("allopurinol" in m["ingredients"] for m in pic["interacting"])


def test_the_queries_are_the_services_prefetch_for_this_patient(client):
    q = client.get("/smart/api/queries?patient=abc").get_json()["queries"]
    assert q["patient"] == "Patient/abc"
    assert q["pgx"].startswith("Observation?patient=abc&code=")
    assert client.get("/smart/api/queries").status_code == 400


@pytest.mark.parametrize("body, field", [
    ({"prefetch": {}}, "patientId"),
    ({"patientId": "p1", "prefetch": []}, "prefetch"),
    ({"patientId": "p1", "prefetch": {}, "appContext": {"draftOrders": [17]}}, "appContext.draftOrders"),
])
def test_bad_picture_requests_are_4xx_with_an_operation_outcome(client, body, field):
    resp = client.post("/smart/api/picture", json=body)
    assert resp.status_code == 400
    outcome = resp.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert field in json.dumps(outcome)


def test_pages_and_libraries_are_served(client):
    assert b"launch.js" in client.get("/smart/launch").data
    assert b"app.js" in client.get("/smart/").data
    assert client.get("/smart/vendor/nope.js").status_code == 404
    resp = client.get("/smart/vendor/fhir-client.js")
    assert resp.status_code == 200 and resp.mimetype == "text/javascript"


def test_the_picture_gives_the_monitoring_windows_the_cbc_card_uses(client):
    """A new start is in the weekly phase on the card; the app's "next due" must say the same, not 90 days."""
    cards = _cards(client)  # the headline order is a new start: the CBC is weekly (last 2026-11-20, so due 11-27)
    context = json.loads(cards[0]["links"][-1]["appContext"])
    resp = client.post("/smart/api/picture", json={"patientId": context["patient"], "prefetch": HEADLINE["prefetch"],
                                                   "appContext": context})
    monitoring = resp.get_json()["picture"]["monitoring"]
    assert monitoring["phase"] == "new_start"
    assert monitoring["cbc"]["window_days"] == 7 and monitoring["liver"]["window_days"] == 14
    assert monitoring["cbc"]["last"] == "2026-11-20" and monitoring["cbc"]["due"] == "2026-11-27"
