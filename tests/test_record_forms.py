"""Other records as EHRs send them: weight under 3141-9, pregnancy as ICD-10-CM
O-codes and SNOMED CT findings, ALL/AML as indications, allergies as text with
abbreviations, the complete CDC CVX live-vaccine list and what is not live."""
from __future__ import annotations

import pytest

from fhir_mappers import build_facts
from fhir_mappers.terminology import CVX, terminology
from tests.builders import LOINC, PID, TODAY, bundle, med_request, weight
from tests.conftest import detail_of, indicator_of, summary_of
from tests.test_rules_clinical import active, condition, ids, run


def test_weight_under_3141_9():
    w = weight(70)
    w["code"]["coding"][0]["code"] = "3141-9"  # Body weight Measured
    facts = build_facts([], {"weight": bundle(w)}, today=TODAY)
    assert facts.weights[0].value == 70


@pytest.mark.parametrize("icd10", ["O09.511", "O26.891", "O99.89", "O9A.111", "Z3A.20", "Z33.1"])
def test_pregnancy_as_icd10cm(icd10):
    assert "pregnancy" in ids(run(conditions=[condition(icd10=icd10)]))


@pytest.mark.parametrize("snomed", ["77386006", "72892002", "47200007"])
def test_pregnancy_as_snomed(snomed):
    assert "pregnancy" in ids(run(conditions=[condition(snomed=snomed)]))


def test_not_pregnancy():
    assert "pregnancy" not in ids(run(conditions=[condition(icd10="N39.0")]))


def test_all_is_an_indication_for_mercaptopurine():
    mp = med_request("197931", "mercaptopurine 50 MG Oral Tablet", daily_mg=140, id="mp-1")  # 2 mg/kg for 70 kg
    without = ids(run([mp], meds=[]))
    with_all = ids(run([mp], meds=[], conditions=[condition(icd10="C91.00")]))
    assert "dose-above-range" in without and "dose-above-range" not in with_all
    # 200 mg/day for 70 kg = 2.9 mg/kg/day, above the label's 2.5 mg/kg: ALL is dosed per m2 (issue 10) and no
    # height is on record, so the card that says it may be too high is the height-missing warning
    high = run([med_request("197931", "mercaptopurine 50 MG Oral Tablet", daily_mg=200, id="mp-2")],
               meds=[], conditions=[condition(snomed="91857003")])
    card = next(f for f in high if f.rule_id == "height-missing")
    assert card.values["possibly_high"] and indicator_of(card) == "warning"


def test_aml_is_an_indication_for_thioguanine():
    tg = med_request("10485", "thioguanine 40 MG Oral Tablet", daily_mg=200, id="tg-1")  # 2.9 mg/kg for 70 kg
    assert "dose-above-range" not in ids(run([tg], meds=[], conditions=[condition(icd10="C92.00")]))
    tg = med_request("10485", "thioguanine 40 MG Oral Tablet", daily_mg=240, id="tg-2")  # 3.4 mg/kg
    assert "dose-above-range" in ids(run([tg], meds=[], conditions=[condition(icd10="C92.00")]))


@pytest.mark.parametrize("text,ingredient", [("6-MP", "mercaptopurine"), ("Allergy to 6MP (rash)", "mercaptopurine"),
                                             ("AZA intolerance", "azathioprine"), ("Purinethol", "mercaptopurine"),
                                             ("IMURAN - pancreatitis", "azathioprine")])
def test_allergy_text_abbreviations(text, ingredient):
    allergy = {"resourceType": "AllergyIntolerance", "id": "al-1", "patient": {"reference": f"Patient/{PID}"},
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                              "code": "active"}]},
               "code": {"text": text}}
    facts = build_facts([], {"allergies": bundle(allergy)}, today=TODAY)
    assert ingredient in facts.allergies[0].ingredients
    if ingredient in ("azathioprine", "mercaptopurine"):
        assert "hypersensitivity" in ids(run(allergies=[allergy]))


LIVE = ["02", "03", "04", "05", "06", "07", "19", "21", "25", "37", "38", "54", "55", "56", "74", "75", "80", "94", "105",
        "111", "116", "119", "121", "122", "125", "143", "149", "169", "174", "178", "179", "182", "183", "184", "204",
        "317", "333"]
NOT_LIVE = ["187", "36", "117", "30", "86", "87", "10", "101", "140", "150", "185", "206", "93"]


def immunization(cvx: str | None = None, text: str | None = None, id="imm-1"):
    code = {"coding": [{"system": CVX, "code": cvx}]} if cvx else {"text": text}
    return {"resourceType": "MedicationRequest", "id": id, "status": "draft", "intent": "order",
            "medicationCodeableConcept": code, "subject": {"reference": f"Patient/{PID}"}}


@pytest.mark.parametrize("cvx", LIVE)
def test_every_cdc_live_vaccine_is_live_and_sourced(cvx):
    entry = terminology().cvx[cvx]
    assert entry["live"] is True and entry["source"]
    assert "interaction-live-vaccine" in ids(run([immunization(cvx)], meds=[active()]))


@pytest.mark.parametrize("cvx", NOT_LIVE)
def test_immune_globulins_and_inactivated_vaccines_are_not_live(cvx):
    assert terminology().cvx[cvx]["live"] is False
    assert "interaction-live-vaccine" not in ids(run([immunization(cvx)], meds=[active()]))


@pytest.mark.parametrize("text,live", [("Varivax", True), ("YF-Vax yellow fever vaccine", True), ("FluMist", True),
                                       ("Vaxchora", True), ("Ervebo", True),
                                       ("VariZIG (varicella zoster immune globulin)", False), ("HBIG", False),
                                       ("IVIG 10%", False), ("Shingrix zoster vaccine recombinant", False)])
def test_vaccines_by_name(text, live):
    assert ("interaction-live-vaccine" in ids(run([immunization(text=text)], meds=[active()]))) is live


def test_records_in_both_modes(call):
    """Pregnancy as an O-code, an allergy written "6-MP" and a preliminary neutrophil count of 0.4: read from
    prefetch and from the FHIR fallback alike."""
    import responses

    from tests import fhir_fake
    from tests.builders import hook_request, lab, normal_labs, normal_pgx, prefetch
    from tests.conftest import rule_ids

    preg = condition(icd10="O09.90", id="preg")
    allergy = {"resourceType": "AllergyIntolerance", "id": "al-6mp", "patient": {"reference": f"Patient/{PID}"},
               "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": "6-MP"}}
    anc = lab("751-8", 0.4, "10*9/L", id="anc-p")
    anc["status"] = "preliminary"
    labs = [o for o in normal_labs() if o["id"] != "anc"] + [anc]
    expected = {"pregnancy", "hypersensitivity", "cytopenia-severe"}
    pre = prefetch(labs=labs, conditions=[preg], allergies=[allergy])
    cards = call(hook_request(pre=pre))
    assert expected <= set(rule_ids(cards))
    assert any("PRELIMINARY" in c["summary"] for c in cards if c["source"]["topic"]["code"] == "cytopenia-severe")
    base = "https://ehr.example/r4/fhir"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fhir_fake.serve(rsps, base, normal_pgx() + labs + [weight(70)], Condition=[preg], AllergyIntolerance=[allergy])
        assert expected <= set(rule_ids(call(hook_request(fhir_server=base, token="tok-123"))))


def test_preliminary_pregnancy_status_is_used_and_said():
    obs = {"resourceType": "Observation", "id": "preg", "status": "preliminary", "effectiveDateTime": TODAY.isoformat(),
           "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
           "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}}
    card = next(f for f in run(status=[obs]) if f.rule_id == "pregnancy")
    assert summary_of(card).startswith("PRELIMINARY result") and "PRELIMINARY" in detail_of(card)
    final = next(f for f in run(status=[{**obs, "status": "final"}]) if f.rule_id == "pregnancy")
    assert "PRELIMINARY" not in summary_of(final) + detail_of(final)
