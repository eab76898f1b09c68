"""Round-17 review: results dated after today ("future-dated", set aside by rules.plausibility.future_dated).

H1: such a result can raise a concern, never clear one (rules/future.py): a critical CBC, a positive hCG, a live
vaccine recorded as given still raise their cards, marked "DATED ... (AFTER TODAY), verify", with the laboratory's
flags quoted; it never makes a check current. M1: a set-aside poor-metabolizer TPMT reading gives no start dose.
m1: summaries never say "no CBC on record" / plain "no body weight" when one dated after today was sent.
m2: one future-dated TPMT result, one card."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review17"


def _req(name: str) -> dict:
    return json.loads(next(CASES.glob(f"{name}_*.json")).read_text(encoding="utf-8"))


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _card(cards: list[dict], rule: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule]
    return card


def _resources(req: dict):
    for v in req.get("prefetch", {}).values():
        for e in (v or {}).get("entry", []) if isinstance(v, dict) else []:
            yield e.get("resource", {})


# ------------------------------------------------------------------ H1: raise, never clear


def test_d02_a_future_critical_cbc_still_stops_the_order_marked_verify():
    cards = case_cards(_req("d02"))
    sev = _card(cards, "cytopenia-severe")
    assert sev["indicator"] == "critical"
    assert sev["summary"].startswith("DATED 2027-01-10 (AFTER TODAY), verify: Severe cytopenia")
    assert "rests on a record dated 2027-01-10, after today" in sev["detail"]
    assert "neutrophils 0.3 [LL]" in sev["detail"] and "platelets 30 [LL]" in sev["detail"]
    assert "Verify it and its date" in sev["detail"]
    assert any(s["label"].startswith("Cancel") for s in sev["suggestions"])
    # it is still not a CBC taken: the CBC is due, and the data-incomplete card names it with the lab's flags
    due = _card(cards, "monitoring-cbc-due")
    assert "no CBC on record" not in due["summary"]
    assert "no CBC dated up to today (2027-01-10 set aside)" in due["summary"]  # m1
    gap = _card(cards, "data-incomplete")
    assert "neutrophil count 0.3 10*9/L [LL]" in gap["detail"]


def test_d02_control_the_same_cbc_dated_today_gives_the_same_card_unmarked():
    req = _req("d02")
    for r in _resources(req):
        if r.get("resourceType") == "Observation" and str(r.get("effectiveDateTime", "")).startswith("2027-01-10"):
            r["effectiveDateTime"] = "2026-12-06"
    cards = case_cards(req)
    sev = _card(cards, "cytopenia-severe")
    assert sev["indicator"] == "critical" and "AFTER TODAY" not in sev["summary"]


def test_c44_a_future_low_neutrophil_count_beside_an_old_normal_cbc_is_raised():
    cards = case_cards(_req("c44"))
    sev = _card(cards, "cytopenia-severe")
    assert sev["indicator"] == "critical" and "AFTER TODAY" in sev["summary"]
    assert "0.4" in sev["summary"]
    assert "neutrophils 0.4" in sev["detail"]
    # the current normal CBC (2026-12-01) keeps the CBC up to date; the future one never did
    assert "monitoring-cbc-due" not in _codes(cards)


def test_c40_a_future_normal_cbc_raises_nothing_and_clears_nothing():
    cards = case_cards(_req("c40"))
    codes = _codes(cards)
    assert "cytopenia" not in codes and "cytopenia-severe" not in codes
    due = _card(cards, "monitoring-cbc-due")
    assert "no CBC dated up to today (2027-02-01 set aside)" in due["summary"]  # m1
    assert not any("AFTER TODAY" in c["summary"] for c in cards)


def test_d03_a_future_positive_hcg_raises_the_pregnancy_warning():
    cards = case_cards(_req("d03"))
    preg = _card(cards, "pregnancy")
    assert preg["indicator"] in ("warning", "critical")
    assert preg["summary"].startswith("DATED 2026-12-20 (AFTER TODAY), verify: Positive pregnancy test")
    assert "fetal harm" in preg["summary"]
    assert "data-incomplete" in _codes(cards)  # still named as set aside


def test_d03_a_future_negative_hcg_raises_nothing():
    req = _req("d03")
    text = json.dumps(req).replace('"positive"', '"negative"').replace('"Positive"', '"Negative"')
    req = json.loads(text)
    for r in _resources(req):
        if r.get("resourceType") == "Observation" and "valueCodeableConcept" in r:
            for c in r["valueCodeableConcept"].get("coding", []):
                if c.get("code") == "10828004":  # SNOMED CT Positive -> Negative
                    c["code"], c["display"] = "260385009", "Negative"
    cards = case_cards(req)
    assert "pregnancy" not in _codes(cards)
    assert not any("AFTER TODAY" in c["summary"] for c in cards)


def test_d04_a_live_vaccine_recorded_after_today_raises_the_vaccine_warning():
    cards = case_cards(_req("d04"))
    card = _card(cards, "thiopurine-after-live-vaccine")
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("DATED 2026-12-10 (AFTER TODAY), verify: ")
    assert "recorded as given 2026-12-10" in card["summary"]
    assert "days ago" not in card["detail"] and "0 days" not in card["summary"]


# ------------------------------------------------------------------ M1 / m2: a future-dated TPMT result


def test_d01_a_future_poor_metabolizer_reading_gives_no_start_dose():
    cards = case_cards(_req("d01"))
    pgx = _card(cards, "pgx-uninterpretable")
    assert pgx["indicator"] == "critical"
    codes = _codes(cards)
    assert "dose-new-start" not in codes
    assert not any("start at" in c["summary"].lower() for c in cards)
    assert not any("mg/day and titrate" in c["detail"] for c in cards)
    cancel = [s for s in pgx["suggestions"] if s["label"].startswith("Cancel")]
    assert cancel and all(s.get("isRecommended") is False for s in cancel)
    # m2: one card about the one result
    assert "data-incomplete" not in codes
    assert "TPMT result '*3A/*3A' is dated 2027-03-01, after today: set aside" in pgx["detail"]


def test_c41_one_future_normal_tpmt_result_one_card():
    cards = case_cards(_req("c41"))
    codes = _codes(cards)
    assert codes.count("pgx-uninterpretable") == 1 and "data-incomplete" not in codes
    assert "dated 2027-05-01, after today" in _card(cards, "pgx-uninterpretable")["summary"]


# ------------------------------------------------------------------ m1: a future-dated weight


def test_c42_the_weight_card_names_the_weight_set_aside():
    cards = case_cards(_req("c42"))
    card = _card(cards, "weight-missing")
    assert "2027-01-30 set aside" in card["summary"]
    assert "a weight dated 2027-01-30, after today, was set aside" in card["detail"]


def test_a_future_weight_never_becomes_a_current_weight():
    req = copy.deepcopy(_req("c42"))
    cards = case_cards(req)
    assert "weight-missing" in _codes(cards)


# ------------------------------------------------------------------ H1 (the class): a future-dated TPMT activity


def _b10(value: float) -> dict:
    path = Path(__file__).resolve().parent / "data" / "review15" / "b10_future_tpmt_activity.json"
    req = json.loads(path.read_text(encoding="utf-8"))
    for r in _resources(req):
        if r.get("id") == "tpmt-act-f":
            r["valueQuantity"]["value"] = value
    return req


def test_a_future_deficient_tpmt_activity_raises_the_poor_metabolizer_card():
    cards = case_cards(_b10(3))
    pm = _card(cards, "pgx-poor-metabolizer")
    assert pm["indicator"] == "critical"
    assert pm["summary"].startswith("DATED 2027-04-01 (AFTER TODAY), verify: ")
    assert "TPMT activity 3 U/mL{RBC}" in pm["detail"]
    assert "dose-new-start" not in _codes(cards)  # no start dose beside it


def test_a_future_normal_tpmt_activity_raises_nothing_and_is_not_a_result():
    cards = case_cards(_b10(30))
    codes = _codes(cards)
    assert "pgx-poor-metabolizer" not in codes and not any("AFTER TODAY" in c["summary"] for c in cards)
    assert "pgx-test-missing" in codes  # still no usable TPMT result: test before starting


def test_the_future_line_quotes_other_flagged_results_of_that_date():
    from hooks.wording import render
    from rules.findings import Finding

    f = Finding("cytopenia-severe", "MedicationRequest/x",
                {"results": [{"analyte": "neutrophils", "value": 0.3, "date": "2027-01-10", "ref_high": None,
                              "preliminary": False, "comparator": "", "flag": "critical_low", "flag_code": "LL"}],
                 "preliminary": False,
                 "future_dated": {"dates": ["2027-01-10"], "results": ["neutrophils 0.3 [LL]"],
                                  "flags": ["hemoglobin 6.1 [LL]"]}},
                stops_order=True, drug="azathioprine")
    r = render(f)
    assert r.summary.startswith("DATED 2027-01-10 (AFTER TODAY), verify: ") and len(r.summary) <= 140
    assert "neutrophils 0.3 [LL]" in r.detail and "flagged by the laboratory: hemoglobin 6.1 [LL]" in r.detail
    assert "wording" not in r.summary.lower()
