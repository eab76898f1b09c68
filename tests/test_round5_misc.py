"""Round-5 review (misc. defects M1-M4, m1-m3), built from the reviewer's case files in tests/data/review5/."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.genotype import diplotype
from hooks.pipeline import HookEnv, run
from hooks.registry import SERVICES
from outbound.fhir_client import FhirClient

CASES = Path(__file__).resolve().parent / "data" / "review5"


def _cards(name: str) -> list[dict]:
    request = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    service = SERVICES[{"order-sign": "thiopurine-order-sign", "order-select": "thiopurine-order-select"}
                          .get(request["hook"], "thiopurine-medication-prescribe")]
    env = HookEnv(client=FhirClient(), today=lambda: date(2026, 12, 7))
    return run(service, request, env).response["cards"]


def _topics(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


# ---------------------------------------------------------------- M3: a stated zygosity is read

def test_c76_heterozygous_nudt15_hgvs_text_is_an_intermediate_metabolizer_not_poor():
    cards = _topics(_cards("c76-nudt15-hgvs-text-het"))
    assert "pgx-poor-metabolizer" not in cards, list(cards)
    im = cards["pgx-reduce-dose"]
    assert im["indicator"] == "warning" and "NUDT15 intermediate metabolizer" in im["summary"]


@pytest.mark.parametrize("text, gene, expected", [
    ("Heterozygous NUDT15 c.415C>T (p.Arg139Cys)", "NUDT15", "*1/*3"),
    ("het NUDT15 c.415C>T", "NUDT15", "*1/*3"),
    ("Homozygous for NUDT15 c.415C>T", "NUDT15", "*3/*3"),
    ("NUDT15 c.415C>T", "NUDT15", "*1/*3 or *3/*3"),  # not stated: both readings, the rules take the worse
    ("Heterozygous for TPMT*3A. Intermediate TPMT activity expected.", "TPMT", "*1/*3A"),
    ("homozygous for TPMT *3A", "TPMT", "*3A/*3A"),
    ("hemizygous TPMT*3C", "TPMT", "*3C/*3C"),  # one copy, carrying the variant: no functional allele
    ("Heterozygous for TPMT c.719A>G", "TPMT", "*1/*3C"),
    ("TPMT *3A heterozygous", "TPMT", "*1/*3A"),
])
def test_a_zygosity_word_before_or_after_the_variant_is_read(text, gene, expected):
    assert diplotype(text, gene)[0] == expected
