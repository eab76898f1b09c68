"""Autoimmune hepatitis (issue 17, item 4): liver findings relative to the disease, and the EASL 2015
bilirubin start condition, at each boundary."""
from __future__ import annotations

import pytest

from hooks.wording import render
from tests.builders import days_ago, lab, med_request, normal_labs
from tests.conftest import indicator_of
from tests.test_rules_clinical import active, condition, ids, one, run

AIH = condition("408335007")
START = [med_request(daily_mg=50)]


def labs_with(**extra):
    base = {x["id"]: x for x in normal_labs()}
    base.update(extra)
    return list(base.values())


def bili(value, unit="umol/L", days=3):
    return lab("1975-2", value, unit, when=days_ago(days), id="bili")


def test_raised_alt_before_the_first_dose_is_the_disease_not_a_reason_to_withhold():
    fs = run(START, meds=[], conditions=[AIH], labs=labs_with(alt=lab("1742-6", 480, "U/L", when=days_ago(3), id="alt"), bili=bili(30)))
    assert "liver-tests" not in ids(fs)
    f = one(fs, "aih-liver-baseline")
    card = render(f)
    assert indicator_of(f) == "info" and "withhold" not in card.summary.lower() and "disease" in card.summary
    assert "not a reason to withhold" in card.detail


def test_raised_alt_on_treatment_is_relapse_or_toxicity_never_a_plain_withhold():
    fs = run([med_request(daily_mg=100)], meds=[active()], conditions=[AIH],
             labs=labs_with(alt=lab("1742-6", 300, "U/L", when=days_ago(3), id="alt")))
    f = one(fs, "liver-tests")
    assert f.values["aih"] == "on_treatment" and "relapse" in render(f).summary
    assert "withhold azathioprine and discuss" not in render(f).detail


def test_without_aih_raised_alt_still_says_withhold():
    f = one(run([med_request(daily_mg=100)], labs=labs_with(alt=lab("1742-6", 300, "U/L", when=days_ago(3), id="alt"))), "liver-tests")
    assert not f.values["aih"] and "withhold" in render(f).detail


@pytest.mark.parametrize("value,unit,expected", [
    (99, "umol/L", None), (100, "umol/L", "high"), (101, "umol/L", "high"),
    (5.8, "mg/dL", None),   # 99.2 umol/L
    (5.9, "mg/dL", "high"),  # 100.9 umol/L: not below 100 umol/L
    (7, "mg/dL", "high"),
])
def test_bilirubin_start_condition_at_its_boundary(value, unit, expected):
    fs = run(START, meds=[], conditions=[AIH], labs=labs_with(bili=bili(value, unit)))
    found = [f for f in fs if f.rule_id == "aih-start-bilirubin"]
    assert [f.values["state"] for f in found] == ([expected] if expected else [])
    if expected:
        assert indicator_of(found[0]) == "warning" and "100 µmol/L" in render(found[0]).summary


@pytest.mark.parametrize("days,missing", [(14, False), (15, True)])
def test_bilirubin_must_be_current(days, missing):
    fs = run(START, meds=[], conditions=[AIH], labs=labs_with(bili=bili(20, days=days)))
    found = [f for f in fs if f.rule_id == "aih-start-bilirubin"]
    assert bool(found) is missing
    if missing:
        assert found[0].values["state"] == "missing" and indicator_of(found[0]) == "info"
        assert [a.loinc for a in found[0].actions] == ["1975-2"]


def test_bilirubin_rule_only_for_a_first_order_in_aih():
    assert "aih-start-bilirubin" not in ids(run(START, meds=[active()], conditions=[AIH]))
    assert "aih-start-bilirubin" not in ids(run(START, meds=[], conditions=[condition("34000006")]))
