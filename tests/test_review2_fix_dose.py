"""Value tests for audit round 2, slice fix-dose: H5 (allopurinol newly ordered for a patient on a thiopurine
below the usual dose), M4 (aminosalicylate + thiopurine: a routine IBD combination), m1 ("75-75 %").
Cases are copies in tests/data/review2/ (provenance: tests/data/review2/README.md)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from rules.doseplan import combine, current_basis
from rules.findings import DoseLimit
from service.cli import main

CASES = Path(__file__).parent / "data" / "review2"

@pytest.fixture
def maintenance_basis(monkeypatch):
    """Round-15 M1 gives a new start the label's starting dose as its basis; the tests using this fixture pin the maintenance-basis
    mechanics (as for established therapy) on a simple new order: the new-start basis is tested in
    tests/test_round15_start.py and tests/test_cards_catalogue.py (headline case)."""
    import rules.context
    monkeypatch.setattr(rules.context, "_with_start_basis", lambda facts, order, drug, basis: basis)



def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "dpwg" if request.get("_profile") == "dpwg" else "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def med_requests(request):
    for value in request["prefetch"].values():
        for e in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            if e["resource"]["resourceType"] == "MedicationRequest":
                yield e["resource"]


# ------------------------------------------------------------------------------------------------ H5
def test_h5_allopurinol_new_on_aza_100_reduces_the_dose_taken(monkeypatch, capsys, tmp_path):
    cards = run(load("ltx-allopurinol-draft-on-aza-100"), monkeypatch, capsys, tmp_path)
    xoi = card(cards, "interaction-xanthine-oxidase")
    # 100 mg/day taken (1.28 mg/kg, 78 kg: usual 156): one-quarter to one-third of 100 = 25-33.3, not of 156
    assert "reduce the active azathioprine order to 25 mg/day" in xoi["summary"]
    assert "exact range 25-33.3 mg/day" in xoi["detail"]
    assert "of the 100 mg/day the patient takes" in xoi["detail"] and "of the dose taken" in xoi["detail"]
    assert "50 mg" not in xoi["summary"] + xoi["detail"]


def test_h5_after_following_the_advice_no_new_cut(monkeypatch, capsys, tmp_path):
    request = load("ltx-allopurinol-draft-on-aza-100")
    active = next(r for r in med_requests(request) if r["id"] == "aza-active")
    active["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 25
    # the advice followed: the active order rewritten today (round-4 H8: an order written before the allopurinol
    # order, at 25 mg since 2024, was not reduced for it and would be cut: tests/test_clinfix_allopurinol.py)
    active["authoredOn"] = "2026-12-07"
    cards = run(request, monkeypatch, capsys, tmp_path)
    xoi = card(cards, "interaction-xanthine-oxidase")
    assert xoi["indicator"] == "info" and "reduce the" not in xoi["summary"].lower()
    assert "the 25 mg/day ordered is below the reduced range" in xoi["summary"]


@pytest.mark.parametrize("taken", [150, 75])
def test_h5_basis_is_min_of_dose_taken_and_usual(monkeypatch, capsys, tmp_path, taken):
    # usual 156 (78 kg x 2 mg/kg): 150 taken -> 37.5-50; 75 taken -> 18.75-25
    request = load("ltx-allopurinol-draft-on-aza-100")
    active = next(r for r in med_requests(request) if r["id"] == "aza-active")
    active["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = taken
    xoi = card(run(request, monkeypatch, capsys, tmp_path), "interaction-xanthine-oxidase")
    assert xoi["indicator"] == "critical" and "reduce the active azathioprine order" in xoi["summary"]
    assert {150: "range 37.5-50 mg/day", 75: "range 18.8-25 mg/day"}[taken] in xoi["detail"]


def allo(current: float) -> DoseLimit:
    return DoseLimit("interaction-xanthine-oxidase", factor_low=0.25, factor_high=1 / 3, current_mg=current)


def test_h5_the_basis_is_capped_by_the_usual_dose():
    # taken above the usual dose: the usual dose is the basis (never more than the label's usual dose)
    assert current_basis([allo(200)], usual=150) is None
    assert combine([allo(200)], usual=150)[1] == pytest.approx(50)
    # taken under it and not yet inside the reduced band: the dose taken
    assert current_basis([allo(100)], usual=156) == 100
    # already inside the reduced band of the usual dose (reduced for allopurinol before): not cut again
    assert current_basis([allo(50)], usual=156) is None
    # an absolute limit (TPMT band) under the dose taken: the band is the basis, as before
    assert current_basis([allo(100), DoseLimit("pgx", high_mg=75)], usual=150) is None


@pytest.mark.usefixtures("maintenance_basis")
def test_h5_thiopurine_is_the_draft_keeps_the_usual_dose_basis(monkeypatch, capsys, tmp_path):
    # allopurinol active, azathioprine renewal at 50 mg (basedOn): accepted inside the usual dose's band
    cards = run(load("ibd-aza-allopurinol-co-therapy-25mg-renewal-basedon"), monkeypatch, capsys, tmp_path)
    xoi = card(cards, "interaction-xanthine-oxidase")
    assert xoi["indicator"] == "info" and "within the reduced range" in xoi["summary"]
    # both new (order-select): the usual dose for the weight, as before
    cards = run(load("order-select-allopurinol-selected-aza-in-same-draft"), monkeypatch, capsys, tmp_path)
    xoi = card(cards, "interaction-xanthine-oxidase")
    assert "give azathioprine at 50 mg/day" in xoi["summary"] and "the patient takes" not in xoi["detail"]


# ------------------------------------------------------------------------------------------------ M4
def test_m4_stable_renewal_of_mesalamine_plus_aza_gives_no_card(monkeypatch, capsys, tmp_path):
    cards = run(load("mesalamine-aza-uc-standard-combo-renewal"), monkeypatch, capsys, tmp_path)
    assert not [c for c in cards if c["source"]["topic"]["code"] == "interaction-aminosalicylates"]


def _new_start(request: dict) -> dict:
    request = copy.deepcopy(request)
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft.pop("priorPrescription", None)
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("entry"):
            value["entry"] = [e for e in value["entry"] if e["resource"].get("id") != "act"]
    return request


def test_m4_new_thiopurine_start_with_mesalamine_is_an_info_note(monkeypatch, capsys, tmp_path):
    cards = run(_new_start(load("mesalamine-aza-uc-standard-combo-renewal")), monkeypatch, capsys, tmp_path)
    asa = card(cards, "interaction-aminosalicylates")
    assert asa["indicator"] == "info"
    assert "consider an alternative" not in asa["detail"] and "BSG 2019" in asa["detail"]
    assert "Lamb CA et al. Gut 2019" in asa["detail"] and "IMURAN label" in asa["detail"]


def test_m4_new_mesalamine_on_active_aza_is_an_info_note(monkeypatch, capsys, tmp_path):
    request = load("mesalamine-aza-uc-standard-combo-renewal")
    meds = [r for r in med_requests(request)]
    asa = next(r for r in meds if r["id"] == "5asa")
    draft = copy.deepcopy(asa)
    draft.update(id="asa-new", status="draft", authoredOn="2026-12-07")
    request["context"]["draftOrders"]["entry"] = [{"resource": draft}]
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("entry"):
            value["entry"] = [e for e in value["entry"] if e["resource"].get("id") != "5asa"]
    cards = run(request, monkeypatch, capsys, tmp_path)
    asa_card = card(cards, "interaction-aminosalicylates")
    assert asa_card["indicator"] == "info" and "starting mesalamine" in asa_card["detail"]


# ------------------------------------------------------------------------------------------------ m1
def test_m1_single_percentage_not_a_degenerate_range(monkeypatch, capsys, tmp_path):
    cards = run(load("dpwg-tg-tpmt-im-crohn-40mg"), monkeypatch, capsys, tmp_path)
    pgx = card(cards, "pgx-reduce-dose")
    assert "give 75 % of the normal dose" in pgx["summary"] and "75-75" not in pgx["summary"] + pgx["detail"]
