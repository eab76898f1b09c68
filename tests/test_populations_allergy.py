"""Allergy and intolerance with their meaning (issue 17, item 3): what the record names (a drug, a class,
a brand, in the code, the note or the reaction text), and what it means (type, criticality, statuses,
reactions), at each boundary, through the real mapper and rules."""
from __future__ import annotations

import pytest

from fhir_mappers.allergies import allergy_facts
from hooks.wording import render
from tests.conftest import indicator_of
from tests.test_rules_clinical import ids, one, run

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


def allergy(code=None, *, text=None, note=None, status="active", verification=None, type_=None, criticality=None,
            reactions=None, id="al-1"):
    a: dict = {"resourceType": "AllergyIntolerance", "id": id, "patient": {"reference": "Patient/pt-1"}}
    if code is not None or text is not None:
        a["code"] = {**({"coding": code} if code else {}), **({"text": text} if text else {})}
    if status:
        a["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                           "code": status}]}
    if verification:
        a["verificationStatus"] = {"coding": [{"code": verification}]}
    if type_:
        a["type"] = type_
    if criticality:
        a["criticality"] = criticality
    if note:
        a["note"] = [{"text": note}]
    if reactions:
        a["reaction"] = reactions
    return a


def reaction(*manifestations, severity=None, description=None):
    r: dict = {"manifestation": [{"text": m} for m in manifestations]}
    if severity:
        r["severity"] = severity
    if description:
        r["description"] = description
    return r


# ------------------------------------------------------------------ what the record names (the mapper)
@pytest.mark.parametrize("text,expected", [
    ("Thiopurine analogues - hypersensitivity", {"azathioprine", "mercaptopurine", "thioguanine"}),
    ("thiopurine", {"azathioprine", "mercaptopurine", "thioguanine"}),
    ("Purine analogue allergy", {"azathioprine", "mercaptopurine", "thioguanine"}),
    ("6-MP", {"mercaptopurine"}), ("6-mercaptopurine", {"mercaptopurine"}), ("6-TG", {"thioguanine"}),
    ("Imuran", {"azathioprine"}), ("Azasan", {"azathioprine"}), ("Purixan", {"mercaptopurine"}),
    ("Purinethol", {"mercaptopurine"}), ("Tabloid", {"thioguanine"}),
    ("Penicillin", set()), ("purine-rich food", set()),
])
def test_the_mapper_names_drugs_by_name_brand_and_class(text, expected):
    facts = allergy_facts([allergy(text=text)])
    assert (facts[0].ingredients if facts else set()) == expected


def test_the_mapper_reads_codes_note_and_reaction_text():
    by_rxnorm = allergy_facts([allergy([{"system": RXNORM, "code": "10485"}])])[0]
    by_snomed = allergy_facts([allergy([{"system": SNOMED, "code": "372574004"}])])[0]
    in_note = allergy_facts([allergy(text="Allergy to drug", note="azathioprine - fever, rash, hypotension")])[0]
    in_reaction = allergy_facts([allergy(text="Drug allergy", reactions=[reaction("Rash", description="after Imuran")])])[0]
    in_substance = allergy_facts([allergy(text="Drug allergy", reactions=[{"substance": {"text": "mercaptopurine"},
                                                                           "manifestation": [{"text": "Hives"}]}])])[0]
    assert by_rxnorm.ingredients == {"thioguanine"} and by_snomed.ingredients == {"azathioprine"}
    assert in_note.matched_in == ("note",) and in_note.note == "azathioprine - fever, rash, hypotension"
    assert in_reaction.matched_in == ("reaction",) and in_reaction.ingredients == {"azathioprine"}
    assert in_substance.matched_in == ("substance",) and in_substance.reactions == ("Hives",)


def test_the_mapper_keeps_statuses_as_written_and_decides_nothing():
    f = allergy_facts([allergy(text="azathioprine", status="resolved", verification="refuted", type_="intolerance",
                               criticality="low", reactions=[reaction("Nausea", severity="mild")])])[0]
    assert (f.clinical_status, f.verification, f.kind, f.criticality, f.severities, f.reactions) == \
        ("resolved", "refuted", "intolerance", "low", ("mild",), ("Nausea",))


# ------------------------------------------------------------------ what it means (the rule)
def test_generic_drug_allergy_with_azathioprine_in_the_note_is_critical_and_stops_the_order():
    fs = run(allergies=[allergy([{"system": SNOMED, "code": "416098002", "display": "Allergy to drug"}],
                                note="azathioprine - fever, rash, hypotension")])
    f = one(fs, "hypersensitivity")
    assert indicator_of(f) == "critical" and f.stops_order and f.actions
    assert f.values["severe_signs"] == ["fever", "hypotension", "rash"]
    card = render(f)
    assert "fever" in card.summary and "azathioprine - fever, rash, hypotension" in card.detail


def test_class_hypersensitivity_stops_any_thiopurine():
    orders = [{"resourceType": "MedicationRequest", "id": "mp", "status": "draft", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "197931", "display": "mercaptopurine 50 MG Oral Tablet"}]},
               "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg", "code": "mg",
                                                                        "system": "http://unitsofmeasure.org"}}],
                                      "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}]}]
    f = one(run(orders, meds=[], allergies=[allergy(text="Thiopurine analogues - hypersensitivity")]), "hypersensitivity")
    assert indicator_of(f) == "critical" and f.values["classes"] == ["thiopurine analogues"]
    assert "thiopurine analogues" in render(f).summary


def test_low_criticality_nausea_is_a_warning_with_advice_never_a_cancel():
    fs = run(allergies=[allergy(text="azathioprine", type_="intolerance", criticality="low",
                                reactions=[reaction("Nausea", severity="mild")])])
    assert "hypersensitivity" not in ids(fs)
    f = one(fs, "thiopurine-intolerance")
    assert indicator_of(f) == "warning" and not f.stops_order and not f.actions
    card = render(f)
    assert "contraindicated" not in card.summary.lower() and "not a contraindication" in card.summary
    assert "split" in card.detail and "food" in card.detail
    # the order keeps its dose: no dose card, no cancel
    assert not any(f.stops_order for f in fs)


@pytest.mark.parametrize("kwargs,rule", [
    # GI words only, any type: a warning
    ({"type_": "allergy", "reactions": [reaction("Vomiting")]}, "thiopurine-intolerance"),
    ({"note": "azathioprine - dyspepsia"}, "thiopurine-intolerance"),
    # a systemic sign beside the GI one: hypersensitivity
    ({"type_": "intolerance", "criticality": "low", "reactions": [reaction("Nausea", "Fever")]}, "hypersensitivity"),
    ({"reactions": [reaction("Pancreatitis")]}, "hypersensitivity"),
    ({"reactions": [reaction("abnormal liver tests - hepatitis")]}, "hypersensitivity"),
    # GI words but the record says severe / high criticality: hypersensitivity (the record's own weight)
    ({"reactions": [reaction("Nausea", severity="severe")]}, "hypersensitivity"),
    ({"criticality": "high", "reactions": [reaction("Nausea")]}, "hypersensitivity"),
    # nothing about the reaction: an allergy is critical (safe reading), an intolerance of low criticality a warning
    ({"type_": "allergy"}, "hypersensitivity"),
    ({}, "hypersensitivity"),
    ({"type_": "intolerance", "criticality": "low"}, "thiopurine-intolerance"),
    ({"type_": "intolerance", "criticality": "unable-to-assess"}, "hypersensitivity"),
])
def test_meaning_at_each_boundary(kwargs, rule):
    fs = run(allergies=[allergy(text=kwargs.pop("text", "azathioprine"), **kwargs)])
    assert rule in ids(fs) and ({"hypersensitivity", "thiopurine-intolerance"} - {rule}).isdisjoint(ids(fs))


@pytest.mark.parametrize("verification,expected", [("refuted", None), ("entered-in-error", None),
                                                    ("unconfirmed", "hypersensitivity"), ("confirmed", "hypersensitivity")])
def test_verification_status(verification, expected):
    fs = run(allergies=[allergy(text="azathioprine", verification=verification, reactions=[reaction("Rash")])])
    found = [f for f in fs if f.rule_id in ("hypersensitivity", "thiopurine-intolerance", "allergy-inactive")]
    assert [f.rule_id for f in found] == ([expected] if expected else [])
    if verification == "unconfirmed":
        card = render(found[0])
        assert "unconfirmed" in card.summary and "UNCONFIRMED" in card.detail


@pytest.mark.parametrize("status", ["inactive", "resolved"])
def test_inactive_or_resolved_is_information_not_a_stop(status):
    fs = run(allergies=[allergy(text="azathioprine", status=status, reactions=[reaction("Rash")])])
    f = one(fs, "allergy-inactive")
    assert indicator_of(f) == "info" and not f.stops_order and status in render(f).summary


def test_the_most_severe_record_decides():
    fs = run(allergies=[allergy(text="azathioprine", type_="intolerance", criticality="low", reactions=[reaction("Nausea")]),
                        allergy(text="6-MP", reactions=[reaction("Anaphylaxis")], id="al-2"),
                        allergy(text="Imuran", status="resolved", id="al-3")])
    assert [f.rule_id for f in fs if "allerg" in f.rule_id or "sensitiv" in f.rule_id or "intoler" in f.rule_id] == \
        ["hypersensitivity"]


def test_refuted_record_beside_an_active_one_is_said_as_set_aside():
    f = one(run(allergies=[allergy(text="azathioprine", reactions=[reaction("Rash")]),
                           allergy(text="azathioprine", verification="refuted", id="al-2")]), "hypersensitivity")
    assert len(f.values["set_aside"]) == 1 and "Set aside: 1" in render(f).detail


def test_an_allergy_to_another_drug_says_nothing():
    assert {"hypersensitivity", "thiopurine-intolerance", "allergy-inactive"}.isdisjoint(
        ids(run(allergies=[allergy(text="Penicillin", reactions=[reaction("Rash")])])))


@pytest.mark.parametrize("note,expected", [
    ("Penicillin - rash; tolerated azathioprine since 2020", set()),
    ("no reaction to 6-MP on re-challenge", set()),
    ("Imuran: nausea. Tolerates mercaptopurine", {"azathioprine"}),
    ("azathioprine - fever, rash, hypotension", {"azathioprine"}),
])
def test_a_note_that_says_a_drug_was_tolerated_does_not_name_it(note, expected):
    facts = allergy_facts([allergy(text="Allergy to drug", note=note)])
    assert (set(facts[0].ingredients) if facts else set()) == expected
