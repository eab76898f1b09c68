"""TPMT / NUDT15 genotypes and phenotypes in the forms real reports use.

Shapes: HL7 Genomics Reporting IG Genotype (LOINC 84413-4, gene-studied
component 48018-6, valueCodeableConcept whose display is "GENE *a/*b", as in
input/fsh/examples/bundle-pgxexample.fsh); LabCorp 508080 (result LOINC
41048-0 "TPMT Genotype"); ARUP 3001535 ("*3A/Negative" when only one variant
allele is found); FHIR R4 core (SNOMED 363779003 + valueString); variants as
HGVS / rsID (LOINC variant terms 49654-7, 49655-4, 49653-9)."""
from __future__ import annotations

import json

import pytest
import responses

from fhir_mappers import build_facts
from fhir_mappers.genotype import diplotype, phenotype_words
from hooks.prefetch import PREFETCH
from rules.pgx import statuses
from tests.builders import HGNC, LOINC, PID, TODAY, bundle, hook_request, med_request, normal_labs, prefetch, weight
from tests import fhir_fake
from tests.conftest import detail_of, rule_ids, summary_of
from tests.test_rules_clinical import active, ids, run


def ig_genotype(text: str, genes=("TPMT",), *, code="84413-4", status="final", id=None, pharmvar=True):
    """Genomics Reporting IG Genotype: the diplotype is the display of a PharmVar-style coding."""
    value = ({"coding": [{"system": "http://www.pharmvar.org", "code": genes[0], "display": text}]} if pharmvar
             else {"text": text})
    return {"resourceType": "Observation", "id": id or f"geno-{'-'.join(genes).lower()}-{abs(hash(text)) % 10**6}",
            "status": status, "meta": {"profile": ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genotype"]},
            "code": {"coding": [{"system": LOINC, "code": code, "display": "Genotype display name"}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2025-01-10", "valueCodeableConcept": value,
            "component": [{"code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
                           "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org/geneId", "code": HGNC[g], "display": g}]}}
                          for g in genes]}


def labcorp_tpmt(text: str, *, id="labcorp-508081"):
    """LabCorp 508080 TPMT Genetic Test, result 508081 "TPMT Genotype" (LOINC 41048-0), value as text."""
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "41048-0", "display": "TPMT gene targeted mutation analysis"}],
                     "text": "TPMT Genotype"},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2024-11-02", "valueString": text}


def phenotype_text(text: str, *, code="79713-4", id="pheno-1"):
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}], "text": "TPMT phenotype"},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2024-06-01", "valueString": text}


def phenotypes(*observations) -> dict[str, str]:
    facts = build_facts([], {"pgx": bundle(*observations)}, today=TODAY)
    return {g: (s.phenotype or s.state) for g, s in statuses(facts).items()}


@pytest.mark.parametrize("text,expected", [
    ("*3A/*3C", "*3A/*3C"), ("TPMT*3A/TPMT*3C", "*3A/*3C"), ("TPMT *3A/*3C compound heterozygous", "*3A/*3C"),
    ("*3A/*3A homozygous", "*3A/*3A"), ("TPMT *1/*3A (heterozygous)", "*1/*3A"), ("*3A/Negative", "*1/*3A"),
    ("*3A heterozygous", "*1/*3A"), ("TPMT *3C homozygous", "*3C/*3C"), ("No variants detected", "*1/*1"),
    ("*1/*3A or *3B/*3C", "*1/*3A or *3B/*3C"),
    ("c.460G>A heterozygous, c.719A>G heterozygous", "*1/*3A or *3B/*3C"),
    ("c.460G>A homozygous; c.719A>G homozygous", "*3A/*3A"), ("rs1800462 heterozygous", "*1/*2"),
    ("g.18130687T>C (het)", "*1/*3C"),
])
def test_tpmt_diplotype_forms(text, expected):
    assert diplotype(text, "TPMT")[0] == expected


def test_several_genes_in_one_result():
    obs = ig_genotype("TPMT *3A/*3A; NUDT15 *1/*1", genes=("TPMT", "NUDT15"), pharmvar=False)
    assert phenotypes(obs) == {"TPMT": "Poor Metabolizer", "NUDT15": "Normal Metabolizer"}
    assert diplotype("TPMT *1/*1, NUDT15 *1/*3", "NUDT15")[0] == "*1/*3"
    assert diplotype("NUDT15 c.415C>T heterozygous", "NUDT15")[0] == "*1/*3"


@pytest.mark.parametrize("text,expected", [
    ("Normal metabolizer; no poor metabolizer alleles detected", "Normal Metabolizer"),
    ("Poor metabolizer (homozygous variant)", "Poor Metabolizer"), ("Deficient TPMT activity", "Poor Metabolizer"),
    ("Absent activity", "Poor Metabolizer"), ("Low activity", "Poor Metabolizer"),
    ("Intermediate metabolizer", "Intermediate Metabolizer"), ("Heterozygous", "Intermediate Metabolizer"),
    ("Wild type", "Normal Metabolizer"), ("No variant detected", "Normal Metabolizer"),
    ("Not a poor metabolizer", None), ("Possible intermediate metabolizer", "Possible Intermediate Metabolizer"),
])
def test_phenotype_words_and_negations(text, expected):
    assert phenotype_words(text, "TPMT") == expected


def test_phenotype_in_several_genes():
    assert phenotype_words("TPMT: normal metabolizer. NUDT15: intermediate metabolizer", "NUDT15") == "Intermediate Metabolizer"


def test_reference_laboratory_poor_metabolizer_is_recognised():
    """The issue's case: a poor-metabolizer genotype as a large US reference laboratory writes it."""
    found = run([med_request(daily_mg=100)], pgx=[labcorp_tpmt("TPMT *3A/*3A"), ig_genotype("NUDT15 *1/*1", ("NUDT15",))])
    assert "pgx-poor-metabolizer" in ids(found)


def test_ambiguous_call_keeps_the_most_severe_and_says_how_to_resolve():
    found = run([med_request(daily_mg=150)], pgx=[labcorp_tpmt("c.460G>A heterozygous, c.719A>G heterozygous"),
                                                  ig_genotype("NUDT15 *1/*1", ("NUDT15",))], meds=[active(mg=150)])
    card = next(f for f in found if f.rule_id == "pgx-poor-metabolizer")  # *3B/*3C is poor: the worse reading
    assert "ambiguous" in detail_of(card) and "enzyme activity" in detail_of(card)
    assert any(getattr(a, "loinc", "") == "21563-2" for a in card.actions)  # offer TPMT activity to resolve it


def test_unknown_variant_is_unreadable_not_normal():
    assert phenotypes(labcorp_tpmt("c.999A>T heterozygous"), ig_genotype("NUDT15 *1/*1", ("NUDT15",)))["TPMT"] == "unreadable"


def test_preliminary_genotype_is_used_and_flagged():
    found = run(pgx=[ig_genotype("TPMT *3A/*3A", status="preliminary"), ig_genotype("NUDT15 *1/*1", ("NUDT15",))])
    card = next(f for f in found if f.rule_id == "pgx-poor-metabolizer")
    assert "PRELIMINARY" in detail_of(card) and summary_of(card).startswith("PRELIMINARY result")


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_withdrawn_genotype_is_excluded(status):
    st = phenotypes(ig_genotype("TPMT *3A/*3A", status=status), ig_genotype("NUDT15 *1/*1", ("NUDT15",)))
    assert st["TPMT"] == "missing"


def test_prefetch_asks_for_every_code_the_mappers_read():
    for code in ("84413-4", "41048-0", "36922-3", "80738-8", "93193-1", "79713-4", "53040-2", "21563-2", "43421-7"):
        assert f"http://loinc.org|{code}" in PREFETCH["pgx"]
    assert "http://loinc.org|3141-9" in PREFETCH["weight"] and "http://loinc.org|29463-7" in PREFETCH["weight"]


BASE = "https://ehr.example/r4/fhir"


def test_fhir_fallback_finds_a_result_coded_only_with_a_laboratory_loinc(call):
    """The EHR's server holds a LabCorp 41048-0 genotype and a 3141-9 weight: the queries must ask for them."""
    w = weight(70)
    w["code"]["coding"][0]["code"] = "3141-9"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fhir_fake.serve(rsps, BASE, [labcorp_tpmt("TPMT *3A/*3A"), ig_genotype("NUDT15 *1/*1", ("NUDT15",)), w,
                                     *normal_labs()])
        cards = call(hook_request(fhir_server=BASE, token="tok-123"))
    found = rule_ids(cards)
    assert "pgx-poor-metabolizer" in found and "weight-missing" not in found


def test_prefetch_mode_reads_the_same_result(call):
    pre = prefetch(pgx=[labcorp_tpmt("TPMT *3A/*3A"), ig_genotype("NUDT15 *1/*1", ("NUDT15",))])
    assert "pgx-poor-metabolizer" in rule_ids(call(hook_request(pre=pre)))


def test_r4_core_diplotype_with_its_haplotypes():
    """FHIR R4 core examples: the diplotype *1/*4 derives from two haplotype calls (status unknown); the
    haplotypes are not separate results, so nothing is reported as uninterpretable."""
    from pathlib import Path

    data = Path(__file__).parent / "data"
    obs = [json.loads((data / f"observation-example-TPMT-{n}.json").read_text()) for n in ("diplotype", "haplotype-one", "haplotype-two")]
    facts = build_facts([], {"pgx": bundle(*obs)}, today=TODAY)
    st = statuses(facts)["TPMT"]
    assert st.phenotype == "Intermediate Metabolizer" and not st.problems


def test_ig_therapeutic_implication_derived_from_a_genotype():
    """HL7 Genomics Reporting IG bundle-pgxexample.fsh, "med-impact-pgx-example" transcribed to JSON with TPMT in
    place of CYP2C9: the phenotype is a therapeutic-implication component, the gene is on the Genotype."""
    tbd = "http://hl7.org/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
    genotype = ig_genotype("TPMT *3A/*3A", id="genotype-pgx-example")
    implication = {"resourceType": "Observation", "id": "med-impact-pgx-example", "status": "final",
                   "code": {"coding": [{"system": tbd, "code": "therapeutic-implication"}]},
                   "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2018",
                   "derivedFrom": [{"reference": "Observation/genotype-pgx-example"}],
                   "component": [{"code": {"coding": [{"system": tbd, "code": "therapeutic-implication"}]},
                                  "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}]}},
                                 {"code": {"coding": [{"system": LOINC, "code": "51963-7"}]},
                                  "valueCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "103"}]}}]}
    facts = build_facts([], {"pgx": bundle(implication)}, today=TODAY)
    assert facts.gene_results == []  # without the Genotype the gene is unknown
    facts = build_facts([], {"pgx": bundle(genotype, implication)}, today=TODAY)
    assert {(g.gene, g.kind, g.value) for g in facts.gene_results} >= {("TPMT", "phenotype", "Poor Metabolizer")}
    assert "therapeutic-implication" in PREFETCH["pgx"]


def ig_variant(hgvs: str | None, rsid: str | None, zygosity: str | None, *, present=True, gene="TPMT", id="var-1"):
    """HL7 Genomics Reporting IG Variant (bundle-pgxexample.fsh "variant-1-pgx-example" shape), TPMT."""
    comps = [{"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
              "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org/geneId", "code": HGNC[gene]}]}}]
    if rsid:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "81252-9"}]},
                      "valueCodeableConcept": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/snp", "code": rsid}]}})
    if hgvs:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "48004-6"}]},
                      "valueCodeableConcept": {"coding": [{"system": "http://varnomen.hgvs.org", "code": f"NM_000367.5:{hgvs}"}]}})
    if zygosity:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "53034-5"}]},
                      "valueCodeableConcept": {"coding": [{"system": LOINC, "code": {"het": "LA6706-1", "hom": "LA6705-3"}[zygosity]}]}})
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "69548-6", "display": "Genetic variant assessment"}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2024-02-02",
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9633-4" if present else "LA9634-2"}]},
            "component": comps}


def loinc_variant(code: str, answer: str, id: str):
    """LOINC TPMT variant terms (49654-7 c.238G>C, 49655-4 c.460G>A, 49653-9 c.719A>G, 100663-4 *3A) with a text answer."""
    return {"resourceType": "Observation", "id": id, "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2023-05-05", "valueString": answer}


def tpmt_of(*obs):
    return phenotypes(*obs, ig_genotype("NUDT15 *1/*1", ("NUDT15",)))["TPMT"]


def test_variant_level_results_are_read_through_cpic_allele_definitions():
    assert tpmt_of(ig_variant("c.719A>G", "rs1142345", "hom")) == "Poor Metabolizer"        # *3C/*3C
    assert tpmt_of(ig_variant(None, "rs1800462", "het")) == "Intermediate Metabolizer"       # *1/*2
    assert tpmt_of(ig_variant("c.460G>A", None, "het", id="v1"), ig_variant("c.719A>G", None, "het", id="v2")) \
        == "Poor Metabolizer"  # *1/*3A or *3B/*3C: the most severe
    assert tpmt_of(loinc_variant("100663-4", "Heterozygous", "l1")) == "Intermediate Metabolizer"  # *1/*3A
    assert tpmt_of(loinc_variant("49654-7", "Not detected", "l1"), loinc_variant("49655-4", "Not detected", "l2"),
                   loinc_variant("49653-9", "Not detected", "l3")) == "Normal Metabolizer"
    assert tpmt_of(ig_variant("c.999A>T", None, "het")) == "unreadable"
    assert tpmt_of(loinc_variant("49653-9", "see report", "l1")) == "unreadable"


def test_a_genotype_result_wins_over_its_variants():
    assert tpmt_of(ig_variant("c.719A>G", None, "hom"), ig_genotype("TPMT *1/*1")) == "Normal Metabolizer"


def test_dose_resting_on_a_preliminary_genotype_says_so_on_every_card_stating_it():
    """TPMT IM (preliminary) and allopurinol: one dose plan; the allopurinol card states that dose too, so it
    says the dose rests on a preliminary result."""
    from tests.builders import med_request as mr

    allo = mr("519", "allopurinol 100 MG Oral Tablet", id="allo", status="active", daily_mg=100)
    found = run([mr(daily_mg=150)], pgx=[ig_genotype("TPMT *1/*3A", status="preliminary"),
                                         ig_genotype("NUDT15 *1/*1", ("NUDT15",))], meds=[active(mg=150), allo])
    planned = [f for f in found if f.values.get("plan")]
    assert {f.rule_id for f in planned} >= {"pgx-reduce-dose", "interaction-xanthine-oxidase"}
    for f in planned:
        assert "PRELIMINARY" in detail_of(f), f.rule_id
