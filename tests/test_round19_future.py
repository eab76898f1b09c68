"""Round-19 review H1, M5, m5: TPMT/NUDT15 results dated after today, whatever their form.

H1: a TPMT poor-metabolizer PHENOTYPE dated after today (a LOINC answer code, a phenotype code, words) beside an older
normal genotype reads as itself (``rules.pgx.gene_status``), as a genotype so dated reads by the CPIC tables (round-18
H2): the critical verify card naming the conflict, and no start dose.
M5: a result dated after today that reads INTERMEDIATE where the gene's current results read normal (a genotype, a
phenotype, an enzyme activity) raises the intermediate-metabolizer finding: the worse reading wins until it is
verified (a result dated after today can raise a concern, never clear one); the card is marked DATED ... (AFTER
TODAY), verify, names the current result it conflicts with, and gives the same dose a current intermediate result
gives (one order, one answer).
m5: a result dated after today that raised a card is named on the data-incomplete card as used only to raise that
concern, never "not used ... the checks ran without it".
Cases from the reviewer (tests/data/review19/), evaluated on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from rules.findings import Finding
from rules.future import raised_gaps
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)
R50 = "r19-50-future-pm-phenotype-vs-old-normal-genotype"
R70 = "r19-70-future-pm-genotype-vs-old-normal-control"
R71 = "r19-71-future-im-vs-old-normal-ibd-full-dose"
R49 = "r19-49-future-tpmt-im-vs-old-normal"
R81 = "r19-81-future-deficient-activity-current-normal-genotype"


def _request(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict | str) -> list[dict]:
    return case_cards(_request(request) if isinstance(request, str) else request, DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _labels(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", [])}


def _updates(cards: list[dict]) -> set[str]:
    return {label for label in _labels(cards) if label.startswith("Change to")}


def _with_result(name: str, resource_id: str, **value) -> dict:
    """``name``'s request with the value of its pgx Observation ``resource_id`` replaced by ``value``."""
    request = copy.deepcopy(_request(name))
    (resource,) = [e["resource"] for e in request["prefetch"]["pgx"]["entry"] if e["resource"]["id"] == resource_id]
    for key in ("valueCodeableConcept", "valueQuantity", "valueString"):
        resource.pop(key, None)
    resource.update(value)
    return request


def _redated(name: str, old: str, new: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8").replace(old, new))


# ------------------------------------------------------------------ H1
def _assert_future_poor_card(cards: list[dict]) -> dict:
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-uninterpretable"
    assert card["indicator"] == "critical"
    assert "dated 2027-02-14, after today, conflicts with '*1/*1' (2024-04-01): verify" in card["summary"]
    assert "Cancel the azathioprine order" in _labels(cards)
    assert not _updates(cards)  # no start dose beside the unresolved poor-metabolizer reading
    assert not _topic(cards, "dose-")
    return card


def test_future_poor_metabolizer_phenotype_is_the_conflict_card_of_a_genotype():
    cards = _cards(R50)
    card = _assert_future_poor_card(cards)
    assert card["summary"] == "Azathioprine: TPMT 'Poor Metabolizer' dated 2027-02-14, after today, conflicts with " \
                              "'*1/*1' (2024-04-01): verify"
    assert "It **conflicts** with the current TPMT result '*1/*1' (2024-04-01, normal metabolizer)" in card["detail"]
    assert "No start dose is given" in card["detail"]
    assert not _topic(cards, "data-incomplete")  # the PGx card is the one card about it (round-17 m2)
    # the control: the same result as a genotype
    (control,) = _topic(_cards(R70), "pgx-")
    assert (control["source"]["topic"]["code"], control["indicator"]) == ("pgx-uninterpretable", "critical")


@pytest.mark.parametrize("value", [
    {"valueCodeableConcept": {"text": "Poor metabolizer"}},
    {"valueString": "TPMT poor metabolizer"},
    {"valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA9657-3"}]}},
])
def test_future_poor_metabolizer_in_any_form_withholds_the_start(value):
    _assert_future_poor_card(_cards(_with_result(R50, "ph-tpmt", **value)))


def test_future_normal_phenotype_raises_nothing():
    cards = _cards(_with_result(R50, "ph-tpmt", valueCodeableConcept={"text": "Normal metabolizer"}))
    assert not _topic(cards, "pgx-")
    (gap,) = _topic(cards, "data-incomplete")
    assert gap["summary"].endswith("TPMT result dated 2027-02-14 (after today) not used; check by hand")


# ------------------------------------------------------------------ M5
def test_future_intermediate_genotype_against_older_normal_limits_the_start():
    cards = _cards(R71)
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert card["indicator"] == "warning"
    assert card["summary"] == ("DATED 2027-03-01 (AFTER TODAY), verify: Azathioprine 175 mg/day; TPMT intermediate "
                               "metabolizer: reduce to 50 mg/day")
    assert "TPMT '*1/*3A' (intermediate metabolizer); it **conflicts** with the current TPMT result '*1/*1'" \
        in card["detail"]
    assert "reads worse than the current one, so the worse reading is used until it is verified" in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 50 mg once daily"}
    assert not _topic(cards, "data-incomplete")  # the PGx card is the one card about it (round-17 m2)
    # the same dose as the same result dated before today (one class: the worse reading wins)
    current = _cards(_redated(R71, "2027-03-01", "2026-11-01"))
    assert _updates(current) == _updates(cards)


def test_future_intermediate_replaces_the_normal_start_advice():
    cards = _cards(R49)
    (card,) = _topic(cards, "pgx-")
    assert card["summary"].startswith("DATED 2027-03-01 (AFTER TODAY), verify: ")
    assert "TPMT intermediate metabolizer: reduce to 75 mg/day" in card["summary"]
    assert not _topic(cards, "dose-new-start")  # superseded: one dose for the order
    assert _updates(cards) == {"Change to azathioprine 75 mg once daily"}


def test_future_intermediate_phenotype_is_the_same_class():
    request = _with_result(R50, "ph-tpmt", valueCodeableConcept={"text": "Intermediate metabolizer"})
    (card,) = _topic(_cards(request), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert card["summary"].startswith("DATED 2027-02-14 (AFTER TODAY), verify: Azathioprine 150 mg/day; TPMT "
                                      "intermediate metabolizer: reduce to ")


def test_future_intermediate_activity_against_current_normal_genotype():
    quantity = {"value": 20.0, "unit": "U/mL RBC", "system": "http://unitsofmeasure.org", "code": "U/mL RBC"}
    cards = _cards(_with_result(R81, "tpmt-act", valueQuantity=quantity))
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-dose-in-reduced-range"  # 75 mg is inside the band
    assert card["indicator"] == "warning"  # a result to verify is not an info note
    assert card["summary"].startswith("DATED 2027-01-10 (AFTER TODAY), verify: Azathioprine: TPMT intermediate")
    assert "TPMT activity 20 U/mL RBC; it **conflicts** with the current TPMT result '*1/*1' (2025-01-10, normal " \
           "metabolizer)" in card["detail"]


def test_future_normal_activity_raises_nothing():
    quantity = {"value": 30.0, "unit": "U/mL RBC", "system": "http://unitsofmeasure.org", "code": "U/mL RBC"}
    cards = _cards(_with_result(R81, "tpmt-act", valueQuantity=quantity))
    assert not _topic(cards, "pgx-")
    (gap,) = _topic(cards, "data-incomplete")
    assert "not used; check by hand" in gap["summary"]
    assert "the checks ran without it" in gap["detail"]


def test_future_deficient_activity_names_the_conflict():
    (card,) = _topic(_cards(R81), "pgx-")
    assert (card["source"]["topic"]["code"], card["indicator"]) == ("pgx-poor-metabolizer", "critical")
    assert "it **conflicts** with the current TPMT result '*1/*1' (2025-01-10, normal metabolizer)" in card["detail"]


# ------------------------------------------------------------------ m5
@pytest.mark.parametrize("name, raised, date_", [
    ("r19-18-future-hcg-mp-new", "pregnancy", "2027-01-15"),
    ("r19-51-future-low-neutrophils", "cytopenia-severe", "2027-01-05"),
    ("r19-53-future-egfr-low-mp-established", "renal-impairment", "2027-01-02"),
    (R81, "pgx-poor-metabolizer", "2027-01-10"),
])
def test_a_result_that_raised_a_card_is_not_called_unused(name, raised, date_):
    cards = _cards(name)
    (card,) = _topic(cards, raised)
    assert card["summary"].startswith(f"DATED {date_} (AFTER TODAY), verify: ")
    (gap,) = _topic(cards, "data-incomplete")
    assert f"dated {date_} (after today) used only to raise a concern; check by hand" in gap["summary"]
    assert "not used" not in gap["summary"]
    assert "the checks ran without it" not in gap["detail"] and "it was not used" not in gap["detail"]
    assert f"used only to raise the concern on the card marked DATED {date_}" in gap["detail"]


def test_raised_gaps_maps_a_finding_to_the_results_it_rests_on():
    cbc = Finding("cytopenia-severe", "o", {"future_dated": {"dates": ["2027-01-05", "2027-02-01"]},
                                            "results": [{"analyte": "neutrophils", "date": "2027-01-05"}]})
    activity = Finding("pgx-poor-metabolizer", "o", {"future_dated": {"dates": ["2027-01-10"],
                                                                      "results": ["TPMT activity 3 U/mL RBC"]}})
    genotype = Finding("pgx-reduce-dose", "o", {"future_dated": {"dates": ["2027-03-01"], "results": ["TPMT '*1/*3A'"]}})
    current = Finding("cytopenia-severe", "o", {"results": [{"analyte": "neutrophils", "date": "2026-12-01"}]})
    assert raised_gaps([cbc, activity, genotype, current]) == {
        ("future_cbc", "2027-01-05"), ("future_tpmt_activity", "2027-01-10"), ("future_genotype", "2027-03-01")}
