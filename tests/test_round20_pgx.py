"""Round-20 review M1, M3, m2: TPMT/NUDT15 readings (rules.pgx, rules.future, fhir_mappers.observations).

M1: a result dated after today that reads intermediate metabolizer, with NO current result of the gene, sets the
intermediate-metabolizer band (the worse reading until verified), as beside an older normal result; every form
(genotype, phenotype words, LOINC answer code, TPMT activity), TPMT and NUDT15.
M3: a TPMT phenotype coded as a LOINC answer that is not a CPIC TPMT/NUDT15 phenotype (LA10315-2 Ultrarapid) is
unreadable, never normal; one whose display names another phenotype counts as the worse reading (never normal).
m2: an order accepted above the guideline's band of the normal dose says so, with what accepted it.
Cases from the reviewer (tests/data/review20/), evaluated on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review20"
DAY = date(2026, 12, 8)
R02 = "r20-02-future-im-phenotype-string-vs-old-normal-aza-ibd"
R03 = "r20-03-future-im-activity-bands-vs-old-normal-geno"
R06 = "r20-06-future-pm-activity-no-older-result"
R10 = "r20-10-future-im-loinc-answer-nudt15-no-current-nudt15"
R53 = "r20-53-very-old-east-asian-compound-im-renal-failure"
R58 = "r20-58-control-old-im-phenotype-alone"
R68 = "r20-68-phenotype-code-display-conflict"
R69 = "r20-69-phenotype-code-display-conflict-crohns"


def _request(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict | str) -> list[dict]:
    return case_cards(_request(request) if isinstance(request, str) else request, DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


def _resource(request: dict, resource_id: str) -> dict:
    (resource,) = [e["resource"] for e in request["prefetch"]["pgx"]["entry"] if e["resource"]["id"] == resource_id]
    return resource


def _with_value(name: str, resource_id: str, **value) -> dict:
    request = copy.deepcopy(_request(name))
    resource = _resource(request, resource_id)
    for key in ("valueCodeableConcept", "valueQuantity", "valueString"):
        resource.pop(key, None)
    resource.update(value)
    return request


# ------------------------------------------------------------------ M1
def _assert_future_im_band(cards: list[dict], gene: str, update: str) -> None:
    (card,) = _topic(cards, "pgx-reduce-dose")
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("DATED ")
    assert f"{gene} intermediate metabolizer: reduce to" in card["summary"]
    assert f"there is no current {gene} result to weigh it against" in card["detail"]
    assert update in _updates(cards)
    assert not _topic(cards, "pgx-uninterpretable")


def test_future_nudt15_im_genotype_with_no_current_nudt15_sets_the_band():
    cards = _cards(R10)
    _assert_future_im_band(cards, "NUDT15", "Change to azathioprine 50 mg once daily")
    assert "125 mg" not in " ".join(_updates(cards))


@pytest.mark.parametrize("value", [
    {"valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA10317-8",
                                          "display": "Intermediate metabolizer"}]}},
    {"valueCodeableConcept": {"text": "NUDT15 intermediate metabolizer"}},
    {"valueString": "Intermediate metabolizer"},
])
def test_future_nudt15_im_in_any_form_with_no_current_result_sets_the_band(value):
    _assert_future_im_band(_cards(_with_value(R10, "g-n-f", **value)), "NUDT15",
                           "Change to azathioprine 50 mg once daily")


def test_future_tpmt_im_genotype_with_no_current_tpmt_sets_the_band():
    request = copy.deepcopy(_request(R10))
    tpmt, nudt15 = _resource(request, "g-tpmt"), _resource(request, "g-n-f")
    tpmt["effectiveDateTime"], tpmt["valueCodeableConcept"] = "2027-04-04", {"text": "TPMT *1/*3A"}
    nudt15["effectiveDateTime"], nudt15["valueCodeableConcept"] = "2024-04-01", {"text": "NUDT15 *1/*1"}
    _assert_future_im_band(_cards(request), "TPMT", "Change to azathioprine 50 mg once daily")


def test_future_tpmt_im_activity_with_no_current_tpmt_sets_the_band():
    request = copy.deepcopy(_request(R06))
    activity = _resource(_request(R03), "tpmt-act")  # 10.2 nmol/h/mL RBC, intermediate by its own bands
    request["prefetch"]["pgx"]["entry"] = [{"resource": activity} if e["resource"]["id"] == "tpmt-act" else e
                                           for e in request["prefetch"]["pgx"]["entry"]]
    cards = _cards(request)
    (card,) = _topic(cards, "pgx-reduce-dose")
    assert card["indicator"] == "warning" and card["summary"].startswith("DATED 2027-01-20")
    assert "TPMT intermediate metabolizer: reduce to 50 mg/day" in card["summary"]
    assert "Change to azathioprine 50 mg once daily" in _updates(cards)
    assert _topic(cards, "pgx-test-missing")  # no current TPMT result: still said, test before starting


def test_future_poor_activity_with_no_current_result_unchanged():
    cards = _cards(R06)
    assert [c["indicator"] for c in _topic(cards, "pgx-poor-metabolizer")] == ["critical"]
    assert not _topic(cards, "pgx-reduce-dose")


def test_future_im_beside_older_normal_unchanged():
    (card,) = _topic(_cards(R02), "pgx-reduce-dose")
    assert card["summary"].startswith("DATED 2027-03-01")
    assert "it reads worse than the current one" in card["detail"]


# ------------------------------------------------------------------ M3
@pytest.mark.parametrize("name,update", [(R69, "Change to azathioprine 50 mg once daily"),
                                         (R68, "Change to azathioprine 75 mg once daily")])
def test_code_display_conflict_reads_the_worse_phenotype(name, update):
    cards = _cards(name)
    (card,) = _topic(cards, "pgx-reduce-dose")
    assert "TPMT intermediate metabolizer: reduce to" in card["summary"]
    assert "its code and its own words name different phenotypes; the worse (intermediate metabolizer) counts" \
        in card["detail"]
    assert 'Ultrarapid Metabolizer (LOINC answer code), displayed "Intermediate metabolizer"' in card["detail"]
    assert update in _updates(cards)


def test_code_display_conflict_matches_the_correct_code():
    assert _updates(_cards(R68)) == _updates(_cards(R58))


def _phenotype(name: str, concept: dict) -> dict:
    return _with_value(name, "ph-old", valueCodeableConcept=concept)


@pytest.mark.parametrize("concept", [
    {"coding": [{"system": "http://loinc.org", "code": "LA10315-2", "display": "Ultrarapid metabolizer"}],
     "text": "Ultrarapid metabolizer"},
    {"coding": [{"system": "http://loinc.org", "code": "LA25390-8", "display": "Rapid metabolizer"}]},
    {"text": "TPMT rapid metabolizer"},
])
def test_non_cpic_tpmt_phenotype_is_unreadable_never_normal(concept):
    cards = _cards(_phenotype(R69, concept))
    (card,) = _topic(cards, "pgx-uninterpretable")
    assert card["summary"] == "Azathioprine: TPMT result could not be interpreted; verify before prescribing"
    assert "is not a CPIC TPMT phenotype" in card["detail"]
    assert not _topic(cards, "pgx-reduce-dose")


def test_normal_code_displayed_otherwise_is_unreadable_never_normal():
    concept = {"coding": [{"system": "http://loinc.org", "code": "LA25391-6", "display": "Ultrarapid metabolizer"}]}
    cards = _cards(_phenotype(R69, concept))
    (card,) = _topic(cards, "pgx-uninterpretable")
    assert 'Normal Metabolizer (LOINC answer code), displayed "Ultrarapid metabolizer"' in card["detail"]


def test_intermediate_code_displayed_normal_reads_intermediate():
    concept = {"coding": [{"system": "http://loinc.org", "code": "LA10317-8", "display": "Normal metabolizer"}]}
    cards = _cards(_phenotype(R69, concept))
    (card,) = _topic(cards, "pgx-reduce-dose")
    assert "the worse (intermediate metabolizer) counts" in card["detail"]


def test_agreeing_code_and_display_read_as_before():
    concept = {"coding": [{"system": "http://loinc.org", "code": "LA10317-8", "display": "Intermediate metabolizer"}],
               "text": "Intermediate metabolizer"}
    cards = _cards(_phenotype(R69, concept))
    (card,) = _topic(cards, "pgx-reduce-dose")
    assert "different phenotypes" not in card["detail"]


# ------------------------------------------------------------------ m2
def test_accepted_start_above_the_band_says_so():
    cards = _cards(R53)
    (card,) = [c for c in cards if "The ordered dose (52 %" in c["detail"]]  # the merged older-patient / PGx card
    assert "52 % of the normal dose) is within" not in card["detail"]
    assert ("The ordered dose (52 % of the normal dose) is above CPIC's 20-50 % of it (48 mg/day), but within 20-50 % "
            "of the highest usual dose") in card["detail"]
    assert not _updates(cards)  # accepted: not cut
