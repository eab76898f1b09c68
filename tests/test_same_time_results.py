"""Several results of one analyte with the same date and time (review item 2): the most severe is used
for the rules, a normal result never hides an abnormal one of the same time, and the card says the
results of that time disagree."""
from __future__ import annotations

import pytest

from tests.builders import days_ago, lab, normal_labs, weight
from tests.conftest import detail_of
from tests.test_rules_clinical import one, run

WHEN = days_ago(3)


@pytest.mark.parametrize("loinc,abnormal,unit,rule,normal_first", [
    ("731-0", 0.4, "10*9/L", "cytopenia", True),
    ("731-0", 0.4, "10*9/L", "cytopenia", False),
    ("1742-6", 300, "U/L", "liver-tests", True),
    ("1742-6", 300, "U/L", "liver-tests", False),
    ("62238-1", 20, "mL/min/{1.73_m2}", "renal-impairment", True),
    ("62238-1", 20, "mL/min/{1.73_m2}", "renal-impairment", False),
    ("751-8", 0.4, "10*9/L", "cytopenia-severe", True),
])
def test_abnormal_result_not_hidden_by_normal_one_of_same_time(loinc, abnormal, unit, rule, normal_first):
    bad = lab(loinc, abnormal, unit, when=WHEN, id="bad")
    labs = normal_labs(3)  # normal CBC, liver panel and eGFR at the same date and time
    labs = labs + [bad] if normal_first else [bad] + labs
    f = one(run(labs=labs), rule)
    detail = detail_of(f)
    assert "same date and time disagree" in detail, detail


def test_same_values_of_same_time_are_not_a_conflict():
    labs = normal_labs(3) + [lab("731-0", 0.4, "10*9/L", when=WHEN, id="l1"), lab("731-0", 0.4, "10*9/L", when=WHEN, id="l2")]
    labs = [x for x in labs if x["id"] != "lym"]
    f = one(run(labs=labs), "cytopenia")
    assert "disagree" not in detail_of(f)


def test_body_weights_of_same_time_that_disagree_are_said():
    findings = run(weights=[weight(70, when=WHEN, id="w1"), weight(45, when=WHEN, id="w2")])
    gap = one(findings, "data-incomplete")
    assert "disagree" in detail_of(gap), detail_of(gap)


@pytest.mark.parametrize("order", [0, 1])
def test_tpmt_activity_of_same_time_the_most_severe_counts(order):
    from fhir_mappers import build_facts
    from rules.tpmt_activity import latest_activity
    from tests.builders import TODAY, bundle
    from tests.test_tpmt_activity import activity

    pair = [activity(30, "U/mL", low=24, high=44, id="a-normal"), activity(2, "U/mL", low=24, high=44, id="a-low")]
    facts = build_facts([], {"pgx": bundle(*(pair if order else pair[::-1]))}, today=TODAY)
    r = latest_activity(facts)
    assert r is not None and r.reading == "Poor Metabolizer"
