"""A TPMT/NUDT15 test is "not on record" only when none was sent: when results were set aside (another patient's,
not confirmed as this patient's, dated after today), the pgx-test-missing card says that no *usable* result was
found and names what was set aside (round-13 and round-14 leftovers: the card said "no result on record" beside a
data-incomplete card naming the very result)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

DATA = Path(__file__).resolve().parent / "data"


def _load(rel: str) -> dict:
    return json.loads((DATA / rel).read_text(encoding="utf-8"))


def _by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def test_unconfirmed_tpmt_result_is_named_on_the_test_missing_card():
    cards = _by_rule(case_cards(_load("review10/c29-foreign-tpmt-identifier-only.json")))
    card = cards["pgx-test-missing"]
    assert "no usable TPMT and NUDT15 result" in card["summary"] and "set aside" in card["summary"]
    assert "no TPMT and NUDT15 result on record" not in card["summary"]
    assert "TPMT / NUDT15 results were set aside and not used" in card["detail"] or \
        "TPMT / NUDT15 results was set aside and not used" in card["detail"]
    assert "data-incomplete" in cards and len(card["summary"]) < 140


def test_result_on_another_fhir_server_is_named_on_the_test_missing_card():
    cards = _by_rule(case_cards(_load("review11/a04_abs_url_other_server_tpmt.json")))
    assert "no usable" in cards["pgx-test-missing"]["summary"]
    assert "set aside and not used (see the data-incomplete card)" in cards["pgx-test-missing"]["detail"]


def test_tpmt_activity_dated_after_today_is_named_on_the_test_missing_card():
    req = _load("review14/g11_tpmt_future_dated_normal.json")
    entries = req["prefetch"]["pgx"]["entry"]
    nudt = next(e for e in entries if e["resource"]["id"] == "g-nudt")
    activity = copy.deepcopy(nudt)
    r = activity["resource"]
    r.pop("valueCodeableConcept", None), r.pop("valueString", None)
    r.update(id="g-act", effectiveDateTime="2027-06-01",
             code={"coding": [{"system": "http://loinc.org", "code": "21563-2"}], "text": "TPMT activity"},
             valueQuantity={"value": 24.0, "unit": "U/mL RBC", "system": "http://unitsofmeasure.org", "code": "U/mL{RBC}"})
    req["prefetch"]["pgx"]["entry"] = [nudt, activity]
    cards = _by_rule(case_cards(req))
    card = cards["pgx-test-missing"]
    assert "no usable TPMT result" in card["summary"]
    assert "TPMT activity dated 2027-06-01, after today" in card["detail"]
    assert "2027-06-01" in cards["data-incomplete"]["summary"] + cards["data-incomplete"]["detail"]


def test_no_result_sent_still_reads_no_result_on_record():
    req = _load("review14/g11_tpmt_future_dated_normal.json")
    req["prefetch"]["pgx"]["entry"] = []
    req["prefetch"]["pgx"]["total"] = 0
    card = _by_rule(case_cards(req))["pgx-test-missing"]
    assert "no TPMT and NUDT15 result on record" in card["summary"] and "set aside" not in card["detail"]


def test_round15_m1_results_list_names_the_gene_whose_result_was_set_aside():
    """Round-15 m1 (b10): a TPMT activity dated after today, no NUDT15 result: the results list says TPMT has no
    usable result (set aside), and NUDT15 simply none on record."""
    cards = _by_rule(case_cards(_load("review15/b10_future_tpmt_activity.json")))
    detail = cards["pgx-test-missing"]["detail"]
    assert "- TPMT: no usable result on record (results set aside: see the data-incomplete card)" in detail
    assert "- NUDT15: no result on record\n" in detail
    assert "TPMT activity dated 2027-04-01" in detail
