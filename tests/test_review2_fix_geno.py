"""Round-2 audit H2 + m3: an rsID printed with its genotype is read at that site (CPIC allele definition
tables: reference base = the *1 row), not as "variant present, zygosity not stated".

rs116855232 (NUDT15 c.415C>T, *3): C/C = no variant at that site, C/T = *1/*3 (intermediate), T/T = *3/*3
(poor). TPMT rs1800462 (c.238G>C, *2), rs1800460 (c.460G>A, *3B), rs1142345 (c.719A>G, *3C; TPMT is on
the minus strand, so laboratories print T/C or A/G)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers.genotype import diplotype
from service import create_app
from tests.builders import SERVICE
from tests.test_genotype_forms import ig_genotype, ig_variant, phenotypes, tpmt_of

DATA = Path(__file__).parent / "data" / "review2"


@pytest.mark.parametrize("text,expected", [
    ("rs116855232 C/C", "*1/*1"), ("rs116855232 CC", "*1/*1"), ("rs116855232 0/0", "*1/*1"),
    ("rs116855232 homozygous reference", "*1/*1"), ("rs116855232 wild type", "*1/*1"),
    ("rs116855232 C/T", "*1/*3"), ("rs116855232 T/C", "*1/*3"), ("rs116855232 CT", "*1/*3"),
    ("rs116855232 C>T het", "*1/*3"), ("rs116855232 heterozygous", "*1/*3"), ("rs116855232 0/1", "*1/*3"),
    ("rs116855232 0|1", "*1/*3"),
    ("rs116855232 T/T", "*3/*3"), ("rs116855232 TT", "*3/*3"), ("rs116855232 1/1", "*3/*3"),
    ("rs116855232 homozygous", "*3/*3"), ("NUDT15 rs116855232 (T;T)", "*3/*3"),
])
def test_nudt15_rs116855232_genotype_at_the_site(text, expected):
    assert diplotype(text, "NUDT15")[0] == expected


def test_nudt15_zygosity_not_stated_stays_ambiguous():
    value, note = diplotype("rs116855232", "NUDT15")
    assert value == "*1/*3 or *3/*3" and "zygosity not stated" in note


@pytest.mark.parametrize("text", ["rs116855232 A/C", "rs116855232 C/A", "rs116855232 C/G"])
def test_nudt15_bases_not_at_the_site_are_unreadable(text):
    assert diplotype(text, "NUDT15")[0] == ""


def test_reference_at_one_site_says_only_that_site_was_tested():
    value, note = diplotype("rs116855232 C/C", "NUDT15")
    assert value == "*1/*1"
    assert "only this site was tested (rs116855232)" in note and "not excluded" in note


@pytest.mark.parametrize("text,expected", [
    ("rs1142345 T/T", "*1/*1"), ("rs1142345 T/C", "*1/*3C"), ("rs1142345 C/C", "*3C/*3C"),
    ("rs1142345 A/A", "*1/*1"), ("rs1142345 A/G", "*1/*3C"), ("rs1142345 G/G", "*41/*41"),  # plus strand first
    ("rs1800460 C/T", "*1/*3B"), ("rs1800460 G/A", "*1/*3B"), ("rs1800460 C/C", "*1/*1"),
    ("rs1800460 heterozygous", "*1/*3B"),
    ("rs1800462 C/G", "*1/*2"), ("rs1800462 G/C", "*1/*2"), ("rs1800462 0/1", "*1/*2"), ("rs1800462 1/1", "*2/*2"),
    ("rs1800462 C/C", ""), ("rs1800462 G/G", ""),  # C>G site: a homozygous base call is strand-ambiguous
    ("rs1800460 C/T, rs1142345 T/C", "*1/*3A or *3B/*3C"), ("rs1800460 T/T; rs1142345 C/C", "*3A/*3A"),
    ("rs1800460 C/C, rs1142345 T/C", "*1/*3C"), ("rs1800460 C/C, rs1142345 T/T", "*1/*1"),
])
def test_tpmt_rsid_genotypes(text, expected):
    assert diplotype(text, "TPMT")[0] == expected


def test_two_reference_sites_say_these_sites_were_tested():
    value, note = diplotype("rs1800460 C/C, rs1142345 T/T", "TPMT")
    assert value == "*1/*1" and "only these sites were tested (rs1800460, rs1142345)" in note


def test_phenotypes_from_rsid_genotypes():
    tpmt = ig_genotype("TPMT *1/*1")
    assert phenotypes(tpmt, ig_genotype("rs116855232 C/C", ("NUDT15",), pharmvar=False))["NUDT15"] == "Normal Metabolizer"
    assert phenotypes(tpmt, ig_genotype("rs116855232 C/T", ("NUDT15",), pharmvar=False))["NUDT15"] == "Intermediate Metabolizer"
    assert phenotypes(tpmt, ig_genotype("rs116855232 T/T", ("NUDT15",), pharmvar=False))["NUDT15"] == "Poor Metabolizer"
    nudt = ig_genotype("NUDT15 *1/*1", ("NUDT15",))
    assert phenotypes(nudt, ig_genotype("rs1142345 T/C", pharmvar=False))["TPMT"] == "Intermediate Metabolizer"
    assert phenotypes(nudt, ig_genotype("rs1142345 C/C", pharmvar=False))["TPMT"] == "Poor Metabolizer"
    assert phenotypes(nudt, ig_genotype("rs1800462 C/C", pharmvar=False))["TPMT"] == "unreadable"


def test_component_variants_with_allelic_state():
    # Genomics Reporting IG Variant: 81252-9 rsID + 53034-5 allelic state (LA6706-1 het / LA6705-3 hom)
    assert tpmt_of(ig_variant(None, "rs1142345", "het")) == "Intermediate Metabolizer"   # *1/*3C
    assert tpmt_of(ig_variant(None, "rs1800460", "hom")) == "Poor Metabolizer"           # *3B/*3B
    assert tpmt_of(ig_variant(None, "rs1800460", "het", present=False)) == "Normal Metabolizer"


@pytest.fixture(scope="module")
def audit_client():
    """The service as the reviewer ran it: evaluated as of 2026-12-07, CPIC."""
    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-12-07"})
    return app.test_client()


def _case(audit_client, name: str) -> list[dict]:
    req = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    assert req.pop("_profile", "cpic") == "cpic"
    req.pop("_review")
    resp = audit_client.post(f"/cds-services/{SERVICE[req['hook']]}", json=req)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def _rules(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def test_audit_case_reference_cc_is_not_a_poor_metabolizer(audit_client):
    cards = _case(audit_client, "aza-uc-nudt15-rs116855232-CC-reference")
    assert not {"pgx-poor-metabolizer", "pgx-reduce-dose", "pgx-uninterpretable"} & set(_rules(cards))


def test_audit_case_heterozygous_ct_is_intermediate_reduce_not_cancel(audit_client):
    cards = _case(audit_client, "aza-uc-nudt15-rs116855232-CT-heterozygous")
    assert "pgx-poor-metabolizer" not in _rules(cards)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert "NUDT15 intermediate metabolizer" in card["summary"] and "50 mg/day" in card["summary"]
    assert "NUDT15 *1/*3 → intermediate metabolizer" in card["detail"] and "rs116855232 C/T" in card["detail"]


def test_audit_case_homozygous_tt_is_a_definite_poor_metabolizer(audit_client):
    cards = _case(audit_client, "aza-uc-nudt15-rs116855232-TT")
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "pgx-poor-metabolizer"]
    assert "ambiguous" not in card["summary"] and "zygosity not stated" not in card["detail"]
    assert "NUDT15 *3/*3 → poor metabolizer" in card["detail"]


def test_single_site_normal_is_named_in_the_card_detail(audit_client):
    """TPMT *1/*3A with NUDT15 'rs116855232 C/C': the TPMT card lists the NUDT15 result as normal at the one
    site tested and says so (other NUDT15 alleles are not excluded)."""
    req = json.loads((DATA / "aza-uc-nudt15-rs116855232-CC-reference.json").read_text(encoding="utf-8"))
    req.pop("_profile"), req.pop("_review")
    tpmt = req["prefetch"]["pgx"]["entry"][0]["resource"]
    tpmt["valueCodeableConcept"]["text"] = "TPMT *1/*3A"
    resp = audit_client.post(f"/cds-services/{SERVICE[req['hook']]}", json=req)
    (card,) = [c for c in resp.get_json()["cards"] if c["source"]["topic"]["code"] == "pgx-reduce-dose"]
    assert "TPMT intermediate metabolizer" in card["summary"]
    assert "NUDT15 *1/*1 → normal metabolizer" in card["detail"]
    assert "only this site was tested (rs116855232)" in card["detail"]
