"""TPMT enzyme activity as laboratories send it: every common unit, the
laboratory's range and interpretation, words instead of numbers, results that
cannot be judged. Shapes follow the laboratories' catalogue entries (ARUP
0092066: U/mL RBC, LOINC 21563-2; Sandwell & West Birmingham: mU/L; St Thomas':
nmol/h/g Hb; LOINC 43421-7 for activity per mass)."""
from __future__ import annotations

import pytest

from fhir_mappers import build_facts
from hooks.wording import activity_text
from rules.tpmt_activity import latest_activity
from tests import builders as b
from tests.builders import LOINC, TODAY, bundle, med_request, normal_labs, weight
from tests.conftest import detail_of, summary_of
from tests.test_rules_clinical import active, ids, run

V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def activity(value=None, unit="U/mL", *, loinc="21563-2", low=None, high=None, interp=None, interp_text=None,
             value_string=None, status="final", id="tpmt-act"):
    """An ARUP-style TPMT activity Observation (0092066 reports "U/mL" with the ranges of its catalogue)."""
    obs = {"resourceType": "Observation", "id": id, "status": status,
           "code": {"coding": [{"system": LOINC, "code": loinc, "display": "Thiopurine methyltransferase [Enzymatic activity/volume] in Red Blood Cells"}],
                    "text": "Thiopurine Methyltransferase, RBC"},
           "subject": {"reference": "Patient/pt-1"}, "effectiveDateTime": "2025-03-01"}
    if value is not None:
        obs["valueQuantity"] = {"value": value, "unit": unit}
    if value_string is not None:
        obs["valueString"] = value_string
    if low is not None or high is not None:
        rr = {}
        if low is not None:
            rr["low"] = {"value": low, "unit": unit}
        if high is not None:
            rr["high"] = {"value": high, "unit": unit}
        obs["referenceRange"] = [rr]
    if interp or interp_text:
        obs["interpretation"] = [{"coding": [{"system": V3, "code": interp}] if interp else [], "text": interp_text}]
    return obs


def reading(obs) -> tuple[str, str]:
    facts = build_facts([], {"pgx": bundle(obs)}, today=TODAY)
    r = latest_activity(facts)
    return (r.reading, activity_text(r)) if r else ("", "")


def pgx_rules(obs, genotype_tpmt=False):
    pgx = [b.genotype_ig("NUDT15", "*1/*1"), obs] + ([b.genotype_ig("TPMT", "*1/*1")] if genotype_tpmt else [])
    return [r for r in ids(run([med_request(daily_mg=150)], pgx=pgx, meds=[active(mg=150)]))
            if r.startswith("pgx-") or r == "tpmt-activity-high"]


def test_far_below_the_laboratory_range_is_deficient_not_intermediate():
    """The issue's case: 2 U/mL with a range of 24-44 is deficient."""
    obs = activity(2, low=24, high=44, interp="L")
    assert reading(obs)[0] == "Poor Metabolizer"
    assert pgx_rules(obs) == ["pgx-poor-metabolizer"]


@pytest.mark.parametrize("value,unit,expected", [
    (16.9, "U/mL", "Poor Metabolizer"), (17.0, "U/mL", "Intermediate Metabolizer"), (23.9, "U/mL{RBC}", "Intermediate Metabolizer"),
    (24.0, "U/mL RBC", "Normal Metabolizer"), (44.0, "U/mL", "Normal Metabolizer"), (44.1, "U/mL", "High"),
    # nmol/h/mL RBC is the same unit (1 U = 1 nmol 6-MMP per hour)
    (16.0, "nmol/h/mL", "Poor Metabolizer"), (30.0, "nmol/hr/mL RBC", "Normal Metabolizer"),
    # mU/L (Sandwell & West Birmingham): deficient < 10, gap 10-19.9 (more severe), low 20-67, normal 68-150
    (9.9, "mU/L", "Poor Metabolizer"), (15, "mU/L", "Poor Metabolizer"), (20, "mU/L", "Intermediate Metabolizer"),
    (67.9, "mU/L", "Intermediate Metabolizer"), (68, "mU/L", "Normal Metabolizer"), (150.1, "mU/L", "High"),
    # nmol/h/g Hb (St Thomas'): deficient < 10, carrier 10-25, normal 26-50
    (9.9, "nmol/h/g Hb", "Poor Metabolizer"), (25, "nmol/h/g Hb", "Intermediate Metabolizer"),
    (26, "nmol/h/g Hb", "Normal Metabolizer"), (50.1, "nmol/h/g Hb", "High"),
])
def test_unit_cut_offs_at_their_boundaries(value, unit, expected):
    assert reading(activity(value, unit))[0] == expected


def test_per_mass_unit_is_judged_by_the_laboratory_range():
    """U/g Hb (LOINC 43421-7) has no agreed cut-offs: the range decides, and a value below it is not normal."""
    obs = activity(0.2, "U/g Hb", loinc="43421-7", low=0.5, high=0.9)
    r, evidence = reading(obs)
    # round-4 H7: below the range, no bands: intermediate or deficient cannot be told apart (counted as poor)
    assert r == "Poor Metabolizer" and "possible deficiency" in evidence
    assert reading(activity(0.7, "U/g Hb", loinc="43421-7", low=0.5, high=0.9))[0] == "Normal Metabolizer"
    assert reading(activity(0.2, "U/g Hb", loinc="43421-7", low=0.5, high=0.9, interp="LL"))[0] == "Poor Metabolizer"


def test_the_most_severe_of_cut_off_range_and_interpretation_counts():
    # range below (another assay: ARUP's cut-offs not applied): a possible deficiency, counted as poor (round-4 H7)
    assert reading(activity(30, low=35, high=60))[0] == "Poor Metabolizer"
    assert reading(activity(30, low=35, high=60, interp_text="Intermediate activity"))[0] == "Intermediate Metabolizer"
    assert reading(activity(30, interp_text="Deficient"))[0] == "Poor Metabolizer"  # words outrank
    assert reading(activity(30, interp_text="Not deficient"))[0] == "Normal Metabolizer"  # negation does not flip


def test_words_instead_of_a_number():
    assert reading(activity(value_string="Deficient"))[0] == "Poor Metabolizer"
    assert reading(activity(value_string="Intermediate activity"))[0] == "Intermediate Metabolizer"
    assert reading(activity(value_string="Normal TPMT activity"))[0] == "Normal Metabolizer"
    # "low" alone is deficient at ARUP and carrier in the UK: without a number the worse counts
    assert reading(activity(value_string="Low"))[0] == "Poor Metabolizer"
    # a number sent as text, with a comparator
    r, evidence = reading(activity(value_string="<1.0 U/mL"))
    assert r == "Poor Metabolizer" and "<1" in evidence


def test_unjudgeable_result_is_named_never_no_result_on_record():
    obs = activity(12.0, "units/L")  # a unit without cut-offs, no range, no interpretation
    r, why = reading(obs)
    assert r == "" and "units/L" in why
    found = run([med_request(daily_mg=150)], pgx=[b.genotype_ig("NUDT15", "*1/*1"), obs], meds=[active(mg=150)])
    card = next(f for f in found if f.rule_id == "pgx-uninterpretable")
    assert "TPMT activity 12 units/L" in detail_of(card) and "could not be judged" in detail_of(card)
    assert "no result on record" not in detail_of(card).split("TPMT activity")[1]
    unreadable_words = activity(value_string="see scanned report")
    card = next(f for f in run(pgx=[b.genotype_ig("NUDT15", "*1/*1"), unreadable_words]) if f.rule_id == "pgx-uninterpretable")
    assert "see scanned report" in detail_of(card)


def test_preliminary_activity_is_used_and_said():
    obs = activity(5, status="preliminary")
    found = run([med_request(daily_mg=150)], pgx=[b.genotype_ig("NUDT15", "*1/*1"), obs], meds=[active(mg=150)])
    card = next(f for f in found if f.rule_id == "pgx-poor-metabolizer")
    assert "PRELIMINARY" in detail_of(card) and summary_of(card).startswith("PRELIMINARY result")


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_withdrawn_activity_is_not_used(status):
    assert reading(activity(2, status=status)) == ("", "")


# ------------------------------------------------------------ lab status handling
def _anc(value, status):
    obs = b.lab("751-8", value, "10*9/L", id="anc-1")
    obs["status"] = status
    return obs


def test_preliminary_neutrophil_count_is_used_and_every_card_says_so():
    labs = [o for o in normal_labs() if o["id"] != "anc"] + [_anc(0.4, "preliminary")]
    found = run(labs=labs)
    card = next(f for f in found if f.rule_id == "cytopenia-severe")
    assert "PRELIMINARY" in summary_of(card) and "PRELIMINARY" in detail_of(card)


@pytest.mark.parametrize("status,severe", [("final", True), ("amended", True), ("corrected", True),
                                           ("entered-in-error", False), ("cancelled", False)])
def test_lab_status(status, severe):
    labs = [o for o in normal_labs() if o["id"] != "anc"] + [_anc(0.4, status)]
    assert ("cytopenia-severe" in ids(run(labs=labs))) is severe


def test_preliminary_diagnostic_report_makes_its_results_preliminary():
    report = {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "preliminary",
              "code": {"text": "TPMT"}, "contained": [activity(5, id="c1")], "result": [{"reference": "#c1"}]}
    facts = build_facts([], {"pgx": bundle(report)}, today=TODAY)
    assert facts.labs["tpmt_activity"][0].preliminary
    report["status"] = "entered-in-error"
    assert "tpmt_activity" not in build_facts([], {"pgx": bundle(report)}, today=TODAY).labs


def test_activity_in_mu_per_l_in_both_modes(call):
    """A UK laboratory's 8 mU/L result (deficient): read from prefetch and found by the FHIR fallback query."""
    import responses

    from tests import fhir_fake
    from tests.builders import hook_request, prefetch
    from tests.conftest import rule_ids

    obs = activity(8, "mU/L", low=68, high=150)
    pgx = [b.genotype_ig("NUDT15", "*1/*1"), obs]
    assert "pgx-poor-metabolizer" in rule_ids(call(hook_request(pre=prefetch(pgx=pgx))))
    base = "https://ehr.example/r4/fhir"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fhir_fake.serve(rsps, base, pgx + [weight(70)] + normal_labs())
        assert "pgx-poor-metabolizer" in rule_ids(call(hook_request(fhir_server=base, token="tok-123")))


def test_an_older_deficient_result_is_not_hidden_by_a_newer_unreadable_one():
    old = activity(3, id="old")
    new = activity(value_string="see scanned report", id="new")
    new["effectiveDateTime"] = "2025-06-01"
    found = run([med_request(daily_mg=150)], pgx=[b.genotype_ig("NUDT15", "*1/*1"), old, new], meds=[active(mg=150)])
    card = next(f for f in found if f.rule_id == "pgx-poor-metabolizer")
    assert "see scanned report" in detail_of(card) and "could not be judged" in detail_of(card)


@pytest.mark.parametrize("comparator,value,expected", [
    ("<", 17, "Poor Metabolizer"),      # "< 17 U/mL": below the deficient cut-off whatever the figure
    ("<=", 17, "Poor Metabolizer"),
    ("<", 30, "Poor Metabolizer"),      # an upper limit only: open downwards, never read as normal
    (">", 50, "High"),
])
def test_a_limit_result_is_read_on_its_open_side(comparator, value, expected):
    obs = activity(value, low=24, high=44)
    obs["valueQuantity"]["comparator"] = comparator
    assert reading(obs)[0] == expected
