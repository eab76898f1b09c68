"""rules.pgx: CPIC tables and the dose arithmetic, without HTTP."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from fhir_mappers.facts import ClinicalFacts, DailyDose, GeneResult, MedicationFact, Measurement
from rules.findings import ChangeDose
from rules.knowledge_base import load
from rules.pgx import pgx_findings, phenotype_of_diplotype
from tests.builders import TODAY
from tests.conftest import detail_of, summary_of

NOW = datetime.now(timezone.utc)

@pytest.fixture(autouse=True)
def maintenance_basis(monkeypatch):
    """Round-15 M1 gives a new start the label's starting dose as its basis; this module's tests pin the maintenance-basis
    mechanics (as for established therapy) on a simple new order: the new-start basis is tested in
    tests/test_round15_start.py and tests/test_cards_catalogue.py (headline case)."""
    import rules.context
    monkeypatch.setattr(rules.context, "_with_start_basis", lambda facts, order, drug, basis: basis)



@pytest.mark.parametrize("gene,text,phenotype", [
    ("TPMT", "*1/*1", "Normal Metabolizer"),
    ("TPMT", "*1/*3A", "Intermediate Metabolizer"),
    ("TPMT", "*3A/*1", "Intermediate Metabolizer"),
    ("TPMT", "*3a/*1", "Intermediate Metabolizer"),
    ("TPMT", "TPMT*1/TPMT*3C", "Intermediate Metabolizer"),
    ("TPMT", "*3A/*3A", "Poor Metabolizer"),
    ("TPMT", "*2/*3C", "Poor Metabolizer"),
    ("TPMT", "*1/*5", "Indeterminate"),
    ("TPMT", "*3A/*5", "Possible Intermediate Metabolizer"),
    ("TPMT", "*1/*3A or *3B/*3C", "Poor Metabolizer"),  # ambiguous: the most severe counts
    ("NUDT15", "*1/*3", "Intermediate Metabolizer"),
    ("NUDT15", "*3/*3", "Poor Metabolizer"),
    ("NUDT15", "*1/*5", "Indeterminate"),  # *4 became decreased function in February 2026 (tests/test_cpic_2026.py)
])
def test_cpic_diplotype_table(gene, text, phenotype):
    assert phenotype_of_diplotype(gene, text)[0] == phenotype


@pytest.mark.parametrize("text", ["*1/*99", "*1", "*1/*3A/*3C", "positive", "*1/*42"])
def test_diplotypes_the_tables_do_not_know(text):
    phenotype, why = phenotype_of_diplotype("TPMT", text)
    assert phenotype is None and why


def test_tables_are_complete():
    kb = load()
    assert len(kb.diplotypes["TPMT"]) == 946 and len(kb.diplotypes["NUDT15"]) == 45


def facts(tpmt: str, nudt15: str = "*1/*1", *, daily_mg: float | None = 150, kg: float | None = 70,
          drug_codes=frozenset({"azathioprine"})) -> ClinicalFacts:
    order = MedicationFact(ref="MedicationRequest/1", ingredients=frozenset(drug_codes), display="azathioprine",
                           status="draft", is_draft=True,
                           daily_dose=DailyDose(daily_mg, daily_mg) if daily_mg else None,
                           dose_problem="" if daily_mg else "the dose has no unit")
    f = ClinicalFacts(today=TODAY, orders=[order])
    f.gene_results = [GeneResult("TPMT", "diplotype", tpmt, NOW), GeneResult("NUDT15", "diplotype", nudt15, NOW)]
    if kg:
        f.weights = [Measurement("weight", kg, "kg", NOW)]
    return f


# 70 kg: normal dose 140 mg; one IM: the service suggests 30-50 % (42-70 mg/day), but an order inside CPIC's own
# band (30-80 % -> up to 112 mg/day) is accepted (audit round 2, D-11)
@pytest.mark.parametrize("daily_mg,rule", [(69, "pgx-dose-in-reduced-range"), (71, "pgx-dose-in-reduced-range"),
                                           (112, "pgx-dose-in-reduced-range"), (113, "pgx-reduce-dose"),
                                           (150, "pgx-reduce-dose")])
def test_reduction_boundary_at_the_top_of_the_reduced_range(daily_mg, rule):
    (f,) = pgx_findings(facts("*1/*3A", daily_mg=daily_mg))
    assert f.rule_id == rule


def planned(f0, **kw):
    import rules

    found = pgx_findings(f0, **kw)
    rules.attach_plans(found, f0)
    return found


def test_suggested_dose_rounds_down_to_25_mg():
    (f,) = planned(facts("*1/*3A", kg=90))  # 180 mg normal; 30-50 % = 54-90 -> 75 mg
    assert isinstance(f.actions[0], ChangeDose) and f.actions[0].daily_mg == 75 and f.values["plan"]["kind"] == "daily"


def test_without_weight_a_small_adult_is_the_reference():
    # never the ordered dose (issue 17: a reduction from the ordered dose cuts a reduced order again):
    # 2 mg/kg/day x 50 kg = 100 mg; 30-50 % = 30-50 mg/day
    (f,) = planned(facts("*1/*3A", kg=None, daily_mg=200))
    assert isinstance(f.actions[0], ChangeDose) and f.actions[0].daily_mg == 50
    assert "no usable body weight" in detail_of(f)


def test_weight_older_than_the_limit_is_not_used():
    f0 = facts("*1/*3A", daily_mg=200)
    f0.weights = [Measurement("weight", 70, "kg", datetime(2020, 1, 1, tzinfo=timezone.utc))]
    (f,) = planned(f0, weight_max_age_days=90)
    assert "no usable body weight" in detail_of(f)


def test_unreadable_dose_still_gives_the_reduction_range():
    (f,) = pgx_findings(facts("*1/*3A", daily_mg=None))
    assert f.rule_id == "pgx-reduce-dose" and not f.actions
    assert "could not be checked" in detail_of(f)


def test_reduced_dose_below_a_tablet_is_given_on_alternate_days_never_0_mg():
    (f,) = planned(facts("*1/*3A", nudt15="*1/*3", kg=20, daily_mg=60))  # 40 mg normal; 20-50 % = 8-20 mg
    (dose,) = [a for a in f.actions if hasattr(a, "regimen")]
    assert dose.regimen.every_days == 2 and dose.regimen.per_dose_mg == 25 and dose.daily_mg == 12.5
    text = summary_of(f) + detail_of(f)
    assert "25 mg every other day" in text and "8-20 mg/day" in text and not re.search(r"(?<![\d.])0 mg", text)


def test_no_practical_regimen_refers_to_a_specialist():
    (f,) = planned(facts("*1/*3A", nudt15="*1/*3", kg=5, daily_mg=10))  # 10 mg normal; 20-50 % = 2-5 mg
    assert not [a for a in f.actions if hasattr(a, "regimen")] and f.values["plan"]["kind"] == "specialist"
    assert "specialist" in summary_of(f) and "refer to a specialist" in detail_of(f)


def test_disagreeing_results_take_the_most_severe():
    f0 = facts("*1/*1")
    f0.gene_results.append(GeneResult("TPMT", "phenotype", "Poor Metabolizer", NOW))
    (f,) = pgx_findings(f0)
    assert f.rule_id == "pgx-poor-metabolizer" and "disagree" in detail_of(f)


def test_no_thiopurine_no_findings():
    assert pgx_findings(facts("*3A/*3A", drug_codes=frozenset({"warfarin"}))) == []


def test_every_knowledge_source_cited_exists_and_has_a_label():
    kb = load()
    from rules.common import drug_spec
    from rules.knowledge_base import raw_files, source_keys

    for tree in raw_files().values():
        for _table, _key, key in source_keys(tree):
            assert kb.source(key).label
    for drug in kb.pgx.drugs:
        for guideline in kb.pgx.profiles:
            spec = drug_spec(drug, guideline)
            for band in (spec.one_im, spec.both_im, spec.poor):
                assert band is not None and band.source in kb.sources, (drug, guideline)
