"""fhir_mappers: lenient with shapes, strict with units."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from fhir_mappers.medications import medication_fact
from fhir_mappers.observations import gene_results, measurements
from tests.builders import TODAY, bundle, dosage, genotype_core, genotype_ig, lab, med_request, phenotype_tpmt, weight

HERE = Path(__file__).parent


def dose_of(dosages, rxnorm="1256"):
    fact = medication_fact(med_request(rxnorm, "azathioprine", dosages=dosages), is_draft=True)
    assert fact is not None
    return fact.daily_dose, fact.dose_problem


@pytest.mark.parametrize("dosages,mg", [
    ([dosage(150)], 150),
    ([dosage(50, frequency=2)], 100),                       # twice daily
    ([dosage(0.1, unit="g", code="g")], 100),               # grams
    ([dosage(75000, unit="ug", code="ug")], 75),            # micrograms
    ([dosage(75000, unit="mcg", code=None, system=None)], 75),
    ([dosage(100, frequency=1, period=2)], 50),             # every other day
    # once weekly is not averaged: tests/test_medication_forms.py (issue 9: a schedule error, not "50 mg/day")
    ([dosage(25, frequency=1, period=12, period_unit="h")], 50),
    ([dosage(50), dosage(100)], 150),                       # morning + evening lines, same sequence
])
def test_daily_dose_in_mg(dosages, mg):
    dose, problem = dose_of(dosages)
    assert problem == "" and dose.mg == pytest.approx(mg)


def test_dose_in_tablets_uses_product_strength():
    dose, problem = dose_of([dosage(2, unit="tablet", code="{tbl}")], rxnorm="197388")  # 50 mg tablets
    assert dose.mg == 100 and problem == ""
    dose, problem = dose_of([dosage(2, unit="tablet", code="{tbl}")], rxnorm="1256")  # ingredient: strength unknown
    assert dose is None and "strength" in problem


@pytest.mark.parametrize("dosages,needle", [
    ([dosage(2, unit="puff", code="puff")], "not a mass unit"),
    ([dosage(150, unit="", code=None, system=None)], "no unit"),
    ([{"doseAndRate": [{"doseQuantity": {"value": 150, "unit": "mg"}}]}], "frequency"),
    ([{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}], "no dose amount"),
    ([dosage(-5)], "no readable amount"),
    ([], "no dosage instructions"),
])
def test_unreadable_doses_say_why(dosages, needle):
    dose, problem = dose_of(dosages)
    assert dose is None and needle in problem


def test_dose_range_keeps_both_ends_and_sequences_take_the_largest():
    d = {"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
         "doseAndRate": [{"doseRange": {"low": {"value": 50, "unit": "mg"}, "high": {"value": 100, "unit": "mg"}}}]}
    dose, _ = dose_of([d])
    assert (dose.low_mg, dose.high_mg) == (50, 100)
    taper = [dict(dosage(150), sequence=1), dict(dosage(100), sequence=2)]
    assert dose_of(taper)[0].mg == 150


def test_timing_code_and_stu3_style_dose():
    d = {"timing": {"code": {"coding": [{"code": "BID"}]}}, "doseQuantity": {"value": 50, "unit": "mg"}}
    assert dose_of([d])[0].mg == 100


@pytest.mark.parametrize("value,unit,code,kg", [(70, "kg", "kg", 70), (70000, "g", "g", 70), (154.3, "lb", "[lb_av]", 69.99)])
def test_weight_units(value, unit, code, kg):
    gaps: list = []
    out = measurements([weight(value, unit=unit, code=code)], gaps)
    assert out["weight"][0].value == pytest.approx(kg, abs=0.01) and gaps == []


def test_weight_in_unknown_unit_is_a_gap_not_a_value():
    gaps: list = []
    out = measurements([weight(70, unit="stone", code="stone")], gaps)
    assert "weight" not in out and "stone" in gaps[0].why


@pytest.mark.parametrize("loinc,value,unit,expected", [
    ("731-0", 0.4, "10*9/L", 0.4), ("731-0", 400, "/uL", 0.4), ("751-8", 1.5, "10*3/uL", 1.5),
    ("1742-6", 60, "U/L", 60), ("718-7", 12, "g/dL", 120), ("2160-0", 1.0, "mg/dL", 88.42),
])
def test_lab_units_normalised(loinc, value, unit, expected):
    gaps: list = []
    out = measurements([lab(loinc, value, unit)], gaps)
    (m,) = next(iter(out.values()))
    assert m.value == pytest.approx(expected) and gaps == []


def test_lab_in_unexpected_unit_is_a_gap():
    gaps: list = []
    assert measurements([lab("731-0", 40, "%")], gaps) == {}
    assert "'%'" in gaps[0].why


def test_genotype_shapes():
    results = gene_results([genotype_ig("TPMT", "*1/*3A"), genotype_core("NUDT15", "*1/*3"), phenotype_tpmt("Poor")])
    got = {(r.gene, r.kind, r.value) for r in results}
    assert got == {("TPMT", "diplotype", "*1/*3A"), ("NUDT15", "diplotype", "*1/*3"), ("TPMT", "phenotype", "Poor Metabolizer")}


def test_unreadable_genotype_is_kept_as_unreadable():
    obs = genotype_ig("TPMT", "positive")
    (r,) = gene_results([obs])
    assert r.kind == "unreadable" and "positive" in r.value


def test_entered_in_error_results_are_ignored():
    obs = genotype_ig("TPMT", "*3A/*3A")
    obs["status"] = "entered-in-error"
    assert gene_results([obs]) == []




def test_real_world_tpmt_examples():
    """The IG-style constructed bundle, the pgx-cds-data DSTU2-era examples and the R4 core example."""
    b = json.loads((HERE / "data" / "constructed_r4_tpmt_1_3A_bundle.json").read_text())
    res = [e["resource"] for e in b["entry"]]
    drafts = [r for r in res if r["resourceType"] == "MedicationRequest"]
    facts = build_facts(drafts, {"pgx": bundle(*[r for r in res if r["resourceType"] == "Observation"])}, today=TODAY)
    genes = {(g.gene, g.kind, g.value) for g in facts.gene_results}
    assert ("TPMT", "diplotype", "*1/*3A") in genes and ("NUDT15", "diplotype", "*1/*1") in genes
    assert ("TPMT", "phenotype", "Intermediate Metabolizer") in genes
    dose = facts.orders[0].daily_dose
    assert dose is not None and dose.mg == 150 and facts.orders[0].ingredients == {"azathioprine"}
    assert facts.weights[0].value == 70

    report = json.loads((HERE / "data" / "pgx-cds-data-Diagnosticreport-TMPT-intermediate.json").read_text())
    facts = build_facts([], {"pgx": bundle(report)}, today=TODAY)
    assert [(g.gene, g.value) for g in facts.gene_results] == [("TPMT", "Intermediate Metabolizer")]

    core = json.loads((HERE / "data" / "observation-example-TPMT-diplotype.json").read_text())
    assert [(g.gene, g.value) for g in gene_results([core])] == [("TPMT", "*1/*4")]


def test_active_medications_exclude_drafts_and_stopped():
    active = med_request(id="old", status="active")
    stopped = med_request(id="stopped", status="stopped")
    draft = med_request(id="mr-aza")
    facts = build_facts([draft], {"medications": bundle(active, stopped, dict(draft, status="active"))}, today=TODAY)
    assert [m.ref for m in facts.active_medications] == ["MedicationRequest/old"]
