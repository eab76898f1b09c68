"""Rules made cheaper by design, with identical answers: the look-up tables built at load give what the
per-call work gave, and the start imports only what the start needs."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rules import interactions
from rules.knowledge_base import diplotype_pairs, load, normalise_diplotype
from rules.pgx import phenotype_of_diplotype

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("gene", ["TPMT", "NUDT15"])
def test_the_diplotype_pair_table_answers_as_the_normalised_table(gene):
    kb = load()
    table, pairs = kb.diplotypes[gene], kb.diplotype_pairs[gene]
    alleles = sorted({*kb.allele_function[gene], *(a for key in table for a in key.split("/")), "*999", "*1X"})
    assert len(alleles) > 10
    for a, b in itertools.product(alleles, repeat=2):
        assert pairs.get((a, b)) == table.get(normalise_diplotype(a, b)), (a, b)
    assert len(pairs) >= len(table)


def test_a_pair_table_holds_both_orders_of_every_row():
    pairs = diplotype_pairs({"*1/*3A": "Intermediate Metabolizer", "*3A/*3A": "Poor Metabolizer"})
    assert dict(pairs) == {("*1", "*3A"): "Intermediate Metabolizer", ("*3A", "*1"): "Intermediate Metabolizer",
                           ("*3A", "*3A"): "Poor Metabolizer"}


@pytest.mark.parametrize("text,phenotype", [
    ("*1/*3A", "Intermediate Metabolizer"), ("*3A/*1", "Intermediate Metabolizer"),
    ("TPMT*1/TPMT*3A", "Intermediate Metabolizer"), ("*3A/*3C", "Poor Metabolizer"), ("*1/*1", "Normal Metabolizer"),
])
def test_diplotypes_in_either_order_read_as_before(text, phenotype):
    assert phenotype_of_diplotype("TPMT", text)[0] == phenotype


def test_an_allele_pair_not_in_the_tables_is_still_named():
    phenotype, problems = phenotype_of_diplotype("TPMT", "*1/*999")
    assert phenotype is None and problems[0]["code"] == "not_in_tables" and "*999" in problems[0]["alleles"]


def test_the_other_interaction_tables_are_every_table_in_the_file_order():
    tables = interactions._other_tables()
    others = load().interactions.others
    assert [key for key, *_ in tables] == list(others)
    assert [rule_id for _, rule_id, *_ in tables] == [interactions.other_rule_id(k) for k in others]
    assert all(drugs == frozenset(others[key].ingredients) for key, _, drugs, _ in tables)
    assert {rule_id for _, rule_id, *_ in tables} <= set(interactions.rule_ids())


def test_the_start_imports_neither_jsonschema_nor_alembic(tmp_path):
    """create_app on a new data directory: the jsonschema-rs validators are compiled, the new store is built at
    head; jsonschema (the judge of refused bodies) and Alembic (migrations of an older store) are not imported."""
    code = ("import sys, json; from service import create_app; create_app({'auth_required': False}); "
            "print(json.dumps({m: m in sys.modules for m in ('jsonschema', 'referencing', 'alembic')}))")
    env = {**os.environ, "AZA_CDS_DATA_DIR": str(tmp_path / "data")}
    env.pop("AZA_CDS_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"jsonschema": False, "referencing": False,
                                                                 "alembic": False}
    assert (tmp_path / "data" / "feedback.sqlite3").is_file()


def test_a_body_only_jsonschema_can_judge_still_gets_its_message():
    """jsonschema is imported on first need: a format error (valid structure) is still described by it."""
    from service.validation import first_error

    body = {"hook": "order-sign", "hookInstance": "x", "context": {}, "fhirServer": "not a uri at all"}
    error = first_error("ServiceRequest", body)
    assert error is not None and error[0].startswith("$")


def test_phrases_share_the_catalogue_environment():
    """The [meta] macros are compiled once: every [phrases] template lives in the wording's one environment."""
    from hooks import wording

    import jinja2

    env = wording._catalogue_env()
    templates = [wording._phrase_template(name) for name in wording.PHRASES]
    compiled = [t for t in templates if isinstance(t, jinja2.Template)]
    assert compiled  # phrases with placeholders are compiled; plain ones are kept as their text
    assert all(t.environment is env for t in compiled)
