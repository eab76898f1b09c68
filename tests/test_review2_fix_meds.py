"""Round-2 audit, slice fix-meds: Timing.repeat shapes (H1, M1) and MedicationStatements as active medication (H3).
Cases copied from the audit into tests/data/review2/ (provenance in its README.md)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from fhir_mappers.medications import Strength, read_dose
from service.cli import main
from tests.builders import TODAY, bundle, med_request

CASES = Path(__file__).parent / "data" / "review2"


def run_case(name: str, monkeypatch, capsys, edit=None, tmp_path: Path | None = None) -> list[dict]:
    path = CASES / f"{name}.json"
    request = json.loads(path.read_text())
    monkeypatch.setenv("AZA_CDS_GUIDELINE", request.get("_profile", "cpic"))
    if edit is not None:
        assert tmp_path is not None
        edit(request)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def codes(cards) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def per_day(repeat: dict, amount: float = 150) -> tuple[float | None, str]:
    order = {"dosageInstruction": [{"timing": {"repeat": repeat},
                                    "doseAndRate": [{"doseQuantity": {"value": amount, "unit": "mg", "code": "mg"}}]}]}
    r = read_dose(order, Strength())
    return (r.dose.mg if r.dose else None), r.problem


# ------------------------------------------------------------------------------------- H1: Timing.repeat
@pytest.mark.parametrize("repeat, mg", [
    ({"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "wed", "fri"]}, 150 * 3 / 7),
    ({"dayOfWeek": ["mon", "wed", "fri"]}, 150 * 3 / 7),  # no frequency: once on each listed day
    ({"frequency": 2, "period": 1, "periodUnit": "d", "dayOfWeek": ["sat", "sun"]}, 150 * 4 / 7),
    ({"when": ["MORN", "EVE"], "dayOfWeek": ["mon", "tue", "wed", "thu", "fri"]}, 150 * 10 / 7),
    ({"timeOfDay": ["08:00:00"], "dayOfWeek": ["tue", "thu"]}, 150 * 2 / 7),
    # the service's own thrice-weekly suggestion (frequency per week with dayOfWeek) round-trips
    ({"frequency": 3, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "wed", "fri"]}, 150 * 3 / 7),
    ({"frequency": 1, "period": 1, "periodUnit": "d"}, 150),
    ({"frequency": 1, "period": 2, "periodUnit": "d"}, 75),
    ({"when": ["MORN", "EVE"]}, 300),
])
def test_timing_shapes_are_read(repeat, mg):
    got, problem = per_day(repeat)
    assert problem == ""
    assert got == pytest.approx(mg, abs=1e-3)


@pytest.mark.parametrize("repeat, words", [
    ({"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "funday"]}, "dayOfWeek"),
    ({"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "wed", "fri"]}, "does not fit"),
    ({"frequency": 1, "period": 3, "periodUnit": "d", "dayOfWeek": ["mon"]}, "could not be read"),
    ({"frequency": 1, "period": 1, "periodMax": 3, "periodUnit": "d"}, "periodMax"),
    ({"frequency": 1, "period": 1, "periodUnit": "mo", "dayOfMonth": [1, 15]}, "dayOfMonth"),
    ({"when": ["MORN"], "offset": 30, "period": 1, "periodUnit": "d"}, "offset"),
])
def test_timing_shapes_not_read_are_said_never_daily(repeat, words):
    got, problem = per_day(repeat)
    assert got is None
    assert words in problem


def test_one_day_a_week_is_reported_not_averaged():
    order = {"dosageInstruction": [{"timing": {"repeat": {"dayOfWeek": ["mon"]}},
                                    "doseAndRate": [{"doseQuantity": {"value": 150, "unit": "mg", "code": "mg"}}]}]}
    r = read_dose(order, Strength())
    assert r.dose is None and r.schedule_problem == "150 mg once weekly"


def test_h1_mon_wed_fri_150_mg_is_64_mg_a_day_no_card(monkeypatch, capsys):
    assert run_case("aza-150-mon-wed-fri-dayofweek-ra-50kg", monkeypatch, capsys) == []


def test_h1_same_order_daily_is_still_above_range(monkeypatch, capsys, tmp_path):
    """Control: without dayOfWeek the same 150 mg at 50 kg is 3 mg/kg/day (above 2.5)."""
    def daily(req):
        for e in req["context"]["draftOrders"]["entry"]:
            for d in e["resource"].get("dosageInstruction", []):
                d["timing"]["repeat"].pop("dayOfWeek", None)
    cards = run_case("aza-150-mon-wed-fri-dayofweek-ra-50kg", monkeypatch, capsys, daily, tmp_path)
    assert "dose-above-range" in codes(cards)


# ------------------------------------------------------------------------------------- M1
def test_m1_tpmt_pm_all_already_one_tenth_thrice_weekly_is_not_cut(monkeypatch, capsys):
    cards = run_case("all-mp-tpmt-pm-already-10pct-tiw-suspension", monkeypatch, capsys)
    pm = [c for c in cards if c["source"]["topic"]["code"] == "pgx-poor-metabolizer"]
    assert len(pm) == 1 and pm[0]["indicator"] == "info"
    assert "already follows the reduced regimen" in pm[0]["summary"]
    assert not any(c.get("suggestions") for c in cards)


def test_m1_double_the_regimen_is_still_cut(monkeypatch, capsys, tmp_path):
    """Control: 0.6 mL (12 mg) thrice weekly is twice CPIC's one tenth: critical, reduce."""
    def double(req):
        for e in req["context"]["draftOrders"]["entry"]:
            for d in e["resource"].get("dosageInstruction", []):
                for dr in d.get("doseAndRate", []):
                    dr["doseQuantity"]["value"] = dr["doseQuantity"]["value"] * 2
    cards = run_case("all-mp-tpmt-pm-already-10pct-tiw-suspension", monkeypatch, capsys, double, tmp_path)
    pm = [c for c in cards if c["source"]["topic"]["code"] == "pgx-poor-metabolizer"]
    assert pm and pm[0]["indicator"] == "critical" and pm[0].get("suggestions")


# ------------------------------------------------------------------------------------- H3: MedicationStatement
@pytest.mark.parametrize("name", ["febuxostat-draft-mp-via-medicationstatement",
                                  "allopurinol-draft-aza-only-medicationstatement",
                                  "febuxostat-draft-mp-reported-medicationrequest"])
def test_h3_statement_of_a_thiopurine_is_checked_for_interactions(name, monkeypatch, capsys):
    cards = run_case(name, monkeypatch, capsys)
    xo = [c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]
    assert len(xo) == 1 and xo[0]["indicator"] == "critical"


@pytest.mark.parametrize("status, counted", [("active", True), ("intended", True), ("on-hold", True),
                                             ("completed", False), ("stopped", False), ("entered-in-error", False),
                                             ("not-taken", False)])
def test_statement_status_decides_whether_it_is_active_medication(status, counted):
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": status,
                 "medicationCodeableConcept": {"text": "mercaptopurine 50 mg tablet"},
                 "effectivePeriod": {"start": "2026-01-01"},
                 "dosage": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                             "doseAndRate": [{"doseQuantity": {"value": 75, "unit": "mg", "code": "mg"}}]}]}
    febux = med_request("73689", "febuxostat 40 MG Oral Tablet", id="mr-febu", daily_mg=40)
    # a statement may come in any prefetched group, not only "medications"
    facts = build_facts([febux], {"patient": None, "other_group": bundle(statement)}, today=TODAY)
    active = [m for m in facts.active_medications if "mercaptopurine" in m.ingredients]
    assert bool(active) is counted
    if counted:
        assert active[0].daily_dose is not None and active[0].daily_dose.mg == 75
        assert active[0].authored_on is not None and active[0].authored_on.isoformat() == "2026-01-01"
        assert active[0].resource is statement


def test_statement_of_a_drug_an_active_order_carries_is_not_counted_twice():
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                 "medicationCodeableConcept": {"text": "azathioprine 50 mg tablet"}}
    order = copy.deepcopy(med_request(id="mr-active", status="active"))
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="mr-allo", daily_mg=100)
    facts = build_facts([allo], {"medications": bundle(order, statement)}, today=TODAY)
    assert [m.ref for m in facts.active_medications if "azathioprine" in m.ingredients] == ["MedicationRequest/mr-active"]


def test_h3_a_statement_is_not_called_an_active_order(monkeypatch, capsys):
    """The azathioprine is recorded only as a MedicationStatement (prescribed elsewhere): the card gives the dose
    without telling the prescriber to reduce "the active azathioprine order", which is not in this record."""
    cards = run_case("allopurinol-draft-aza-only-medicationstatement", monkeypatch, capsys)
    xo = [c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]
    assert xo and "active azathioprine order" not in xo[0]["summary"]
    assert "give azathioprine at" in xo[0]["summary"]
