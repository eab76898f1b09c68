"""The public CDS Hooks sandbox's Rx View order (cds-hooks/sandbox src/reducers/medication-reducers.js,
createFhirResource): the 'Number' box becomes ``dosageInstruction[0].doseQuantity`` with the value,
system UCUM and code '{pill}' and no ``unit``; 'Frequency' becomes timing.repeat frequency / period 1 /
periodUnit 'd' (periodUnits in the DSTU2 MedicationOrder); the drug is an RxNorm clinical drug with its
name as text and display. With a known product strength this is a dose in mg; a dose with no unit at
all is named as unreadable on a card."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhir_mappers import order_facts
from tests import builders as b
from tests.conftest import rule_ids

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def sandbox_order(number, *, rxcui="197388", name="azathioprine 50 MG Oral Tablet", frequency=1,
                  quantity=None, r4=False, dstu2=False) -> dict:
    """The MedicationRequest exactly as the sandbox's Rx View builds it (``quantity`` replaces the
    doseQuantity for the variants; ``r4`` puts it under doseAndRate as R4 does)."""
    dose = quantity if quantity is not None else {"value": number, "system": "http://unitsofmeasure.org", "code": "{pill}"}
    repeat = {"frequency": frequency, "period": 1, ("periodUnits" if dstu2 else "periodUnit"): "d"}
    di: dict = {"timing": {"repeat": repeat}}
    if r4:
        di["doseAndRate"] = [{"doseQuantity": dose}]
    else:
        di["doseQuantity"] = dose
    return {"resourceType": "MedicationRequest", "id": "sbx-1", "authoredOn": "2026-11-23", "status": "draft",
            "subject": {"reference": f"Patient/{b.PID}"}, "dosageInstruction": [di],
            "medicationCodeableConcept": {"text": name, "coding": [{"display": name, "system": RXNORM, "code": rxcui}]}}


@pytest.mark.parametrize("kw", [{}, {"r4": True}, {"dstu2": True},
                                {"quantity": {"value": 3, "unit": "tablet"}},
                                {"quantity": {"value": 3, "unit": "tablets"}, "r4": True}])
def test_sandbox_tablets_are_read_as_mg_when_the_strength_is_known(kw):
    (f,) = order_facts([sandbox_order(3, **kw)], {})
    assert f.daily_dose is not None and f.daily_dose.mg == 150, (f.daily_dose, f.dose_problem)


def test_sandbox_tablets_twice_daily():
    (f,) = order_facts([sandbox_order(1, frequency=2)], {})
    assert f.daily_dose is not None and f.daily_dose.mg == 100


@pytest.mark.parametrize("r4", [False, True])
def test_a_dose_with_no_unit_at_all_is_named_unreadable_on_a_card(call, r4):
    order = sandbox_order(3, quantity={"value": 3}, r4=r4)
    cards = call(b.hook_request(orders=[order], pre=b.prefetch(meds=[])))
    assert "dose-unreadable" in rule_ids(cards)
    card = next(c for c in cards if "dose-unreadable" in json.dumps(c.get("source", {})))
    assert "no unit" in (card["summary"] + card.get("detail", "")).lower()


def test_sandbox_order_gets_a_dose_card_in_mg(call):
    cards = call(b.hook_request(hook="order-select", orders=[sandbox_order(5)], pre=b.prefetch(meds=[]),
                                selections=["MedicationRequest/sbx-1"]))
    assert "dose-unreadable" not in rule_ids(cards)
    assert "250 mg" in json.dumps(cards)  # 5 tablets of 50 mg once daily, read as 250 mg/day


def test_demo_clicks_give_the_dose_the_examples_order():
    """scripts/demo.py tells the user how many tablets to enter: the sandbox order that number makes
    must be read into the example's daily dose."""
    import re

    from scripts.demo import clicks

    checked = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        req = json.loads(path.read_text())
        if "context" not in req or "draftOrders" not in req["context"]:
            continue
        text = clicks(req)
        m = re.search(r"Number (\d+(?:\.\d+)?) ", text)
        if not m:
            continue
        draft = req["context"]["draftOrders"]["entry"][0]["resource"]
        (expected,) = order_facts([copy.deepcopy(draft)], {})
        coding = draft["medicationCodeableConcept"]["coding"][0]
        (got,) = order_facts([sandbox_order(float(m.group(1)), rxcui=coding["code"], name=coding["display"])], {})
        assert got.daily_dose is not None and expected.daily_dose is not None, (path.name, got.dose_problem)
        assert got.daily_dose.mg == pytest.approx(expected.daily_dose.mg), path.name
        checked += 1
    assert checked >= 3
