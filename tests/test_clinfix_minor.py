"""Round-4 review, minor m1 (live-vaccine card names the vaccine, once) and m5 (bilirubin without false
precision) (slice clinfix). Cases: tests/data/review4/clinfix/ (README)."""
from __future__ import annotations

import json
from pathlib import Path

from service.cli import main

CASES = Path(__file__).parent / "data" / "review4" / "clinfix"


def run(name: str, monkeypatch, capsys, tmp_path, service: str = "") -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    assert main(["check", "--json", "--today", "2026-12-07", str(CASES / f"{name}.json")]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def test_o29_live_vaccine_summary_names_the_vaccine_and_lists_it_once(monkeypatch, capsys, tmp_path):
    c = card(run("o29-rotavirus-cvx116-infant-on-mp", monkeypatch, capsys, tmp_path), "interaction-live-vaccine")
    assert c["indicator"] == "critical"
    assert c["summary"] == ("Live vaccine (rotavirus, pentavalent, live (RV5)) with mercaptopurine: contraindicated; "
                            "do not give the live vaccine")
    assert "unspecified formulation" not in c["detail"] and c["detail"].count("rotavirus") == 1


def test_p27_bilirubin_in_whole_micromoles(monkeypatch, capsys, tmp_path):
    c = card(run("p27-aih-start-bilirubin-8", monkeypatch, capsys, tmp_path), "aih-start-bilirubin")
    assert c["indicator"] == "warning"
    assert "bilirubin 137 µmol/L" in c["summary"] and "Total bilirubin 137 µmol/L" in c["detail"]
    assert "136.8" not in c["summary"] + c["detail"]
