"""Round-12 review H2: a TPMT / NUDT15 result sent as a 93193-1 "TPMT and NUDT15 panel" Observation.

93193-1 is on the genotype code list, so the panel (no value of its own) was read as ONE genotype result with
"(no value)", and its genotype / phenotype components (84413-4 genotype display name, 79713-4 / 53040-2
phenotype, 48018-6 gene studied) were discarded: a poor or intermediate metabolizer was missed
(pgx-uninterpretable plus a normal start dose). The same components under 51969-4 were read (p10f).

A genotype- or phenotype-coded Observation with no value of its own whose components carry gene results is now
read through the same component path as under 51969-4: each component a gene result of its own, paired with its
gene (named in its own value, the panel's one gene, or its gene-studied component by the panel's layout), and the
panel is not also an unreadable result. A component whose gene cannot be told is unreadable for each gene the
panel names (never normal, never read as the other gene's). A phenotype sent only as a LOINC answer code
(LA9657-3 Poor metabolizer ...) is read as that phenotype under a genotype code too.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from tests.builders import LOINC, PID, TODAY, bundle, patient
from tests.review_cases import case_cards

CASES = Path(__file__).parent / "data" / "review12"
HGNC = "http://www.genenames.org"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


# ------------------------------------------------------------------ the reviewer's cases

@pytest.mark.parametrize("case, rule", [
    ("p10_pgx_panel_components_im", "pgx-reduce-dose"),          # TPMT *1/*3A, NUDT15 *1/*1 (gene in the value)
    ("p10b_pgx_panel_phenotype_components_pm", "pgx-poor-metabolizer"),  # 79713-4 "TPMT poor metabolizer"
    ("p10c_pgx_one_gene_per_panel", "pgx-poor-metabolizer"),     # one panel per gene, 48018-6 then *3A/*3A
    ("p10d_pgx_one_gene_per_panel_valuestring", "pgx-reduce-dose"),  # valueString "*1/*3A"
    ("p10e_pgx_phenotype_LA_codes", "pgx-poor-metabolizer"),     # LA9657-3 with the TPMT gene component after it
    ("p10f_pgx_report_panel_51969", "pgx-poor-metabolizer"),     # the 51969-4 contrast stays right
    ("p16_tpmt_activity_component_in_panel", "pgx-poor-metabolizer"),  # activity component stays right
])
def test_a_pgx_panels_components_give_the_metabolizer_card(case: str, rule: str) -> None:
    cards = case_cards(_case(case))
    codes = _codes(cards)
    assert rule in codes, [c["summary"] for c in cards]
    for absent in ("pgx-uninterpretable", "dose-new-start", "pgx-test-missing"):
        assert absent not in codes, [c["summary"] for c in cards]
    assert not any("(no value)" in (c.get("detail") or "") for c in cards)


def test_p10_intermediate_gives_the_reduced_dose_not_the_normal_start() -> None:
    cards = case_cards(_case("p10_pgx_panel_components_im"))
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    # round-16 M1/M2: a new start's band is of the normal dose, capped by the start: 50 mg/day (was 75 of the order)
    assert "TPMT intermediate metabolizer" in card["summary"] and "50 mg/day" in card["summary"]


def test_p10_each_gene_is_read_from_its_own_component() -> None:
    facts = build_facts([], _case("p10_pgx_panel_components_im")["prefetch"], today=TODAY)
    assert sorted((r.gene, r.kind, r.value) for r in facts.gene_results) == [
        ("NUDT15", "diplotype", "*1/*1"), ("TPMT", "diplotype", "*1/*3A")]


# ------------------------------------------------------------------ unit tests

def _gene(symbol: str) -> dict:
    hgnc = {"TPMT": "HGNC:12014", "NUDT15": "HGNC:23063"}[symbol]
    return {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
            "valueCodeableConcept": {"coding": [{"system": HGNC, "code": hgnc, "display": symbol}]}}


def _call(loinc: str, text: str | None = None, *, answer: str | None = None, string: str | None = None) -> dict:
    c: dict = {"code": {"coding": [{"system": LOINC, "code": loinc}]}}
    if string is not None:
        c["valueString"] = string
    elif answer is not None:
        c["valueCodeableConcept"] = {"coding": [{"system": LOINC, "code": answer}]}
    elif text is not None:
        c["valueCodeableConcept"] = {"text": text}
    return c


def _panel(*components: dict, code: str = "93193-1", display: str = "TPMT and NUDT15 gene targeted mutation analysis",
           id: str = "pgx-panel", **extra) -> dict:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2025-05-01",
            "component": list(components), **extra}


def _results(*observations: dict) -> list[tuple[str, str, str]]:
    facts = build_facts([], {"patient": patient(), "pgx": bundle(*observations)}, today=TODAY)
    return sorted((r.gene, r.kind, r.value) for r in facts.gene_results)


def test_gene_before_its_results_pairs_each_result_with_the_gene_before_it() -> None:
    panel = _panel(_gene("TPMT"), _call("84413-4", string="*3A/*3A"), _call("79713-4", answer="LA9657-3"),
                   _gene("NUDT15"), _call("84413-4", string="*1/*1"))
    assert _results(panel) == [("NUDT15", "diplotype", "*1/*1"), ("TPMT", "diplotype", "*3A/*3A"),
                               ("TPMT", "phenotype", "Poor Metabolizer")]


def test_results_before_their_gene_pair_with_the_gene_after_them() -> None:
    panel = _panel(_call("84413-4", string="*1/*1"), _gene("TPMT"), _call("84413-4", string="*1/*3"), _gene("NUDT15"))
    assert _results(panel) == [("NUDT15", "diplotype", "*1/*3"), ("TPMT", "diplotype", "*1/*1")]


def test_a_result_whose_gene_cannot_be_told_is_unreadable_for_each_gene_never_normal() -> None:
    """Two gene-studied components then one result: which gene it is about is not stated."""
    panel = _panel(_gene("TPMT"), _gene("NUDT15"), _call("84413-4", string="*1/*1"))
    found = _results(panel)
    assert {g for g, _, _ in found} == {"TPMT", "NUDT15"}
    assert all(kind == "unreadable" and "*1/*1" in value for _, kind, value in found)


def test_a_panel_with_no_gene_component_uses_the_gene_its_name_gives() -> None:
    panel = _panel(_call("84413-4", string="*1/*3A"), display="TPMT genotype")
    assert _results(panel) == [("TPMT", "diplotype", "*1/*3A")]


def test_a_component_whose_value_cannot_be_read_is_a_quoted_gap() -> None:
    panel = _panel(_gene("TPMT"), _call("84413-4", string="see scanned report"), display="TPMT panel")
    assert _results(panel) == [("TPMT", "unreadable", "see scanned report")]


def test_a_panel_with_a_value_of_its_own_is_still_one_result() -> None:
    """A genotype result that has its own value keeps it: its gene component is not a result."""
    obs = _panel(_gene("TPMT"), valueCodeableConcept={"text": "*1/*3C"}, display="TPMT genotype")
    assert _results(obs) == [("TPMT", "diplotype", "*1/*3C")]


@pytest.mark.parametrize("answer, term", [
    ("LA9657-3", "Poor Metabolizer"), ("LA10317-8", "Intermediate Metabolizer"), ("LA25391-6", "Normal Metabolizer"),
    ("LA25390-8", "Rapid Metabolizer"), ("LA10315-2", "Ultrarapid Metabolizer")])
def test_a_phenotype_given_only_as_a_loinc_answer_code_is_read(answer: str, term: str) -> None:
    """Under a phenotype component, under a genotype component, and as a genotype result's own value."""
    assert _results(_panel(_gene("TPMT"), _call("79713-4", answer=answer))) == [("TPMT", "phenotype", term)]
    assert _results(_panel(_gene("TPMT"), _call("84413-4", answer=answer))) == [("TPMT", "phenotype", term)]
    own = {"resourceType": "Observation", "id": "g1", "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "component": [_gene("NUDT15")],
           "subject": {"reference": f"Patient/{PID}"}, "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer}]}}
    assert _results(own) == [("NUDT15", "phenotype", term)]


def test_a_local_coded_tpmt_result_with_a_loinc_answer_code_is_read() -> None:
    obs = {"resourceType": "Observation", "id": "loc", "status": "final", "code": {"coding": [{"system": "urn:lab", "code": "TPMTP"}],
                                                                                   "text": "TPMT phenotype"},
           "subject": {"reference": f"Patient/{PID}"}, "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA10317-8"}]}}
    assert _results(obs) == [("TPMT", "phenotype", "Intermediate Metabolizer")]


def test_a_report_panel_with_two_genes_does_not_read_one_genes_call_as_the_others() -> None:
    """Under 51969-4 too: each call is paired with its own gene (the result was read for both genes before)."""
    panel = _panel(_gene("TPMT"), _call("84413-4", string="*1/*3A"), _gene("NUDT15"), _call("84413-4", string="*1/*1"),
                   code="51969-4", display="Genetic analysis report")
    assert _results(panel) == [("NUDT15", "diplotype", "*1/*1"), ("TPMT", "diplotype", "*1/*3A")]


def test_a_component_sent_with_a_data_absent_reason_is_quoted_with_it() -> None:
    comp = {"code": {"coding": [{"system": LOINC, "code": "84413-4"}]},
            "dataAbsentReason": {"coding": [{"code": "error"}], "text": "sample failed"}}
    assert _results(_panel(_gene("TPMT"), comp)) == [("TPMT", "unreadable", "(no value: sample failed)")]


def test_the_ig_therapeutic_implication_is_still_one_result() -> None:
    """Its phenotype is a component of the same code: the result itself, not a panel (gene via derivedFrom)."""
    tbd = "http://hl7.org/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
    genotype = _panel(_gene("TPMT"), id="geno", valueCodeableConcept={"text": "*3A/*3A"}, code="84413-4", display="Genotype")
    implication = {"resourceType": "Observation", "id": "impl", "status": "final",
                   "code": {"coding": [{"system": tbd, "code": "therapeutic-implication"}]},
                   "subject": {"reference": f"Patient/{PID}"}, "derivedFrom": [{"reference": "Observation/geno"}],
                   "component": [{"code": {"coding": [{"system": tbd, "code": "therapeutic-implication"}]},
                                  "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA10317-8"}]}}]}
    assert _results(genotype, implication) == [("TPMT", "diplotype", "*3A/*3A"), ("TPMT", "phenotype", "Intermediate Metabolizer")]


def test_a_phenotype_coded_panel_of_phenotype_components_is_read() -> None:
    panel = _panel(_call("79713-4", "TPMT intermediate metabolizer"), _call("79713-4", "NUDT15 normal metabolizer"),
                   code="53040-2", display="Genetic variation's effect on drug metabolism")
    assert _results(panel) == [("NUDT15", "phenotype", "Normal Metabolizer"), ("TPMT", "phenotype", "Intermediate Metabolizer")]
