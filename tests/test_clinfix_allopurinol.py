"""Round-4 review, H8 and m4 (slice clinfix). H8: allopurinol newly ordered for a patient on an established
azathioprine dose inside 25-33 % of the weight-based usual dose was "already reduced"; the dose taken was not
reduced for it (no xanthine-oxidase inhibitor before, the azathioprine order written earlier): one-third to
one-quarter of the dose taken (Imuran label, Drug Interactions; BSG 2019), critical. The "already follows"
answer stays where it is right (tests/test_converge_*). Cases: tests/data/review4/clinfix/ (README)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from service.cli import main

CASES = Path(__file__).parent / "data" / "review4" / "clinfix"
P37 = "p37-allopurinol-draft-aza-already-reduced-active"
O33 = "o33-6mp-abbrev-draft-allopurinol-active"


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def resource(request: dict, rid: str) -> dict:
    for value in [request["context"]["draftOrders"], *request["prefetch"].values()]:
        for e in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            if e["resource"].get("id") == rid:
                return e["resource"]
    raise KeyError(rid)


def test_p37_allopurinol_new_on_an_established_50_mg_reduces_the_dose_taken(monkeypatch, capsys, tmp_path):
    c = card(run(load(P37), monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "critical"
    # 50 mg/day taken (78 kg: usual 156, band 39-52): one-quarter to one-third of 50 = 12.5-16.7 mg/day
    assert "reduce the active azathioprine order to 25 mg every other day" in c["summary"]
    assert "exact range 12.5-16.7 mg/day" in c["detail"] and "average 12.5 mg/day" in c["detail"]
    assert "already follows" not in c["detail"] and "within the reduced range" not in c["summary"]
    # the thiopurine is the active medication, the allopurinol what is being ordered
    assert "Azathioprine is active; allopurinol is ordered now" in c["detail"]
    assert "Azathioprine is the active medication and allopurinol the new order" in c["detail"]
    assert "the 50 mg/day ordered" not in c["summary"] + c["detail"]


def test_p37_once_the_active_order_is_rewritten_today_it_is_not_cut_again(monkeypatch, capsys, tmp_path):
    """The advice followed: the azathioprine order rewritten today at 25 mg alternate days (12.5 mg/day), then the
    allopurinol signed again: one order, one answer."""
    request = load(P37)
    aza = resource(request, "aza-active")
    aza["authoredOn"] = "2026-12-07"
    aza["dosageInstruction"] = [{"timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}},
                                 "doseAndRate": [{"doseQuantity": {"value": 25, "unit": "mg", "code": "mg",
                                                                   "system": "http://unitsofmeasure.org"}}]}]
    c = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "info" and "below the reduced range" in c["summary"]
    assert "reduce the active" not in c["summary"]


def test_p37_allopurinol_already_active_and_renewed_is_not_new(monkeypatch, capsys, tmp_path):
    """An allopurinol already taken with the azathioprine (an active order beside the new draft): the 50 mg is
    inside the band from the usual dose, reduced for it already: not cut (the earlier behaviour)."""
    request = load(P37)
    old = copy.deepcopy(resource(request, "d1"))
    old.update(id="allo-active", status="active", authoredOn="2025-06-01")
    request["prefetch"]["medications"]["entry"].append({"resource": old})
    c = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "info" and "within the reduced range" in c["summary"]


def test_thiopurine_draft_with_allopurinol_active_already_follows(monkeypatch, capsys, tmp_path):
    """The converse (tests/test_converge_*): azathioprine 50 mg is the draft being signed, allopurinol active:
    inside 25-33 % of the usual dose, the order follows the advice and is not cut again."""
    request = load(P37)
    allo = resource(request, "d1")
    aza = resource(request, "aza-active")
    request["context"]["draftOrders"]["entry"] = [{"resource": {**aza, "id": "d-aza", "status": "draft",
                                                                "authoredOn": "2026-12-07"}}]
    request["prefetch"]["medications"]["entry"] = [{"resource": {**allo, "id": "allo-active", "status": "active",
                                                                 "authoredOn": "2025-06-01"}}]
    c = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "info" and "within the reduced range" in c["summary"]


def test_o33_m4_mercaptopurine_tablets_with_allopurinol_left_as_it_is(monkeypatch, capsys, tmp_path):
    """m4 not changed: 25 mg (half a tablet) is 24 % of the usual 105 mg/day at 70 kg, under the label's
    one-quarter, so the suggestion stays inside 26-35 mg/day (the oral suspension); an order written at 25 mg is
    accepted, not cut (docs/dose-advice.md)."""
    request = load(O33)
    c = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "critical" and "35 mg/day" in c["summary"]
    resource(request, "d1")["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 25
    c = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert c["indicator"] == "info" and "below the reduced range" in c["summary"]
