"""Round-5 review (misc. defects M1-M4, m1-m3), built from the reviewer's case files in tests/data/review5/."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.genotype import diplotype
from hooks.pipeline import HookEnv, run
from hooks.registry import SERVICES
from outbound.fhir_client import FhirClient
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review5"


def _cards(name: str) -> list[dict]:
    request = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    return case_cards(request)


def _topics(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


# ---------------------------------------------------------------- M3: a stated zygosity is read

def test_c76_heterozygous_nudt15_hgvs_text_is_an_intermediate_metabolizer_not_poor():
    cards = _topics(_cards("c76-nudt15-hgvs-text-het"))
    assert "pgx-poor-metabolizer" not in cards, list(cards)
    im = cards["pgx-reduce-dose"]
    assert im["indicator"] == "warning" and "NUDT15 intermediate metabolizer" in im["summary"]


@pytest.mark.parametrize("text, gene, expected", [
    ("Heterozygous NUDT15 c.415C>T (p.Arg139Cys)", "NUDT15", "*1/*3"),
    ("het NUDT15 c.415C>T", "NUDT15", "*1/*3"),
    ("Homozygous for NUDT15 c.415C>T", "NUDT15", "*3/*3"),
    ("NUDT15 c.415C>T", "NUDT15", "*1/*3 or *3/*3"),  # not stated: both readings, the rules take the worse
    ("Heterozygous for TPMT*3A. Intermediate TPMT activity expected.", "TPMT", "*1/*3A"),
    ("homozygous for TPMT *3A", "TPMT", "*3A/*3A"),
    ("hemizygous TPMT*3C", "TPMT", "*3C/*3C"),  # one copy, carrying the variant: no functional allele
    ("Heterozygous for TPMT c.719A>G", "TPMT", "*1/*3C"),
    ("TPMT *3A heterozygous", "TPMT", "*1/*3A"),
])
def test_a_zygosity_word_before_or_after_the_variant_is_read(text, gene, expected):
    assert diplotype(text, gene)[0] == expected


# ---------------------------------------------------------------- M1: an indication on record but not recognised

def test_c10_transplanted_kidney_present_737295003_is_the_kidney_transplant_indication():
    # 2 mg/kg/day is within the label's transplant range: no start-titration card, no dose card
    assert _cards("c10-kidney-transplant-aza-2mgkg") == []
    assert _cards("c53-kidney-transplant-icd-z94-0") == []


def _with_condition(name: str, text: str, code: str, dose: float) -> dict:
    request = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    request["prefetch"]["conditions"]["entry"][0]["resource"]["code"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": code, "display": text}], "text": text}
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = dose
    return request


def _run(request: dict) -> list[dict]:
    env = HookEnv(client=FhirClient(), today=lambda: date(2026, 12, 7))
    return run(SERVICES["thiopurine-order-sign"], request, env).response["cards"]


def test_an_unrecognised_condition_is_quoted_and_no_start_regimen_is_applied_as_if_known():
    cards = _topics(_run(_with_condition("c10-kidney-transplant-aza-2mgkg", "Atopic dermatitis", "24079001", 150)))
    card = cards["dose-new-start"]
    text = card["summary"] + card["detail"]
    assert "no indication on record" not in text
    assert "not recognised" in card["summary"] and "'Atopic dermatitis'" in text
    assert "start at 50 mg/day" not in text and "titrate after 6-8 weeks" not in card["summary"]
    assert not card.get("suggestions")


def test_an_unrecognised_condition_above_the_label_maximum_says_so_not_none_on_record():
    card = _topics(_run(_with_condition("c10-kidney-transplant-aza-2mgkg", "Atopic dermatitis", "24079001", 300)))["dose-above-range"]
    assert "indication not recognised" in card["summary"]
    assert "'Atopic dermatitis'" in card["detail"] and "no indication on record" not in card["detail"]


def test_with_no_condition_at_all_the_card_still_says_none_on_record():
    request = _with_condition("c10-kidney-transplant-aza-2mgkg", "x", "1", 300)
    request["prefetch"]["conditions"]["entry"] = []
    card = _topics(_run(request))["dose-above-range"]
    assert "no indication on record" in card["detail"]


# ---------------------------------------------------------------- M2: a TPMT result found is never "no result on record"

def test_c23_quest_text_result_without_loinc_is_read_as_tpmt_intermediate():
    cards = _topics(_cards("c23-tpmt-quest-text-heterozygous"))
    assert "pgx-test-missing" not in cards, list(cards)
    im = cards["pgx-reduce-dose"]
    assert "TPMT intermediate metabolizer" in im["summary"]
    assert "TPMT *1/*3A" in im["detail"] and "no genotype code" in im["detail"]


def test_c19_tpmt_result_under_an_unread_loinc_is_reported_found_but_unreadable_not_absent():
    cards = _topics(_cards("c19-tpmt-phenotype-coded-only"))
    assert "pgx-test-missing" not in cards, list(cards)
    card = cards["pgx-uninterpretable"]
    assert "no TPMT result on record" not in card["summary"] + card["detail"]
    assert "a TPMT result was found but could not be read" in card["detail"]
    assert "TPMT Intermediate Metabolizer" in card["detail"] and "79714-2" in card["detail"]


def test_the_control_c56_phenotype_under_53040_2_is_still_read():
    cards = _topics(_cards("c56-tpmt-phenotype-53040-2"))
    assert "pgx-reduce-dose" in cards and "pgx-uninterpretable" not in cards


def test_an_unread_tpmt_result_with_a_local_code_and_a_number_is_quoted_not_dropped():
    request = json.loads((CASES / "c23-tpmt-quest-text-heterozygous.json").read_text(encoding="utf-8"))
    obs = request["prefetch"]["pgx"]["entry"][0]["resource"]
    obs["code"] = {"coding": [{"system": "http://lab.example.org/codes", "code": "TP-77"}], "text": "TPMT"}
    del obs["valueString"]
    obs["valueQuantity"] = {"value": 9.0, "unit": "U/mL RBC"}
    cards = _topics(_run(request))
    assert "pgx-test-missing" not in cards, list(cards)
    assert "TPMT: 9.0 U/mL RBC" in cards["pgx-uninterpretable"]["detail"]


def test_a_comment_naming_tpmt_only_in_its_value_on_another_test_is_not_a_tpmt_result():
    request = json.loads((CASES / "c23-tpmt-quest-text-heterozygous.json").read_text(encoding="utf-8"))
    obs = request["prefetch"]["pgx"]["entry"][0]["resource"]
    obs["code"] = {"text": "Clinic note"}
    obs["valueString"] = "Consider TPMT testing before a thiopurine"
    cards = _topics(_run(request))
    assert "pgx-test-missing" in cards  # TPMT is still untested


# ---------------------------------------------------------------- m1: range bounds printed in whole mg

def test_c49_and_c74_range_bounds_are_whole_mg_and_the_advised_dose_is_unchanged():
    c49 = _topics(_cards("c49-aza-dose-text-only-tpmt-im"))["pgx-reduce-dose"]
    assert "give 44-72 mg/day" in c49["summary"] and "43.2" not in c49["summary"] + c49["detail"]
    c74 = _topics(_cards("c74-allopurinol-active-mp-already-quarter"))["interaction-xanthine-oxidase"]
    assert "below the reduced range (27-35 mg/day)" in c74["summary"] and "26.2" not in c74["summary"]
    c58 = _topics(_cards("c58-tpmt-im-aza-125-above-80pct"))["pgx-reduce-dose"]
    # round-15 M1: c58 is a new start (rheumatoid arthritis): the band is of the label's starting dose (75 mg)
    assert "reduce to 25 mg/day (range 23-37.5 mg/day)" in c58["summary"]
    assert "Reduced range: 23-37.5 mg/day" in c58["detail"]
    assert "Recommended dose for this azathioprine order: 25 mg once daily" in c58["detail"]


def test_range_bounds_round_inward_so_a_whole_mg_order_reads_as_it_was_judged():
    from hooks.wording import mg_span, mg_upto
    assert mg_span(26.25, 35) == "27-35"  # 26 mg is below 26.25-35: below "27-35" too
    assert mg_span(43.2, 72.0) == "44-72"
    assert mg_span(26.2, 26.8) == "26.2-26.8"  # too close to round inward: as computed
    assert mg_span(1.5, 3.75) == "1.5-3.75"  # small doses as computed
    assert mg_upto(14.4) == "14" and mg_upto(3.75) == "3.75"


def test_a_half_tablet_bound_inside_the_range_is_kept():
    from hooks.wording import mg_span
    assert mg_span(37.5, 50) == "37.5-50"  # 37.5 mg ordered is within: never "38-50"
    assert mg_span(37.2, 50) == "37.5-50"
    assert mg_span(11.25, 40) == "12-40"


# ---------------------------------------------------------------- m3: a combination vaccine named once

@pytest.mark.parametrize("name", ["c41-mmr-order-on-aza", "c73-mmr-order-text-only-on-aza"])
def test_mmr_is_named_once_without_its_antigens_repeated(name):
    card = _topics(_cards(name))["interaction-live-vaccine"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Live vaccine (MMR (measles, mumps, rubella), live) with azathioprine")
    for text in (card["summary"], card["detail"]):
        assert text.count("measles") == 1 and "measles, live" not in text and "rubella, live" not in text


def test_vaccine_family_keeps_a_parenthesised_list_whole():
    from rules.interactions import _family
    assert _family("MMR (measles, mumps, rubella), live") == "MMR (measles, mumps, rubella)"
    assert _family("rotavirus, pentavalent, live (RV5)") == "rotavirus"


# ---------------------------------------------------------------- m2: the stale-weight card agrees with itself

def test_c72_stale_weight_card_says_where_the_50_kg_reference_comes_from_and_does_not_contradict_itself():
    card = _topics(_cards("c72-weight-old-2025-aza-200"))["weight-missing"]
    d = card["detail"]
    assert "was **not** checked" not in d and "could **not** be checked on a current weight" in d
    assert "2.8 mg/kg/day" in d and "72 kg, 2025-03-01" in d
    assert "small adult of 50 kg (this service's reference when no current weight is known)" in d
    assert "2.5 mg/kg/day × 50 kg = 125 mg/day" in d and "any patient weighing under 80 kg" in d
    assert d.count("check the dose by hand before signing") == 1


def test_the_50_kg_sentence_is_not_said_when_the_order_is_under_the_reference_limit():
    request = json.loads((CASES / "c72-weight-old-2025-aza-200.json").read_text(encoding="utf-8"))
    for e in request["prefetch"]["weight"]["entry"]:
        e["resource"]["valueQuantity"]["value"] = 40  # 120 mg on 40 kg = 3.0 mg/kg, above 2.5; 120 < 125 for 50 kg
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 120
    card = _topics(_run(request))["weight-missing"]
    assert "above the maximum" in card["detail"] and "50 kg" not in card["detail"]
    assert card["detail"].count("check the dose by hand before signing") == 1


# ---------------------------------------------------------------- M4: an established, tolerated dose is not cut

def test_c81_im_on_a_tolerated_dose_for_two_years_with_normal_counts_gets_an_info_card_not_a_cut():
    cards = _topics(_cards("c81-tpmt-im-stable-2y-renewal-150"))
    assert "pgx-reduce-dose" not in cards, list(cards)
    card = cards["pgx-im-established-dose"]
    assert card["indicator"] == "info" and not card.get("suggestions")
    assert "TPMT intermediate metabolizer; taken since 2024-11-01, counts normal (2026-12-01): keep monitoring" in card["summary"]
    assert "**starting** doses" in card["detail"] and "not cut" in card["detail"]
    assert not any(s.get("actions") for c in _cards("c81-tpmt-im-stable-2y-renewal-150") for s in c.get("suggestions", []))


def _c81(**change) -> list[dict]:
    request = json.loads((CASES / "c81-tpmt-im-stable-2y-renewal-150.json").read_text(encoding="utf-8"))
    if "draft_mg" in change:
        order = request["context"]["draftOrders"]["entry"][0]["resource"]
        order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = change["draft_mg"]
    if "since" in change:
        for e in request["prefetch"]["medications"]["entry"]:
            e["resource"]["authoredOn"] = change["since"]
    for e in request["prefetch"]["labs"]["entry"]:
        r = e["resource"]
        if "anc" in change and r["code"]["coding"][0]["code"] == "751-8":
            r["valueQuantity"]["value"] = change["anc"]
        if "labs_date" in change:
            r["effectiveDateTime"] = change["labs_date"]
    return _run(request)


@pytest.mark.parametrize("change", [
    {"anc": 1.2},                 # a low count: the tolerated reading does not hold
    {"since": "2026-11-01"},      # on the dose 5 weeks only
    {"labs_date": "2026-06-01"},  # no counts within 90 days
    {"draft_mg": 175},            # a dose change (150 -> 175): a new dose, the starting band applies
])
def test_without_every_condition_the_starting_band_still_cuts(change):
    cards = _topics(_c81(**change))
    assert "pgx-im-established-dose" not in cards
    assert "pgx-reduce-dose" in cards
