"""Round-2 audit fixes, slice fix-labs2 (cases: tests/data/review2/README.md).

H4: haemoglobin < 80 g/L (8.0 g/dL, CTCAE v5 grade 3) or flagged LL is severe cytopenia.
M2: leukaemia maintenance (ALL/AML): no BSR DMARD thresholds; neutrophils/WBC severe at CTCAE grade 4.
M5: the CBC-due card quotes the last CBC when it was abnormal.
m2: one card per problem: the severe card supersedes the BSR withhold card about the same CBC.
M3: a "pregnant" status older than 42 weeks (ACOG post-term) produces no pregnancy card.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from service import create_app
from tests.builders import SERVICE

CASES = Path(__file__).resolve().parent / "data" / "review2"


@pytest.fixture(scope="module")
def client():
    """The service as the reviewer ran it: evaluated as of 2026-12-07, CPIC."""
    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-12-07"})
    return app.test_client()


def _load(name: str) -> dict:
    req = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    assert req.pop("_profile", "cpic") == "cpic"
    req.pop("_review")
    return req


def _post(client, req: dict) -> list[dict]:
    resp = client.post(f"/cds-services/{SERVICE[req['hook']]}", json=req)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def _rules(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _set_lab(req: dict, loinc: str, value: float | None = None, interpretation: str | None = None,
             date: str | None = None) -> dict:
    req = copy.deepcopy(req)
    for bundle in req["prefetch"].values():
        for e in (bundle or {}).get("entry", []) if isinstance(bundle, dict) else []:
            res = e["resource"]
            if res["resourceType"] == "Observation" and any(c.get("code") == loinc for c in res["code"]["coding"]):
                if value is not None:
                    res["valueQuantity"]["value"] = value
                if interpretation is not None:
                    res["interpretation"] = [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": interpretation}]}]
                if date is not None:
                    res["effectiveDateTime"] = date
    return req


# --- H4 -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shown", [("hb-6-8-gdl-LL-only-abnormal", "haemoglobin 68 g/L"),
                                         ("hb-7-1-gdl-normal-mcv-no-other-flag", "haemoglobin 71 g/L")])
def test_severe_anaemia_is_a_severe_cytopenia_card(client, name, shown):
    cards = _post(client, _load(name))
    severe = [c for c in cards if c["source"]["topic"]["code"] == "cytopenia-severe"]
    assert len(severe) == 1
    assert severe[0]["indicator"] == "critical"
    assert shown in severe[0]["summary"]
    assert "pure red cell aplasia" in severe[0]["detail"]


def test_macrocytosis_keeps_its_own_card_beside_severe_anaemia(client):
    rules = _rules(_post(client, _load("hb-6-8-gdl-LL-only-abnormal")))
    assert "cytopenia" in rules  # MCV 112: check B12/folate, a problem of its own


@pytest.mark.parametrize("value, severe", [(7.9, True), (8.0, False), (9.5, False)])
def test_haemoglobin_threshold_is_8_g_dl_without_a_flag(client, value, severe):
    req = _set_lab(_load("hb-7-1-gdl-normal-mcv-no-other-flag"), "718-7", value=value, interpretation="L")
    assert ("cytopenia-severe" in _rules(_post(client, req))) is severe


def test_haemoglobin_flagged_critical_low_is_severe_above_the_threshold(client):
    req = _set_lab(_load("hb-7-1-gdl-normal-mcv-no-other-flag"), "718-7", value=8.4, interpretation="LL")
    assert "cytopenia-severe" in _rules(_post(client, req))


# --- M2 -----------------------------------------------------------------------------------------------------------

def test_leukaemia_maintenance_counts_in_target_get_no_bsr_card(client):
    rules = _rules(_post(client, _load("all-mp-titrated-100mgm2-established-maintenance")))
    assert "cytopenia" not in rules and "cytopenia-severe" not in rules


def test_leukaemia_anc_grade_3_is_the_titration_target_not_severe(client):
    req = _set_lab(_load("all-mp-titrated-100mgm2-established-maintenance"), "751-8", value=0.7)
    rules = _rules(_post(client, req))
    assert "cytopenia" not in rules and "cytopenia-severe" not in rules


@pytest.mark.parametrize("loinc, value", [("751-8", 0.4), ("777-3", 40), ("6690-2", 0.9)])
def test_leukaemia_keeps_the_severe_card_at_grade_4_or_low_platelets(client, loinc, value):
    req = _set_lab(_load("all-mp-titrated-100mgm2-established-maintenance"), loinc, value=value)
    assert "cytopenia-severe" in _rules(_post(client, req))


# --- m2 -----------------------------------------------------------------------------------------------------------

def test_one_card_for_one_cbc_when_severe(client):
    rules = _rules(_post(client, _load("anc-800-per-mm3-crohn")))
    assert rules.count("cytopenia-severe") == 1
    assert "cytopenia" not in rules  # WBC 2.6 (BSR withhold) is superseded by the stop


def test_bsr_card_still_fires_without_a_severe_value(client):
    req = _set_lab(_load("anc-800-per-mm3-crohn"), "751-8", value=1300)  # /mm3: 1.3 x10^9/L, WBC 2.6 stays
    rules = _rules(_post(client, req))
    assert "cytopenia-severe" not in rules and "cytopenia" in rules


# --- M5 -----------------------------------------------------------------------------------------------------------

def test_cbc_due_card_quotes_the_last_abnormal_cbc(client):
    cards = _post(client, _load("old-severe-neutropenia-110-days-no-newer"))
    due = [c for c in cards if c["source"]["topic"]["code"] == "monitoring-cbc-due"]
    assert len(due) == 1
    assert "last CBC 2026-08-19: neutrophils 0.7 (severe)" in due[0]["summary"]
    assert "do not renew azathioprine before a new CBC" in due[0]["detail"]


def test_cbc_due_card_with_a_normal_last_cbc_quotes_no_result(client):
    req = _set_lab(_load("old-severe-neutropenia-110-days-no-newer"), "751-8", value=3.5, interpretation="N")
    req = _set_lab(req, "6690-2", value=6.0, interpretation="N")
    due = [c for c in _post(client, req) if c["source"]["topic"]["code"] == "monitoring-cbc-due"]
    assert len(due) == 1
    assert "neutrophils" not in due[0]["summary"] and "Last result abnormal" not in due[0]["detail"]


# --- M3 -----------------------------------------------------------------------------------------------------------

def test_pregnancy_status_older_than_42_weeks_gives_no_pregnancy_card(client):
    assert "pregnancy" not in _rules(_post(client, _load("pregnancy-status-stale-14-months-postpartum")))


def test_pregnancy_status_within_42_weeks_still_gives_the_card(client):
    req = _set_lab(_load("pregnancy-status-stale-14-months-postpartum"), "82810-3", date="2026-06-01")
    assert "pregnancy" in _rules(_post(client, req))
