from __future__ import annotations

import pytest

from service import create_app
from service.validation import first_error
from tests.builders import SERVICE

pytest_plugins = ["tests.postgres"]  # backend_url: every storage test on SQLite and on PostgreSQL


@pytest.fixture
def app():
    return create_app({"auth_required": False, "fhir_deadline": 1.0, "database_url": "sqlite:///:memory:"})


@pytest.fixture
def client(app):
    return app.test_client()


def assert_valid_response(body: dict) -> None:
    """CDS Hooks 2.0 ServiceResponse schema, plus what this service promises on every card."""
    problem = first_error("ServiceResponse", body)
    assert problem is None, problem
    from fhir.resources.R4B import get_fhir_model_class

    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert card["uuid"] and card["source"]["label"]
        assert card["source"]["topic"]["code"], "every card names its rule"
        assert card.get("detail")
        if card.get("suggestions"):
            assert card["selectionBehavior"] in ("at-most-one", "any")
            for s in card["suggestions"]:
                assert s["uuid"] and s["label"]
                for a in s.get("actions", []):
                    if a["type"] in ("create", "update"):
                        # suggested resources must be valid FHIR R4 (R4B models accept R4 here)
                        get_fhir_model_class(a["resource"]["resourceType"]).model_validate(a["resource"])
                    else:
                        assert a["resourceId"]
        if card["indicator"] != "info":
            assert card["overrideReasons"]


@pytest.fixture
def call(client):
    """POST a hook request to its service; assert 200 and a valid body; return the cards."""

    def _call(req: dict, service: str | None = None, status: int = 200):
        resp = client.post(f"/cds-services/{service or SERVICE[req['hook']]}", json=req)
        assert resp.status_code == status, resp.get_data(as_text=True)
        body = resp.get_json()
        if status == 200:
            assert_valid_response(body)
            return body["cards"]
        return body

    return _call


def rule_ids(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def summary_of(finding) -> str:
    from hooks.wording import render

    return render(finding).summary


def detail_of(finding) -> str:
    from hooks.wording import render

    return render(finding).detail


def indicator_of(finding) -> str:
    from rules.catalogue import indicator_of as _indicator_of

    return _indicator_of(finding)
