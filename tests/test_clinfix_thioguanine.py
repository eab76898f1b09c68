"""Round-4 review, M1 (slice clinfix): thioguanine in AML with TPMT IM had no dose and said "outside leukaemia".
The Tabloid label's AML dose (about 2 mg/kg/day) is the normal dose CPIC's 50-80 % applies to
(dosing.toml [indications.aml] standard_mg_per_kg_day). Case: tests/data/review4/clinfix/ (README)."""
from __future__ import annotations

import json
from pathlib import Path

from service.cli import main

CASES = Path(__file__).parent / "data" / "review4" / "clinfix"
P24 = "p24-thioguanine-aml-tpmt-im"


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def run(request: dict, monkeypatch, capsys, tmp_path, guideline: str = "cpic") -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", guideline)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def doses(c: dict) -> list[float]:
    return [a["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
            for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]


def test_p24_thioguanine_aml_tpmt_im_gets_cpic_50_to_80_percent_of_2_mg_per_kg(monkeypatch, capsys, tmp_path):
    cards = run(load(P24), monkeypatch, capsys, tmp_path)
    c = card(cards, "pgx-reduce-dose")
    assert c["indicator"] == "warning"
    # 2 mg/kg x 80 kg = 160 mg/day; 50-80 % = 80-128 mg/day; 40 mg tablets in half-tablet steps: 120 mg
    assert "range 80-128 mg/day" in c["summary"] and doses(c) == [120]
    assert "from the normal dose 2.0 mg/kg/day × 80 kg = 160 mg/day" in c["detail"]
    assert all("outside leukaemia" not in x["detail"] + x["summary"] for x in cards)
    assert "could not be checked" not in c["detail"]


def test_p24_thioguanine_outside_aml_still_has_no_figure_and_does_not_say_outside_leukaemia(monkeypatch, capsys,
                                                                                              tmp_path):
    request = load(P24)
    cond = request["prefetch"]["conditions"]["entry"][0]["resource"]
    cond["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "34000006", "display": "Crohn's disease"}]}
    c = card(run(request, monkeypatch, capsys, tmp_path), "pgx-reduce-dose")
    assert doses(c) == [] and "no normal dose is set for this drug for this indication" in c["detail"]
    assert "outside leukaemia" not in c["detail"]
