"""Plausibility at the boundary (issue 18 R3): a body height that cannot be a height never reaches
the body-surface-area formula (``math.sqrt``); the card says which height was not used.

Height plausibility is a rule (``rules/knowledge/dosing.toml`` ``height_plausible_cm``, the same kind
of data-quality limit as ``weight_plausible_kg``); the mapper reads the value as sent.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from tests.conftest import assert_valid_response

ROOT = Path(__file__).resolve().parent.parent
ONCOLOGY = json.loads((ROOT / "examples" / "oncology-mercaptopurine-poor-metabolizer.json").read_text())


@pytest.fixture
def client():
    from service import create_app

    return create_app({"auth_required": False, "database_url": "sqlite://", "evaluation_date": "2026-11-23"}).test_client()


@pytest.fixture
def today_client():
    """For requests built with tests.builders (dates relative to the real today): evaluated on that day, so no
    result is dated after the evaluation day (round-14 H2 sets such results aside)."""
    from service import create_app
    from tests.builders import TODAY

    return create_app({"auth_required": False, "database_url": "sqlite://",
                       "evaluation_date": TODAY.isoformat()}).test_client()


def _with_height(value, unit="cm") -> dict:
    req = copy.deepcopy(ONCOLOGY)
    q = req["prefetch"]["height"]["entry"][0]["resource"]["valueQuantity"]
    q.update(value=value, unit=unit, code=unit)
    return req


@pytest.mark.parametrize("cm", [-170, 0, 1e-9, 5000, 1e308, -1e308])
def test_an_implausible_height_is_never_a_body_surface_area(client, monkeypatch, cm):
    roots: list[float] = []
    real = math.sqrt

    def sqrt(x: float) -> float:
        roots.append(x)
        return real(x)

    monkeypatch.setattr(math, "sqrt", sqrt)
    resp = client.post("/cds-services/thiopurine-order-sign", json=_with_height(cm))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert_valid_response(body)
    assert all(r > 0 and math.isfinite(r) for r in roots), roots  # nothing negative or infinite reached sqrt
    cards = [c for c in body["cards"] if c["source"]["topic"]["code"] == "height-missing"]
    assert cards, [c["source"]["topic"]["code"] for c in body["cards"]]
    text = cards[0]["summary"] + cards[0]["detail"]
    assert "implausible" in text or "recording error" in text, text
    assert "m² not checked" in text or "could not be checked" in text or "**not** checked" in text


def test_a_plausible_height_is_used(client):
    body = client.post("/cds-services/thiopurine-order-sign", json=_with_height(1.35, "m")).get_json()
    assert "height-missing" not in [c["source"]["topic"]["code"] for c in body["cards"]]


def test_the_limits_are_knowledge_data_with_a_source():
    from rules.knowledge_base import load

    general = load().dosing.general
    low, high = general.height_plausible_cm
    assert 0 < low < 50 and 250 < high < 300
    assert general.height_plausible_source in load().sources


@pytest.mark.parametrize("loinc, value, unit", [("6690-2", -5, "10*9/L"), ("751-8", -1, "10*9/L"),
                                                ("777-3", -100, "10*9/L"), ("1742-6", -40, "U/L"),
                                                ("6690-2", 1e9, "10*9/L")])
def test_a_lab_value_no_patient_can_have_is_quoted_not_read(today_client, loinc, value, unit):
    """A negative white cell count is not severe cytopenia and an ALT of -40 U/L is not normal: the value
    is not used and the data-incomplete card quotes it (monitoring.toml [plausible])."""
    from tests.builders import hook_request, lab, normal_labs, prefetch

    labs = [x for x in normal_labs() if x["code"]["coding"][0]["code"] != loinc] + [lab(loinc, value, unit, id="odd")]
    body = today_client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch(labs=labs))).get_json()
    assert_valid_response(body)
    codes = [c["source"]["topic"]["code"] for c in body["cards"]]
    assert "cytopenia-severe" not in codes and "data-incomplete" in codes, codes
    detail = next(c["detail"] for c in body["cards"] if c["source"]["topic"]["code"] == "data-incomplete")
    assert f"{value:g} {unit}" in detail and "not a plausible value" in detail


def test_a_plausible_lab_value_is_used(today_client):
    from tests.builders import hook_request, lab, normal_labs, prefetch

    labs = [x for x in normal_labs() if x["code"]["coding"][0]["code"] != "751-8"] + [lab("751-8", 0.3, "10*9/L", id="low")]
    body = today_client.post("/cds-services/thiopurine-order-sign", json=hook_request(pre=prefetch(labs=labs))).get_json()
    assert "cytopenia-severe" in [c["source"]["topic"]["code"] for c in body["cards"]]
