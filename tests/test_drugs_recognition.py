"""Drug and live-vaccine recognition (round-4 review 2026-12-07, H1-H6, m2, m3): the vocabulary in
fhir_mappers/codes.toml (RxNorm, WHO ATC, NDC, CVX, names) and the readers that use it, for the interacting drug
and for the thiopurine, on the full path and on the "other order" fast path (rules.needs_data)."""
from __future__ import annotations

import pytest

import rules
from fhir_mappers import order_facts
from fhir_mappers.medications import find_medication, ingredients_of, medication_fact, vaccine_codes_of
from fhir_mappers.terminology import cvx_code, ingredients_in_text, ndc_vaccine, read_toml, terminology, _PATH
from rules.common import thiopurine_of

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
NDC = "http://hl7.org/fhir/sid/ndc"
CVX = "http://hl7.org/fhir/sid/cvx"
SMX = "sulfamethoxazole / trimethoprim"


def concept(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def draft(med_concept: dict, **extra) -> dict:
    return {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
            "medicationCodeableConcept": med_concept, **extra}


# --------------------------------------------------------------------------------- H5 names joined by a hyphen
@pytest.mark.parametrize("text, expected", [
    ("sulfamethoxazole-trimethoprim 800-160 mg per tablet", {SMX}),
    ("trimethoprim-sulfamethoxazole", {SMX}),
    ("SMX-TMP DS tablet", {SMX}),
    ("TMP-SMX 160/800", {SMX}),
    ("SMX/TMP DS", {SMX}),
    ("lisinopril-hydrochlorothiazide (ZESTORETIC) 20-12.5 mg per tablet", {"lisinopril"}),
    ("enalapril-hydrochlorothiazide", {"enalapril"}),
    ("amlodipine-benazepril (LOTREL) 5-20 mg capsule", {"benazepril"}),
    ("allopurinol-lesinurad", {"allopurinol"}),
    ("Septra DS", {SMX}),
    ("ZESTRIL 10 mg", {"lisinopril"}),
    ("Aloprim 500 mg injection", {"allopurinol"}),
    ("sulphasalazine 500 mg", {"sulfasalazine"}),
    ("Marevan 3 mg", {"warfarin"}),
])
def test_combination_and_brand_names_are_found(text, expected):
    assert ingredients_in_text(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("hydrocodone-acetaminophen 5-325 mg tablet", set()),   # two unrelated names joined: still nothing
    ("amoxicillin-clavulanate 875-125 mg", set()),
    ("6-MP 50 mg tab", {"mercaptopurine"}),                 # a hyphen beside a digit stays part of the name
    ("6-thioguanine", {"thioguanine"}),
    ("co-trimoxazole 960 mg", {SMX}),
    ("5-aza-2'-deoxycytidine", set()),                      # decitabine: "aza" beside digits is not azathioprine
    ("trimethoprim 200 mg", set()),                         # m7: trimethoprim alone is outside the label's scope
    ("mercaptamine (cysteamine)", set()),
    ("AzaSite eye drops", set()),
])
def test_unrelated_and_hyphenated_names_stay_as_they_were(text, expected):
    assert ingredients_in_text(text) == expected


# --------------------------------------------------------------------------------- H1 RxNorm, H2 ATC
@pytest.mark.parametrize("code, expected", [
    ("197319", "allopurinol"), ("197320", "allopurinol"), ("855332", "warfarin"), ("314076", "lisinopril"),
    ("198335", SMX), ("10180", SMX), ("29046", "lisinopril"), ("3827", "enalapril"), ("35296", "ramipril"),
    ("18867", "benazepril"), ("35208", "quinapril"), ("50166", "fosinopril"), ("38454", "trandolapril"),
    ("54552", "perindopril"), ("30131", "moexipril"), ("834235", "febuxostat"), ("898353", "benazepril"),
])
def test_rxnorm_codes_without_display(code, expected):
    assert ingredients_of(concept(RXNORM, code)) == {expected}


def test_trimethoprim_ingredient_code_alone_is_not_cotrimoxazole():
    assert ingredients_of(concept(RXNORM, "10829")) == set()


@pytest.mark.parametrize("code, expected", [
    ("L04AX01", "azathioprine"), ("L01BB02", "mercaptopurine"), ("L01BB03", "thioguanine"),
    ("M04AA01", "allopurinol"), ("M04AA03", "febuxostat"), ("B01AA03", "warfarin"), ("J01EE01", SMX),
    ("J05AP01", "ribavirin"), ("A07EC02", "mesalamine"), ("C09AA01", "captopril"), ("C09AA05", "ramipril"),
    ("C09BA03", "lisinopril"), ("C09BB04", "perindopril"), ("l04ax01", "azathioprine"),
])
def test_atc_codes(code, expected):
    assert ingredients_of(concept(ATC, code)) == {expected}
    assert ingredients_of(concept("urn:oid:2.16.840.1.113883.6.73", code)) == {expected}


def test_unrelated_atc_and_rxnorm_codes_name_nothing():
    assert ingredients_of(concept(ATC, "C10AA05")) == set()      # atorvastatin
    assert ingredients_of(concept(RXNORM, "617310")) == set()   # atorvastatin 20 MG Oral Tablet
    assert vaccine_codes_of(concept(ATC, "J07BK03"), "") == set()  # zoster, purified antigen (Shingrix): not live


# --------------------------------------------------------------------------------- H3 NDC, m2 CVX
@pytest.mark.parametrize("code", ["0006-4681-00", "00006-4681-00", "00006468100", "0006468100", "0006-4681",
                                  "0006-4681-01", " 0006-4681-00 "])
def test_ndc_of_mmr_in_any_format(code):
    assert ndc_vaccine(code) == "03"
    assert vaccine_codes_of(concept(NDC, code), "") == {"03"}


@pytest.mark.parametrize("code", ["0006-9999-00", "58160-0821-52", "not-an-ndc", "", "12345", "0006-4681-00-1"])
def test_other_ndcs_name_no_live_vaccine(code):
    assert ndc_vaccine(code) is None


def test_every_table_row_names_something_known():
    t = terminology()
    raw = read_toml(_PATH)
    names = set(raw["ingredient_names"])
    assert set(t.rxnorm.values()) - {"clozapine", "methotrexate", "tacrolimus", "infliximab"} <= names
    assert set(t.atc.values()) <= names
    live = {code for code, row in t.cvx.items() if row["live"]}
    assert set(t.ndc_vaccines.values()) <= live and set(t.atc_vaccines.values()) <= live


@pytest.mark.parametrize("code, expected", [("3", "03"), ("003", "03"), ("03", "03"), ("21", "21"), ("121", "121"),
                                            (" 94 ", "94"), ("X1", "X1")])
def test_cvx_leading_zero(code, expected):
    assert cvx_code(code) == expected


def test_atc_live_vaccine_codes():
    assert vaccine_codes_of(concept(ATC, "J07BD52"), "") == {"03"}
    assert vaccine_codes_of(concept(ATC, "J07BK02"), "") == {"121"}


# --------------------------------------------------------------------------------- H6 ingredients
def test_contained_medication_with_item_reference_to_a_contained_substance():
    order = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
             "medicationReference": {"reference": "#m"},
             "contained": [{"resourceType": "Medication", "id": "m",
                            "ingredient": [{"itemReference": {"reference": "#s"}}],
                            "contained": [{"resourceType": "Substance", "id": "s",
                                           "code": concept(RXNORM, "519")}]}]}
    fact = medication_fact(order, is_draft=True)
    assert fact is not None and fact.ingredients == {"allopurinol"}


def test_prefetch_medication_with_ingredient_codes_only():
    med = {"resourceType": "Medication", "id": "m1",
           "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "1256"}]}}]}
    order = {"resourceType": "MedicationRequest", "id": "a1", "status": "active", "intent": "order",
             "medicationReference": {"reference": "Medication/m1"}}
    fact = medication_fact(order, is_draft=False, medications={"Medication/m1": med})
    assert fact is not None and thiopurine_of(fact) == "azathioprine"


def test_unrelated_ingredients_name_nothing():
    order = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
             "medicationReference": {"reference": "#m"},
             "contained": [{"resourceType": "Medication", "id": "m", "ingredient": [
                 {"itemCodeableConcept": {"text": "hydrocodone"}},
                 {"itemCodeableConcept": {"text": "acetaminophen"}}]}]}
    fact = medication_fact(order, is_draft=True)
    assert fact is not None and fact.ingredients == frozenset()


# --------------------------------------------------------------------------------- m3 references
def test_find_medication_by_absolute_url():
    med = {"resourceType": "Medication", "id": "m-allo"}
    known = {"Medication/m-allo": med}
    assert find_medication("https://ehr.example.org/fhir/Medication/m-allo", known) is med
    assert find_medication("https://ehr.example.org/fhir/Medication/m-allo/_history/2", known) is med
    assert find_medication("https://ehr.example.org/fhir/Medication/other", known) is None
    assert find_medication("https://ehr.example.org/fhir/Substance/m-allo", {"Medication/m-allo": med}) is None


# --------------------------------------------------------------------------------- the thiopurine side, fast path
@pytest.mark.parametrize("med_concept", [concept(ATC, "L04AX01"), concept(RXNORM, "197388"),
                                         concept(RXNORM, "105611"), {"text": "Imuran 50 mg"}])
def test_azathioprine_coded_any_way_is_a_thiopurine_and_needs_data(med_concept):
    (fact,) = order_facts([draft(med_concept)])
    assert thiopurine_of(fact) == "azathioprine"
    assert rules.needs_data([fact])


@pytest.mark.parametrize("med_concept", [concept(RXNORM, "197319"), concept(ATC, "M04AA01"), concept(NDC, "0006-4681-00"),
                                         concept(CVX, "3"), {"text": "lisinopril-hydrochlorothiazide 20-12.5 mg"}])
def test_interacting_drug_or_live_vaccine_reads_the_record(med_concept):
    assert rules.needs_data(order_facts([draft(med_concept)]))


@pytest.mark.parametrize("med_concept", [concept(RXNORM, "617310"), concept(ATC, "C10AA05"), concept(NDC, "0071-0155-23"),
                                         {"text": "hydrocodone-acetaminophen 5-325 mg"}, concept(CVX, "187")])
def test_other_orders_stay_on_the_fast_path(med_concept):
    assert not rules.needs_data(order_facts([draft(med_concept)]))


@pytest.mark.parametrize("system", [{"a": 1}, ["http://www.whocc.no/atc"], 5, None])
def test_a_coding_system_of_the_wrong_type_names_nothing(system):
    """A coding whose ``system`` is an object or a list (hostile or broken input) is not a code of any system: the
    order is read as unrecognised, never a TypeError (fuzz seeds 167, 331, 2306 of test_hostile_a_fuzz)."""
    order = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": system, "code": "0006-4681-00"},
                                                      {"system": system, "code": "L04AX01"}]}}
    fact = medication_fact(order, is_draft=True)
    assert fact is None or (fact.ingredients == frozenset() and not fact.vaccine_codes)
