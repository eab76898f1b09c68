"""Round-4 review, H7 (slice clinfix): a TPMT activity below the range of a laboratory whose assay's bands are
not known here cannot be placed: "possible deficiency (intermediate or poor)", counted as poor until a genotype
places it; never an intermediate-dose suggestion. Cases: tests/data/review4/clinfix/ (README: provenance)."""
from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest

from fhir_mappers.facts import Measurement
from rules.tpmt_activity import judge_measurement
from service.cli import main

CASES = Path(__file__).parent / "data" / "review4" / "clinfix"
P34 = "p34-mayo-tpmt-very-low-range-only"


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def run(request: dict, monkeypatch, capsys, tmp_path, guideline: str = "cpic") -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", guideline)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def rules_of(cards) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def observation(request: dict, obs_id: str) -> dict:
    for value in request["prefetch"].values():
        for e in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            if e["resource"].get("id") == obs_id:
                return e["resource"]
    raise KeyError(obs_id)


def doses(c: dict) -> list[float]:
    return [a["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
            for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]


def test_p34_far_below_another_assays_range_is_a_possible_deficiency_not_a_halved_dose(monkeypatch, capsys, tmp_path):
    cards = run(load(P34), monkeypatch, capsys, tmp_path)
    assert "pgx-reduce-dose" not in rules_of(cards)
    c = card(cards, "pgx-poor-metabolizer")
    assert c["indicator"] == "critical"
    assert "possible TPMT deficiency (intermediate or poor)" in c["summary"] and "genotype TPMT" in c["summary"]
    assert "treat as poor metabolizer" in c["summary"]
    assert doses(c) == []  # no intermediate (or any) dose suggestion: an alternative, or genotype first
    labels = [s["label"] for s in c["suggestions"]]
    assert "Cancel the azathioprine order" in labels and "Order TPMT genotyping" in labels
    assert "Do not start azathioprine at an intermediate" in c["detail"]
    assert "possible deficiency, counted as poor metabolizer" in c["detail"]
    assert "75 mg" not in c["summary"] + c["detail"]


def test_p34_without_nudt15_asks_for_both_genes(monkeypatch, capsys, tmp_path):
    request = load(P34)
    entries = request["prefetch"]["pgx"]["entry"]
    request["prefetch"]["pgx"]["entry"] = [e for e in entries if e["resource"].get("id") != "geno-nudt15"]
    c = card(run(request, monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert "possible TPMT deficiency" in c["summary"]
    assert "genotype TPMT and NUDT15 before starting" in c["detail"]
    assert "Order TPMT and NUDT15 genotyping" in [s["label"] for s in c["suggestions"]]


def test_p34_the_laboratory_saying_heterozygous_keeps_the_intermediate_reading(monkeypatch, capsys, tmp_path):
    request = load(P34)
    obs = observation(request, "tpmt-act")
    obs["valueQuantity"]["value"] = 9.0
    obs["interpretation"] = [{"coding": obs["interpretation"][0]["coding"], "text": "Heterozygous: intermediate activity"}]
    cards = run(request, monkeypatch, capsys, tmp_path)
    c = card(cards, "pgx-reduce-dose")
    assert "pgx-poor-metabolizer" not in rules_of(cards)
    assert c["indicator"] == "warning" and doses(c) == [75]  # 80 kg x 2 mg/kg = 160: 30-50 % -> 75 mg


def test_p34_arup_scale_is_judged_by_arups_bands_as_before(monkeypatch, capsys, tmp_path):
    request = load(P34)
    obs = observation(request, "tpmt-act")
    obs["valueQuantity"] = {"value": 20.0, "unit": "U/mL"}
    obs["referenceRange"] = [{"low": {"value": 24.0, "unit": "U/mL"}, "high": {"value": 44.0, "unit": "U/mL"}}]
    c = card(run(request, monkeypatch, capsys, tmp_path), "pgx-reduce-dose")  # ARUP 17.0-23.9: intermediate
    assert doses(c) == [75] and "intermediate, 17.0-23.9 U/mL RBC (ARUP)" in c["detail"]


def test_p34_with_a_tpmt_genotype_the_genotype_places_it(monkeypatch, capsys, tmp_path):
    request = load(P34)
    geno = copy.deepcopy(observation(request, "geno-nudt15"))
    geno["id"] = "geno-tpmt"
    geno["valueCodeableConcept"] = {"text": "TPMT *1/*3A"}
    geno["component"][0]["valueCodeableConcept"]["coding"][0].update(code="HGNC:12014", display="TPMT")
    request["prefetch"]["pgx"]["entry"].append({"resource": geno})
    cards = run(request, monkeypatch, capsys, tmp_path)
    c = card(cards, "pgx-reduce-dose")  # *1/*3A: intermediate; the low activity agrees (below range: at least IM)
    assert "pgx-poor-metabolizer" not in rules_of(cards) and doses(c) == [75]
    assert "possible deficiency, counted as intermediate metabolizer" in c["detail"]


def test_p34_in_leukaemia_the_poor_metabolizer_regimen_until_genotyped(monkeypatch, capsys, tmp_path):
    request = load(P34)
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"] = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "197931", "display": "mercaptopurine 50 MG Oral Tablet"}]}
    draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 100
    draft["reasonCode"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "91857003"}]}]
    c = card(run(request, monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert c["indicator"] == "critical" and "possible TPMT deficiency" in c["summary"]
    assert "three times a week" in c["detail"] and "Order TPMT genotyping" in [s["label"] for s in c["suggestions"]]


def _m(value, low=None, high=None, flag="", unit="U/mL{RBC}", text=""):
    return Measurement("tpmt_activity", value, unit, datetime(2026, 12, 3), ref_low=low, ref_high=high,
                       interpretation=flag, interpretation_text=text, unit_text="nmol/h/mL RBC")


@pytest.mark.parametrize("m,reading,possible", [
    (_m(4.0, 15.1, 26.4, "L"), "Poor Metabolizer", True),            # the review's case
    (_m(14.0, 15.1, 26.4), "Poor Metabolizer", True),                # only just below: still cannot be placed
    (_m(4.0, 15.1, 26.4, "LL"), "Poor Metabolizer", False),          # the laboratory says deficient
    (_m(9.0, 15.1, 26.4, "L", text="carrier"), "Intermediate Metabolizer", False),  # says intermediate itself
    (_m(9.0, 15.1, 26.4, "L", text="low"), "Poor Metabolizer", True),  # "low" does not place it
    (_m(20.0, 15.1, 26.4), "Normal Metabolizer", False),             # within its own range
    (_m(20.0), "Intermediate Metabolizer", False),                   # ARUP scale (no range): ARUP's bands
    (_m(20.0, 24.0, 44.0, "L"), "Intermediate Metabolizer", False),  # ARUP's own range: ARUP's bands
    (_m(0.3, 0.5, 0.9, unit="U/g{Hb}"), "Poor Metabolizer", True),   # a unit without bands, below range
    (_m(0.3, unit="U/g{Hb}", flag="L"), "Poor Metabolizer", True),   # flagged low, no range, no bands
])
def test_judge_measurement_places_only_what_it_can(m, reading, possible):
    r = judge_measurement(m)
    assert (r.reading, r.possible) == (reading, possible)
    assert ("possible_deficiency" in [q["code"] for q in r.reasons]) == possible
