"""Labs, round 2 of the independent clinical audit: values that decide each fix (tests/data/review/README.md).

1. The optional ``lab_results`` key (every laboratory result, for 6-TGN / 6-MMP read by name): neither prefetched
   nor fetchable is no card at all; a failed fetch is a gap like any other. A merged info card leads with a
   clinical note, a data gap after it.
2. D-05: superscript powers of ten ("10³/µL", "×10⁹/L") read; "103/uL" does not; flag A on a count.
3. D-07/D-25: a unitless eGFR under its /1.73 m² LOINC code is read in mL/min/1.73m²; anything else unreadable is
   a warning whose summary names the check and quotes the value as sent.
4. D-26: comparators on cards, also in the same-time conflict line.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import responses

from fhir_mappers.terminology import norm_unit, terminology
from hooks.cards import render_cards
from rules import Finding
from hooks.wording import wording
from service import create_app
from tests.builders import SERVICE, hook_request, normal_labs, prefetch
from tests.test_labs_reader import _card, _cards, _with, obs, read

CASES = Path(__file__).resolve().parent / "data" / "review"
BASE = "https://ehr.example/r4/fhir"  # never reached: responses answers (as tests/test_labs_reader.py)


@pytest.fixture(scope="module")
def audit_client():
    """The service as the reviewer ran it: evaluated as of 2026-12-07, CPIC."""
    app = create_app({"auth_required": False, "database_url": "sqlite:///:memory:", "evaluation_date": "2026-12-07"})
    return app.test_client()


def _case(audit_client, name: str) -> list[dict]:
    req = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    assert req.pop("_profile", "cpic") == "cpic"
    req.pop("_review")
    resp = audit_client.post(f"/cds-services/{SERVICE[req['hook']]}", json=req)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def _rule(card: dict) -> str:
    return card["source"]["topic"]["code"]


# ------------------------------------------------------------------ 1. the optional key, and the merged info card
# the cases that regressed against main: the clinical info card each must show, in the summary
REGRESSED = {
    "aza-dose-in-tablets-unit": ("dose-new-start", "100 mg"),
    "dose-mg-per-kg-unit": ("dose-new-start", "200 mg"),
    "peds-all-mp-stale-height-and-weight": ("weight-missing", ""),
    "pregnancy-icd-z3a-crohn-continue": ("pregnancy", "Pregnant"),
    "pregnancy-tpmt-im-new-start": ("pregnancy", "Pregnant"),
    "tpmt-activity-high-shunter": ("tpmt-activity-high", "TPMT"),
    "very-old-93-aza-no-weight": ("weight-missing", ""),
}


@pytest.mark.parametrize("name", sorted(REGRESSED))
def test_audit_cases_show_their_clinical_info_card_and_no_lab_results_gap(audit_client, name):
    cards = _case(audit_client, name)
    text = json.dumps(cards)
    assert "laboratory results by category" not in text and "some patient data could not be read" not in text
    rule, words = REGRESSED[name]
    card = next(c for c in cards if _rule(c) == rule or rule in c["extension"]["azathioprine-cds"].get("mergedRuleIds", []))
    assert _rule(card) == rule  # it leads the card (a merged card is named after its first finding)
    assert words in card["summary"]
    assert "data-incomplete" not in [_rule(c) for c in cards]


@pytest.mark.parametrize("name", ["ktx-maintenance-aza-normal", "peds-all-mp-suspension-ml"])
def test_audit_cases_that_need_no_card_get_none(audit_client, name):
    assert _case(audit_client, name) == []


def test_lab_results_not_prefetched_and_no_fhir_server_is_no_card(call):
    pre = prefetch()
    del pre["lab_results"]
    assert call(hook_request(pre=pre)) == []
    assert call(hook_request(pre=prefetch())) == []  # and prefetched (empty): the same answer


def test_lab_results_whose_fetch_fails_is_a_gap_like_any_other(call):
    pre = prefetch()
    del pre["lab_results"]
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/Observation", status=503, json={"resourceType": "OperationOutcome", "issue": []})
        cards = call(hook_request(pre=pre, fhir_server=BASE, token="t"))
        assert len(rsps.calls) == 1 and "category=laboratory" in str(rsps.calls[0].request.url)
    gap = _card(cards, "data-incomplete")
    assert "laboratory results by category" in gap["summary"] and "error status" in gap["detail"]


def test_a_merged_info_card_leads_with_the_clinical_note_and_names_the_gap_after_it():
    pregnancy = Finding("pregnancy", "MedicationRequest/mr-aza", dict(wording().entries["pregnancy"].sample), drug="azathioprine")
    gap = Finding("data-incomplete", "MedicationRequest/mr-aza",
                  {"variant": "thiopurine", "groups": [], "names": ["haemoglobin '13 furlongs'"],
                   "gaps": [{"what": "haemoglobin", "why": "unit 'furlongs'", "key": "hemoglobin", "outcome": "",
                             "sent": "13 furlongs"}]}, indicator="info", drug="azathioprine")
    for findings in ([gap, pregnancy], [pregnancy, gap]):
        (card,) = render_cards(findings, drafts={}, patient_id="pt-1", today=date(2026, 12, 7))
        assert _rule(card) == "pregnancy" and card["extension"]["azathioprine-cds"]["mergedRuleIds"] == ["pregnancy", "data-incomplete"]
        assert card["summary"].startswith("PRELIMINARY result: Pregnan") or card["summary"].startswith("Pregnan")
        assert "some patient data" not in card["summary"]
        assert card["detail"].index("Pregnan") < card["detail"].index("haemoglobin")


# ------------------------------------------------------------------ 2. D-05: superscripts, flag A
@pytest.mark.parametrize("printed, ucum", [("10³/µL", "10^3/ul"), ("10³/μL", "10^3/ul"), ("×10⁹/L", "x10^9/l"),
                                           ("x10⁹/L", "x10^9/l"), ("10⁹/L", "10^9/l"), ("mL/min/1.73m²", "ml/min/1.73m^2")])
def test_superscripts_become_powers_before_anything_else(printed, ucum):
    assert norm_unit(printed) == ucum


@pytest.mark.parametrize("printed", ["10³/µL", "10³/uL", "10³/μL", "K/µL", "x10E3/µL", "cells/µL"])
def test_thousands_and_units_per_microlitre_with_a_micro_sign_read(printed):
    per_ul = printed.startswith("cells")
    labs, gaps, _ = read(obs("777-3", value=38000 if per_ul else 38, unit=printed))
    assert not gaps and labs["platelets"][0].value == pytest.approx(38) and labs["platelets"][0].unit == "10*9/L"


@pytest.mark.parametrize("printed", ["×10⁹/L", "x10⁹/L", "10⁹/L"])
def test_per_litre_powers_with_a_superscript_read(printed):
    labs, gaps, _ = read(obs("751-8", value=0.6, unit=printed))
    assert not gaps and labs["neutrophils"][0].value == pytest.approx(0.6)


@pytest.mark.parametrize("printed", ["103/uL", "103/µL", "x109/L"])
def test_a_power_that_lost_its_superscript_is_not_read(printed):
    labs, gaps, texts = read(obs("777-3", value=38, unit=printed, flag="A"))
    assert "platelets" not in labs
    (gap,) = gaps
    assert gap.sent == f"38 {printed}" and "flagged A" in gap.why and texts["platelets"][0].flags == ("A",)


def test_platelets_38_in_10_cubed_per_microlitre_flagged_a_is_the_critical_card(audit_client):
    cards = _case(audit_client, "platelets-unicode-10-3-per-microL-A-flag")
    assert [(c["indicator"], _rule(c)) for c in cards] == [("critical", "cytopenia-severe")]
    assert "platelets 38 ×10⁹/L (flagged A)" in cards[0]["summary"]


def test_an_unreadable_count_flagged_a_is_a_warning_naming_it_as_sent(call):
    cards = _cards(call, _with(obs("777-3", value=38, unit="103/uL", flag="A", id="plt-a")))
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning" and _rule(gap) == "data-incomplete"
    # round-8 H2: an unreadable platelet count does not make the CBC complete; the CBC-due card says which is missing
    due = _card(cards, "monitoring-cbc-due")
    assert sorted(_rule(c) for c in cards) == ["data-incomplete", "monitoring-cbc-due"]
    assert "no platelets" in due["summary"] and "could not be read" in due["detail"]
    assert "platelet count '38 103/uL'" in gap["summary"] and "flagged A by the laboratory" in gap["detail"]


def test_flag_a_alone_on_a_normal_count_raises_no_card(call):
    assert _cards(call, _with(obs("777-3", value=250, unit="10³/µL", flag="A", id="plt-ok"))) == []


# ------------------------------------------------------------------ 3. D-07 / D-25: eGFR without a unit
@pytest.mark.parametrize("code", sorted(c.partition("|")[2] for c in terminology().analytes["egfr"].unit_by_code))
def test_a_unitless_egfr_under_a_per_1_73_m2_code_is_read_in_its_one_unit(code):
    labs, gaps, _ = read(obs(code, string="<15", flag="L"))
    (m,) = labs["egfr"]
    assert not gaps and (m.value, m.comparator, m.unit, m.unit_text) == (15, "<", "mL/min/{1.73_m2}", "")


def test_the_unit_by_code_list_is_the_per_1_73_m2_codes_of_egfr_only():
    t = terminology()
    assert {c.partition("|")[2] for c in t.analytes["egfr"].unit_by_code} == set(t.analytes["egfr"].loinc)
    assert all(not a.unit_by_code for name, a in t.analytes.items() if name != "egfr")


@pytest.mark.parametrize("loinc, analyte, value", [("2160-0", "creatinine", "4.1"), ("777-3", "platelets", "38"),
                                                  ("751-8", "neutrophils", "<0.1")])
def test_other_analytes_without_a_unit_stay_unread(loinc, analyte, value):
    """Creatinine (mg/dL or µmol/L) and counts (10*9/L or /uL) have more than one unit: never guessed."""
    labs, gaps, _ = read(obs(loinc, string=value))
    assert analyte not in labs and gaps[0].sent == value and "has no unit" in gaps[0].why


def test_ktx_egfr_valuestring_lt15_is_the_renal_card_quoting_lt15(audit_client):
    cards = _case(audit_client, "ktx-egfr-valuestring-lt15")
    assert [(c["indicator"], _rule(c)) for c in cards] == [("warning", "renal-impairment")]
    assert "eGFR <15" in cards[0]["summary"]
    assert "eGFR <15 mL/min/1.73m²" in cards[0]["detail"] and "sent without a unit" in cards[0]["detail"]


def test_an_egfr_sent_with_its_unit_is_not_said_to_lack_one(call):
    cards = _cards(call, _with(obs("62238-1", value=12, unit="mL/min/1.73m2", id="egfr-u")))
    card = _card(cards, "renal-impairment")
    assert "eGFR 12" in card["summary"] and "sent without a unit" not in card["detail"]


def test_the_gap_summary_names_the_safety_check_first_quoting_it(call):
    # MCV is no safety check; haemoglobin is one since the round-2 audit (severe anaemia, CTCAE grade 3)
    cards = _cards(call, _with(obs("787-2", value=90, unit="furlongs", id="mcv-x"),
                               obs("62238-1", string="<15 mL/s", id="egfr-x")))
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning"
    assert gap["summary"].startswith("Thiopurine safety check incomplete: eGFR '<15 mL/s'")


@pytest.mark.parametrize("loinc, label", [("1742-6", "ALT"), ("1920-8", "AST")])
def test_an_unreadable_liver_test_is_a_warning(call, loinc, label):
    gap = _card(_cards(call, _with(obs(loinc, value=240, unit="furlongs", id="lft-x"))), "data-incomplete")
    assert gap["indicator"] == "warning" and f"{label} '240 furlongs'" in gap["summary"]


def test_an_unreadable_metabolite_result_is_a_warning(call):
    from tests.test_labs_reader import _metabolite

    cards = _cards(call, normal_labs(), lab_results=[_metabolite("6-Methylmercaptopurine", 9800, "nmol/g Hb", "mmp-x")])
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning" and "6-MMP '9800 nmol/g Hb'" in gap["summary"]


# ------------------------------------------------------------------ 4. D-26: comparators everywhere
def test_neutrophils_lt_0_1_keep_their_comparator_on_the_card(audit_client):
    cards = _case(audit_client, "neutrophils-comparator-lt0.1")
    assert [_rule(c) for c in cards] == ["cytopenia-severe"]
    assert "neutrophils <0.1 ×10⁹/L" in cards[0]["summary"]


def test_ckd_egfr_comparator_lt15_keeps_it_and_leads_the_info_card_with_the_clinical_note(audit_client):
    cards = _case(audit_client, "ckd-egfr-comparator-lt15")
    renal = _card(cards, "renal-impairment")
    assert "eGFR <15" in renal["summary"] and "eGFR <15 mL/min/1.73m²" in renal["detail"]
    assert "data-incomplete" not in json.dumps([c["extension"] for c in cards])


def test_the_same_time_conflict_line_keeps_the_comparators_of_the_other_results(call):
    when = "2026-12-05T08:00:00Z"
    cards = _cards(call, _with(obs("751-8", value=0.4, unit="10*9/L", id="anc-1", when=when),
                               obs("751-8", value=0.5, unit="10*9/L", comparator="<", id="anc-2", when=when)))
    detail = _card(cards, "cytopenia-severe")["detail"]
    assert "neutrophils 0.4 was used" in detail and "also reported <0.5" in detail
