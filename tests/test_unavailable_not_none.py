"""Data that could not be obtained is never read as 'none' (review item 3): active medications that
could not be fetched do not make a thiopurine order a 'new start', and a live-vaccine order whose
contraindication check was skipped gets at least a warning."""
from __future__ import annotations

from tests.builders import med_request, weight
from tests.conftest import detail_of, indicator_of, summary_of
from tests.test_rules_clinical import ids, one, run

ZOSTAVAX = {"resourceType": "MedicationRequest", "id": "vax", "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/pt-1"},
            "medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "121"}]}}


def test_thiopurine_order_with_medications_unavailable_is_not_called_a_new_start():
    found = run([med_request(daily_mg=150)], weights=[weight(72)], unavailable=("medications",))
    for f in found:
        assert "new start" not in summary_of(f).lower(), (f.rule_id, summary_of(f))
        assert "No active azathioprine" not in detail_of(f), f.rule_id
    f = one(found, "dose-new-start")
    assert "therapy status unknown" in summary_of(f)
    assert indicator_of(one(found, "data-incomplete")) == "warning"
    if "monitoring-cbc-due" in ids(found):
        assert "status unknown" in detail_of(one(found, "monitoring-cbc-due")) + summary_of(one(found, "monitoring-cbc-due"))


def test_thiopurine_order_with_medications_obtained_is_still_a_new_start():
    f = one(run([med_request(daily_mg=150)], weights=[weight(72)], meds=[]), "dose-new-start")
    assert "new start" in summary_of(f) and "unknown" not in summary_of(f)


def test_live_vaccine_with_medications_unavailable_is_at_least_a_warning():
    f = one(run([ZOSTAVAX], unavailable=("medications",)), "data-incomplete")
    assert indicator_of(f) in ("warning", "critical")


def test_live_vaccine_with_past_medications_unavailable_is_at_least_a_warning():
    f = one(run([ZOSTAVAX], meds=[], unavailable=("past_medications",)), "data-incomplete")
    assert indicator_of(f) in ("warning", "critical")


def test_conditions_unavailable_is_a_warning_the_indication_and_renal_checks_are_undone():
    f = one(run([med_request(daily_mg=150)], unavailable=("conditions",)), "data-incomplete")
    assert indicator_of(f) == "warning"


def test_weight_conflict_card_does_not_say_the_weight_was_not_used():
    from tests.builders import days_ago

    when = days_ago(3)
    f = one(run(weights=[weight(70, when=when, id="w1"), weight(45, when=when, id="w2")]), "data-incomplete")
    assert "45 kg, is used" in detail_of(f) and "not used" not in detail_of(f)
    assert indicator_of(f) == "warning"
