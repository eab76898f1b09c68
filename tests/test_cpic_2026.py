"""CPIC's February 2026 allele-function changes (cpic-data change log), as far
as a cited source confirms them; the rest is said on the card."""
from __future__ import annotations

from rules.knowledge_base import load
from rules.pgx import phenotype_of_diplotype
from tests import builders as b
from tests.builders import med_request
from tests.conftest import detail_of
from tests.test_rules_clinical import active, run


def test_knowledge_version_bumped():
    assert load().version >= "2026.12.0"


def test_nudt15_4_is_decreased_function_and_1_4_intermediate():
    """PMID 39688234: NUDT15 *1/*4 tolerated much lower mercaptopurine doses."""
    assert load().allele_function["NUDT15"]["*4"] == "Decreased function"
    assert phenotype_of_diplotype("NUDT15", "*1/*4")[0] == "Intermediate Metabolizer"
    # a dose change (100 -> 150): an unchanged renewal of a tolerated dose is pgx-im-established-dose (round-5 M4)
    found = run([med_request(daily_mg=150)], pgx=[b.genotype_ig("TPMT", "*1/*1"), b.genotype_ig("NUDT15", "*1/*4")],
                meds=[active(mg=100)])
    assert any(f.rule_id == "pgx-reduce-dose" for f in found)


def test_nudt15_2_is_read_as_3():
    assert phenotype_of_diplotype("NUDT15", "*2/*3")[0] == "Poor Metabolizer"
    assert phenotype_of_diplotype("NUDT15", "*1/*2")[0] == "Intermediate Metabolizer"


def test_card_on_a_revised_but_unconfirmed_allele_says_so():
    phenotype, notes = phenotype_of_diplotype("TPMT", "*1/*5")
    assert phenotype == "Indeterminate" and [n["code"] for n in notes] == ["cpic_2026_unconfirmed"]
    found = run(pgx=[b.genotype_ig("TPMT", "*1/*5"), b.genotype_ig("NUDT15", "*1/*1")])
    card = next(f for f in found if f.rule_id == "pgx-indeterminate")
    assert "revised the clinical function of TPMT *5" in detail_of(card) and "February 2026" in detail_of(card)


def test_new_tpmt_allele_is_named_not_normal():
    phenotype, notes = phenotype_of_diplotype("TPMT", "*1/*46")
    assert phenotype is None and notes[0]["code"] == "new_allele_2026" and notes[0]["alleles"] == ["*46"]
    found = run(pgx=[b.genotype_ig("TPMT", "*1/*46"), b.genotype_ig("NUDT15", "*1/*1")])
    assert any(f.rule_id == "pgx-uninterpretable" and "*46" in detail_of(f) and "February 2026" in detail_of(f)
               for f in found)


def test_unconfirmed_list_matches_the_change_log():
    u = load().pgx.cpic_2026.unconfirmed
    assert len(u["TPMT"]) == 22 and set(u["NUDT15"]) == {"*5", "*6", "*7", "*8"}
