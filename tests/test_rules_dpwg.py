"""DPWG profile, poor metabolizer beside other findings on the same order: one order, one answer.

- With allopurinol the reduced dose DPWG offers as the second choice (10 % of the normal dose) is also
  reduced by allopurinol's fraction (FDA label section 7: one-third to one-quarter of the usual dose; with
  low or absent TPMT/NUDT15 activity further reduction or an alternative): both, in one plan.
- Beside a stop without a dose (hypersensitivity, severe cytopenia) no card states a dose for the order,
  the poor-metabolizer card included: it names the alternative only.
"""
from __future__ import annotations

import pytest

from hooks import wording
from rules.findings import ChangeDose
from tests import builders as b
from tests.builders import days_ago, med_request, normal_labs
from tests.test_cards_catalogue import ALL, ALLO, TPMT_PM, evaluate, height, one
from tests.test_rules_clinical import run

AZATHIOPRINE_PM_10_PERCENT = 0.10 * 2.0 * 70  # DPWG 10 % of the normal 2.0 mg/kg/day x 70 kg = 14 mg/day


def test_dpwg_poor_metabolizer_with_allopurinol_applies_both_reductions():
    found = evaluate([med_request(daily_mg=150)], guideline="dpwg", pgx=TPMT_PM, meds=[ALLO])
    pm = one(found, "pgx-poor-metabolizer")
    plan = pm.values["plan"]
    assert plan["rules"] == ["pgx-poor-metabolizer", "interaction-xanthine-oxidase"]
    assert plan["high"] == pytest.approx(AZATHIOPRINE_PM_10_PERCENT / 3)  # 4.67 mg/day, not 14
    assert plan["low"] == pytest.approx(AZATHIOPRINE_PM_10_PERCENT / 4)
    # no tablet gives under 4.67 mg/day: a specialist, never the 25 mg every other day of the 10 % alone
    assert plan["kind"] == "specialist" and not [a for a in pm.actions if isinstance(a, ChangeDose)]
    summary = wording.render(pm, "dpwg").summary
    assert "4.67 mg/day" in summary and "every other day" not in summary, summary
    xoi = one(found, "interaction-xanthine-oxidase")
    assert xoi.values.get("order_stopped") and "plan" not in xoi.values  # the dose is on one card only


def test_dpwg_poor_metabolizer_with_allopurinol_suspension_dose_under_both_reductions():
    mp = med_request("197931", "mercaptopurine 50 MG Oral Tablet", id="mp", daily_mg=100)
    pm = one(evaluate([mp], guideline="dpwg", pgx=TPMT_PM, meds=[ALLO]), "pgx-poor-metabolizer")
    (change,) = [a for a in pm.actions if isinstance(a, ChangeDose)]
    ten_percent = pm.values["reduced_mg"]
    assert change.daily_mg <= ten_percent / 3 + 1e-6 and change.regimen.form == "suspension"


def test_cpic_poor_metabolizer_with_allopurinol_is_unchanged():
    found = evaluate([med_request(daily_mg=150)], pgx=TPMT_PM, meds=[ALLO])
    pm = one(found, "pgx-poor-metabolizer")
    assert pm.dose is None and "plan" not in pm.values and pm.values["mode"] == "avoid"


HYPERSENSITIVITY = {"resourceType": "AllergyIntolerance", "id": "a1", "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1256",
                                         "display": "azathioprine"}]}}


def _severe_neutropenia() -> list[dict]:
    return [b.lab("751-8", 0.4, "10*9/L", when=days_ago(3), id="anc") if x["id"] == "anc" else x for x in normal_labs()]


def _with_stop(stop: str, orders, **kw):
    if stop == "cytopenia-severe":
        return run(orders, meds=[], labs=_severe_neutropenia(), **kw)
    return run(orders, meds=[], allergies=[HYPERSENSITIVITY], **kw)


@pytest.mark.parametrize("stop", ["hypersensitivity", "cytopenia-severe"])
def test_dpwg_poor_metabolizer_beside_a_stop_without_a_dose_states_no_dose(stop):
    found = _with_stop(stop, [med_request(daily_mg=150)], guideline="dpwg", pgx=TPMT_PM)
    assert stop in [f.rule_id for f in found]
    pm = one(found, "pgx-poor-metabolizer")
    assert pm.dose is None and "plan" not in pm.values and "reduced_mg" not in pm.values
    assert not [a for a in pm.actions if isinstance(a, ChangeDose)]
    text = wording.render(pm, "dpwg")
    assert "14 mg" not in text.detail and "mg/day" not in text.summary, (text.summary, text.detail)
    assert "or 10 %" not in text.summary and "alternative" in text.summary
    for f in found:  # no card about the order states a dose
        assert f.dose is None and "plan" not in f.values, f.rule_id


def test_malignant_poor_metabolizer_beside_severe_cytopenia_states_no_dose():
    mp = med_request("197931", "mercaptopurine 50 MG Oral Tablet", id="mp", daily_mg=75)
    found = evaluate([mp], labs=_severe_neutropenia(), pgx=TPMT_PM, weights=[b.weight(30)], extra=[height(135)],
                     conditions=[ALL])
    pm = one(found, "pgx-poor-metabolizer")
    assert pm.values["mode"] == "reduce" and pm.dose is None and "reduced_mg" not in pm.values
    assert "one tenth =" not in wording.render(pm).detail


@pytest.mark.parametrize("stop", ["hypersensitivity", "cytopenia-severe"])
def test_dpwg_poor_metabolizer_without_a_dose_beside_a_stop_offers_no_10_percent(stop):
    """The order has no readable dose: the poor-metabolizer card still names the alternative only."""
    found = _with_stop(stop, [med_request(daily_mg=None)], guideline="dpwg", pgx=TPMT_PM, weights=[])
    pm = one(found, "pgx-poor-metabolizer")
    summary = wording.render(pm, "dpwg").summary
    assert pm.values["mode"] == "avoid" and "10 %" not in summary and "alternative" in summary, summary


def test_dpwg_poor_metabolizer_with_allopurinol_names_both_reductions():
    """Summary and detail say the dose is under 10 %, and why: one order, one answer."""
    pm = one(evaluate([med_request(daily_mg=150)], guideline="dpwg", pgx=TPMT_PM, meds=[ALLO]), "pgx-poor-metabolizer")
    text = wording.render(pm, "dpwg")
    assert "under 10 % of the normal dose (4.67 mg/day" in text.summary, text.summary
    assert "Allopurinol (one-third to one-quarter of the usual dose, or of the dose taken when lower) applies too" in text.detail, text.detail
