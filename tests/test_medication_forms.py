"""Thiopurine orders as EHRs write them (FHIR R4 MedicationRequest / Medication):
strength only in the product name, oral suspension in mL, mg/kg doses, weekly
schedules, renewals of long-standing therapy."""
from __future__ import annotations

from datetime import timedelta

import pytest

from fhir_mappers import build_facts
from fhir_mappers.medications import medication_fact, strength_of
from tests.builders import RXNORM, TODAY, UCUM, bundle, days_ago, dosage, med_request, normal_labs, patient, weight
from tests.conftest import indicator_of, summary_of
from tests.test_rules_clinical import active, ids, run


def order(display, rxnorm="0", **kw):
    """An order coded with an RxNorm code this service does not list: only the name carries the strength."""
    return med_request(rxnorm, display, **kw)


@pytest.mark.parametrize("display,per_unit,per_ml", [
    ("mercaptopurine 10 MG Oral Tablet", 10, None), ("Purinethol 50 mg tablet", 50, None),
    ("thioguanine 40 MG Oral Tablet [Tabloid]", 40, None), ("mercaptopurine 20 MG/ML Oral Suspension [Purixan]", None, 20),
    ("mercaptopurine 100 mg/5 mL oral suspension", None, 20), ("azathioprine tablets", None, None),
    ("azathioprine 25 mg or 50 mg tablets", None, None),  # two strengths named: unknown, never a guess
])
def test_strength_from_the_product_name(display, per_unit, per_ml):
    s = strength_of({"coding": [{"system": RXNORM, "code": "0", "display": display}]})
    assert (s.per_unit_mg, s.per_ml_mg) == (per_unit, per_ml)


def test_tablets_of_a_strength_named_only_in_the_text():
    fact = medication_fact(order("Tabloid 40 mg", dosages=[dosage(1, unit="tablet", code="{tbl}")]), is_draft=True)
    assert fact and fact.daily_dose and fact.ingredients == {"thioguanine"} and fact.daily_dose.mg == 40


def test_oral_suspension_dosed_in_ml():
    fact = medication_fact(med_request("1536484", "mercaptopurine 20 MG/ML Oral Suspension",
                                       dosages=[dosage(2.5, unit="mL", code="mL")]), is_draft=True)
    assert fact and fact.daily_dose and fact.daily_dose.mg == 50


def test_medication_resource_ingredient_strength():
    """R4 Medication with ingredient.strength as a Ratio (mg per tablet), referenced by the order."""
    med = {"resourceType": "Medication", "id": "aza-med", "code": {"text": "Azathioprine"},
           "ingredient": [{"itemCodeableConcept": {"text": "azathioprine"},
                           "strength": {"numerator": {"value": 75, "unit": "mg", "system": UCUM, "code": "mg"},
                                        "denominator": {"value": 1, "unit": "TAB", "system": UCUM, "code": "{tbl}"}}}]}
    mr = {"resourceType": "MedicationRequest", "id": "mr-ref", "status": "draft", "intent": "order",
          "medicationReference": {"reference": "#aza-med"}, "contained": [med], "subject": {"reference": "Patient/pt-1"},
          "dosageInstruction": [dosage(2, unit="tablet", code="{tbl}")]}
    fact = medication_fact(mr, is_draft=True)
    assert fact and fact.daily_dose and fact.daily_dose.mg == 150


def test_mg_per_kg_dose_uses_the_weight():
    mr = med_request(dosages=[dosage(2, unit="mg/kg", code="mg/kg")])
    facts = build_facts([mr], {"weight": bundle(weight(60)), "patient": patient()}, today=TODAY)
    dose = facts.orders[0].daily_dose
    assert dose and dose.mg == 120 and "mg/kg/day × 60 kg" in dose.text
    no_weight = build_facts([mr], {"weight": bundle(), "patient": patient()}, today=TODAY)
    assert no_weight.orders[0].daily_dose is None and "body weight" in no_weight.orders[0].dose_problem


def test_mg_per_kg_order_is_checked_against_the_range():
    found = run([med_request(dosages=[dosage(4, unit="mg/kg", code="mg/kg")])], weights=[weight(70)])
    assert "dose-above-range" in ids(found)


def test_weekly_azathioprine_is_a_schedule_error_not_100_mg_a_day():
    mr = med_request(dosages=[dosage(700, frequency=1, period=1, period_unit="wk")])
    fact = medication_fact(mr, is_draft=True)
    assert fact and fact.daily_dose is None and fact.schedule_problem == "700 mg once weekly"
    found = run([mr])
    card = next(f for f in found if f.rule_id == "dose-schedule-error")
    assert indicator_of(card) == "critical" and "700 mg once weekly" in summary_of(card)
    assert "100 mg" not in " ".join(summary_of(f) for f in found)
    assert "dose-unreadable" not in ids(found)


def test_every_other_day_is_still_averaged():
    fact = medication_fact(med_request(dosages=[dosage(100, frequency=1, period=2)]), is_draft=True)
    assert fact and fact.daily_dose and fact.daily_dose.mg == 50 and not fact.schedule_problem


def test_renewal_with_prior_prescription_is_not_a_new_start():
    renewal = med_request(daily_mg=150)
    renewal["priorPrescription"] = {"reference": "MedicationRequest/aza-2019"}
    found = run([renewal], meds=[])
    assert "dose-new-start" not in ids(found)
    assert "dose-new-start" in ids(run([med_request(daily_mg=150)], meds=[]))


def test_earlier_completed_order_and_dispense_count_as_history():
    old = active(mg=150, authored=days_ago(700))
    old["status"] = "completed"
    dispense = {"resourceType": "MedicationDispense", "id": "disp-1", "status": "completed",
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "197388", "display": "azathioprine 50 MG Oral Tablet"}]},
                "whenHandedOver": days_ago(25)}
    for history in ([old], [dispense]):
        facts = build_facts([med_request(daily_mg=150)], {"medications": bundle(*history)}, today=TODAY)
        assert facts.orders[0].prior_therapy, history[0]["resourceType"]
        assert "dose-new-start" not in ids(run([med_request(daily_mg=150)], meds=history))


# ------------------------------------------------ renewal evidence (issue 9 x issue 10 merge)
def _cbc_due(found):
    return next((f for f in found if f.rule_id == "monitoring-cbc-due"), None)


def test_renewal_of_long_standing_therapy_does_not_restart_the_weekly_phase():
    """priorPrescription on the draft, no active order in the request: a renewal, so labs 20 days old
    (inside the 90-day routine window, outside the 7-day weekly window) are enough."""
    renewal = med_request(daily_mg=100)
    renewal["priorPrescription"] = {"reference": "MedicationRequest/aza-2019"}
    found = run([renewal], meds=[], labs=normal_labs(20))
    assert _cbc_due(found) is None and "dose-new-start" not in ids(found)
    # the same order without history is a new start: weekly CBC, and the labs are too old
    f = _cbc_due(run([med_request(daily_mg=100)], meds=[], labs=normal_labs(20)))
    assert f is not None and f.values["why"] == "new_start" and f.values["early"]


def test_completed_order_two_years_ago_makes_a_renewal_established():
    old = active(mg=100, id="aza-2024", authored=days_ago(700))
    old["status"] = "completed"
    facts = build_facts([med_request(daily_mg=100)], {"past_medications": bundle(old)}, today=TODAY)
    pt = facts.orders[0].prior_therapy
    assert pt is not None and "MedicationRequest/aza-2024" in pt.evidence and pt.since == TODAY - timedelta(days=700)
    assert _cbc_due(run([med_request(daily_mg=100)], meds=[], past_meds=[old], labs=normal_labs(20))) is None


def test_history_that_began_recently_keeps_the_weekly_phase():
    """A dispense 25 days ago is earlier therapy, but it started within the first 8 weeks: weekly CBC."""
    dispense = {"resourceType": "MedicationDispense", "id": "disp-1", "status": "completed",
                "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "197388",
                                                          "display": "azathioprine 50 MG Oral Tablet"}]},
                "whenHandedOver": days_ago(25)}
    f = _cbc_due(run([med_request(daily_mg=100)], meds=[dispense], labs=normal_labs(20)))
    assert f is not None and f.values["early"] and f.values["why"] == "recent_start"


def test_an_order_after_a_stopped_one_is_a_restart_not_a_renewal():
    stopped = active(mg=100, id="aza-stopped", authored=days_ago(400))
    stopped["status"] = "stopped"
    facts = build_facts([med_request(daily_mg=100)], {"past_medications": bundle(stopped)}, today=TODAY)
    assert facts.orders[0].prior_therapy is None
    found = run([med_request(daily_mg=100)], meds=[], past_meds=[stopped], labs=normal_labs(20))
    assert "dose-new-start" in ids(found) and _cbc_due(found).values["why"] == "new_start"


def test_active_renewal_with_prior_prescription_is_established():
    """The only active order is 10 days old but renews an older prescription: not a recent start."""
    renewed = active(mg=100, id="aza-renewed", authored=days_ago(10))
    renewed["priorPrescription"] = {"reference": "MedicationRequest/aza-2019"}
    assert _cbc_due(run(meds=[renewed], labs=normal_labs(20))) is None
    plain = active(mg=100, id="aza-new", authored=days_ago(10))
    f = _cbc_due(run(meds=[plain], labs=normal_labs(20)))
    assert f is not None and f.values["why"] == "recent_start"
