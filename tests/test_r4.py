"""Every resource in a suggestion is valid FHIR R4, whatever shape the draft order came in.

Scenarios cover every rule whose suggestion carries a resource (a changed MedicationRequest or a
ServiceRequest); draft shapes include the public sandbox's (``category`` and ``reasonCode`` as
objects), one full of invalid or unknown fields, one naming its drug by reference only, and a
minimal one. Each resource is validated with fhir.resources (R4B models, which accept R4 here).
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from hooks import r4
from tests.builders import RXNORM, UCUM, genotype_ig, hook_request, lab, med_request, normal_labs, prefetch, weight

AZA = {"coding": [{"system": RXNORM, "code": "197388", "display": "azathioprine 50 MG Oral Tablet"}]}


def _sandbox(draft: dict) -> dict:
    d = copy.deepcopy(draft)
    d["category"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                 "code": "outpatient"}]}
    d["reasonCode"] = {"coding": [{"system": "http://snomed.info/sct", "code": "69896004",
                                   "display": "Rheumatoid arthritis"}]}
    return d


def _hostile(draft: dict) -> dict:
    d = copy.deepcopy(draft)
    d.update({"text": {"status": "generated", "div": "<div>old dose</div>"}, "category": "outpatient",
              "reasonCode": [{"coding": {"code": "69896004", "system": "http://snomed.info/sct"}}, "RA", {}],
              "priority": "whenever", "authoredOn": "23/11/2026", "requester": "Dr House", "note": {"text": "x"},
              "contained": [{"resourceType": "Nonsense"}], "unknownField": {"a": 1}, "extension": [{"x": 1}],
              "intent": "wish", "status": "pending", "encounter": {"reference": ""},
              "medicationCodeableConcept": {**AZA, "coding": AZA["coding"] + [{"code": "has space  twice"}, 7],
                                            "text": "\ud800"}})
    if d.get("dosageInstruction"):  # a vaccine order may carry none
        d["dosageInstruction"][0]["route"] = {"coding": "oral"}
    return d


def _by_reference(draft: dict) -> dict:
    d = copy.deepcopy(draft)
    del d["medicationCodeableConcept"]
    d["medicationReference"] = {"reference": "#aza", "display": "azathioprine 50 mg tablet"}
    d["contained"] = [{"resourceType": "Medication", "id": "aza", "code": AZA}]
    return d


def _minimal(draft: dict) -> dict:
    return {k: v for k, v in draft.items() if k in ("resourceType", "medicationCodeableConcept", "dosageInstruction")}


SHAPES = {"builder": lambda d: d, "sandbox": _sandbox, "hostile": _hostile, "by-reference": _by_reference,
          "minimal": _minimal}
TPMT_IM = [genotype_ig("TPMT", "*1/*3A"), genotype_ig("NUDT15", "*1/*1")]
SCENARIOS: dict[str, tuple[int, dict[str, Any]]] = {
    # name: (daily mg of the draft, prefetch overrides)
    "tpmt-intermediate": (150, {"pgx": TPMT_IM}),
    "dose-above-range": (400, {}),
    "allopurinol": (150, {"meds": [med_request("519", "allopurinol 300 MG", id="allo", status="active", daily_mg=300)]}),
    "no-pgx-test": (100, {"pgx": []}),
    "warfarin": (100, {"meds": [med_request("855332", "warfarin 5 MG", id="warf", status="active", daily_mg=5)]}),
    "no-weight": (100, {"weights": []}),
    "implausible-weight": (100, {"weights": [weight(900)]}),
    "no-labs": (100, {"labs": []}),
    "old-cbc": (100, {"labs": [lab("6690-2", 6.0, "10*9/L", when="2025-01-01")]}),
}
EXPECTED_RULES = {"pgx-reduce-dose", "dose-above-range", "interaction-xanthine-oxidase", "pgx-test-missing",
                  "interaction-warfarin", "weight-missing", "weight-implausible", "monitoring-cbc-due"}
SEEN: set[str] = set()


def _resources(client, scenario: str, shape: str) -> list[tuple[str, dict]]:
    mg, over = SCENARIOS[scenario]
    draft = SHAPES[shape](med_request(daily_mg=mg))
    pre = prefetch(**{"labs": normal_labs(), **over})
    resp = client.post("/cds-services/thiopurine-order-sign", json=hook_request(orders=[draft], pre=pre))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    out = []
    for card in resp.get_json()["cards"]:
        for s in card.get("suggestions", []):
            for a in s.get("actions", []):
                if a["type"] in ("create", "update"):
                    out.append((card["source"]["topic"]["code"], a["resource"]))
    return out


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_suggested_resource_is_valid_r4(client, scenario, shape):
    found = _resources(client, scenario, shape)
    for rule, resource in found:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # raises when invalid
        SEEN.add(rule)
        if resource["resourceType"] == "MedicationRequest":
            assert isinstance(resource.get("category", []), list) and isinstance(resource.get("reasonCode", []), list)
            assert "text" not in resource and "unknownField" not in resource and "contained" not in resource
            assert resource["status"] in r4.MEDICATION_REQUEST_STATUS and resource["subject"]["reference"]


def test_every_rule_with_a_resource_suggestion_was_validated():
    # runs after the parametrized cases above (pytest keeps file order)
    assert EXPECTED_RULES <= SEEN, EXPECTED_RULES - SEEN


def test_the_sandbox_shape_is_kept_as_lists():
    draft = _sandbox(med_request(daily_mg=150))
    out = r4.updated_medication_request(draft, [{"text": "50 mg once daily"}])
    assert out is not None
    assert out["category"] == [draft["category"]] and out["reasonCode"] == [draft["reasonCode"]]


def test_no_readable_medication_or_subject_means_no_resource():
    assert r4.updated_medication_request({"resourceType": "MedicationRequest"}, [{"text": "x"}]) is None
    no_subject = {"medicationCodeableConcept": AZA}
    assert r4.updated_medication_request(no_subject, [{"text": "x"}]) is None
    with_subject = r4.updated_medication_request(no_subject, [{"text": "x"}], patient_id="p1")
    assert with_subject is not None and with_subject["subject"] == {"reference": "Patient/p1"}


# ------------------------------------------------ every rule of the catalogue, every draft shape

def _rule_cases() -> dict[str, Any]:
    """Each emitted rule's value-test scenario (tests/test_cards_catalogue.py), plus the dose plans
    whose suggestion has two Dosages (alternate days) or a dayOfWeek schedule (three times a week)."""
    from tests import test_cards_catalogue as tc

    cases: dict[str, Any] = {rule: scenario for rule, (scenario, _) in tc.VALUE_CASES.items()}
    allo = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo", status="active", daily_mg=300,
                       authored=tc.days_ago(300))
    # allopurinol: 1/4-1/3 of 120 mg = 30-40 mg/day -> 50 mg and 25 mg on alternate days (two Dosages)
    cases["plan-alternate-days"] = lambda: tc._run([med_request(daily_mg=120)], meds=tc.ESTABLISHED + [allo])
    # ALL, TPMT poor metabolizer: one tenth of the m2 dose, three times a week (dayOfWeek); round-17 H3: of the oral
    # suspension written in mL (a tablet draft gets no update: its tablets cannot give the dose)
    cases["plan-three-times-a-week"] = lambda: tc._run(
        [med_request("1536484", "mercaptopurine 20 MG/ML Oral Suspension", id="mp", dosages=[
            {"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
             "doseAndRate": [{"doseQuantity": {"value": 3.75, "unit": "mL", "code": "mL", "system": UCUM}}]}])],
        pgx=tc.TPMT_PM, weights=[weight(30)], extra=[tc.height(135)], conditions=[tc.ALL], meds=[])
    return cases


RULE_CASES = _rule_cases()


def _rendered_with_shape(monkeypatch, case: str, shape: str) -> list[dict]:
    """The cards of one rule scenario, with every draft order given in ``shape`` when its suggestion
    resource is built (what the EHR sent is what suggestion_resource works from)."""
    import rules
    from hooks.cards import render_cards
    from tests.builders import TODAY

    seen: list = []
    real = rules.evaluate

    def capture(facts, *args, **kwargs):
        seen.append(facts)
        return real(facts, *args, **kwargs)

    monkeypatch.setattr(rules, "evaluate", capture)
    findings = RULE_CASES[case]()
    monkeypatch.setattr(rules, "evaluate", real)
    facts = seen[-1]
    drafts = {m.ref: (SHAPES[shape](m.resource) if m.is_draft else m.resource)
              for m in facts.orders + facts.active_medications if m.ref and m.resource}
    return render_cards(findings, drafts=drafts, patient_id="pt-1", today=TODAY)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_every_rule_suggestion_is_valid_r4_for_every_draft_shape(monkeypatch, case, shape):
    cards = _rendered_with_shape(monkeypatch, case, shape)
    for card in cards:
        for s in card.get("suggestions", []):
            for a in s.get("actions", []):
                if a["type"] in ("create", "update"):
                    get_fhir_model_class(a["resource"]["resourceType"]).model_validate(a["resource"])
                else:
                    assert a["type"] == "delete" and a["resourceId"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_dose_plans_with_two_dosages_or_days_of_the_week_are_valid_r4(monkeypatch, shape):
    def dosages(case):
        return [a["resource"]["dosageInstruction"] for c in _rendered_with_shape(monkeypatch, case, shape)
                for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]

    (alternate,) = dosages("plan-alternate-days")
    assert len(alternate) == 2 and {d["timing"]["repeat"]["period"] for d in alternate} == {2}
    if shape in ("hostile", "by-reference"):
        # these shapes put the azathioprine 50 mg tablet product on the draft: its tablets cannot give the suspension's
        # dose, so no update is offered (round-17 H3)
        assert dosages("plan-three-times-a-week") == []
        weekly = []
    else:
        (weekly,) = dosages("plan-three-times-a-week")
        assert weekly[0]["timing"]["repeat"]["dayOfWeek"] == ["mon", "wed", "fri"]
    for d in alternate + weekly:  # each Dosage on its own, as fhir.resources sees it inside the order
        get_fhir_model_class("Dosage").model_validate(d)
