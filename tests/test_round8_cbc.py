"""Round-8 review H2 (HARM): a "CBC" was counted as done when no white cell, neutrophil or platelet count was obtained.

A CBC date counts for monitoring (CBC due, new-start baseline, 90-day check) only when a white cell or neutrophil
count AND a platelet count were read (monitoring.toml [cbc] complete_count: the Imuran label's "complete blood
counts, including platelet counts"; the BSR/BHPR 2017 thresholds on WBC, neutrophils and platelets). A blood count
sent with dataAbsentReason, or cancelled, is a data gap that quotes what was sent, and never a done count.
The reviewer's cases are copied into tests/data/review8 (c40, c77, c100, c101, c120, c121)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers.facts import DataGap
from fhir_mappers.observations import measurements
from rules.knowledge_base import load
from tests.builders import LOINC, days_ago, lab, med_request, normal_labs
from tests.review_cases import case_cards
from tests.test_rules_clinical import ids, one, run


def gap_why(g: dict) -> str:
    """A gap's why as the card words it (the catalogue's gap_why: the rule gives a problem code and values)."""
    from hooks.wording import wording

    return str(wording().macros.gap_why(g))


CASES = Path(__file__).parent / "data" / "review8"


def _cards(prefix: str) -> list[dict]:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return case_cards(json.loads(path.read_text(encoding="utf-8")))


def _rule(card: dict) -> str:
    return card["source"]["topic"]["code"]


def _card(cards: list[dict], rule_id: str) -> dict:
    (card,) = [c for c in cards if _rule(c) == rule_id]
    return card


# ------------------------------------------------------------------ the reviewer's cases
def test_c40_absent_and_cancelled_counts_are_named_and_the_cbc_is_due():
    cards = _cards("c40")
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning"
    detail = gap["detail"]
    assert "**white cell count**" in detail and "dataAbsentReason 'error'" in detail
    assert "**platelet count**" in detail and "dataAbsentReason 'not-performed'" in detail
    assert "**neutrophil count**" in detail and "status 'cancelled'" in detail and "'3.5 10*9/L'" in detail
    due = _card(cards, "monitoring-cbc-due")
    assert "CBC due" in due["summary"] and "no complete count on record" in due["summary"]
    assert "2026-12-01 had lymphocyte count, haemoglobin and MCV only" in due["detail"]
    assert "**due now**" in due["detail"].split("- Liver")[0]


def test_c100_haemoglobin_and_mcv_do_not_make_the_cbc_up_to_date():
    due = _card(_cards("c100"), "monitoring-cbc-due")
    assert due["summary"].startswith("Azathioprine: CBC and liver tests due; last complete count 2026-05-01")
    assert "2026-12-01: no white cells/neutrophils or platelets" in due["summary"]
    cbc = due["detail"].split("- Liver")[0]
    assert "last complete count (a white cell or neutrophil count and a platelet count) 2026-05-01" in cbc
    assert "2026-12-01 had haemoglobin and MCV only (no white cell count or neutrophil count, no platelet count)" in cbc
    assert cbc.rstrip().endswith("due within 90 days: **due now**.")


def test_c101_new_start_without_baseline_counts_asks_for_them():
    cards = _cards("c101")
    due = _card(cards, "monitoring-cbc-due")
    assert "(new start): CBC due; no complete count on record" in due["summary"]
    assert "due within 7 days: **due now**" in due["detail"]
    assert "data-incomplete" not in {_rule(c) for c in cards}  # nothing was sent that could not be read


def test_c120_baseline_platelets_sent_without_a_value_is_a_gap_and_the_cbc_is_due():
    cards = _cards("c120")
    gap = _card(cards, "data-incomplete")
    assert "platelet count 'no value: error'" in gap["summary"]
    assert "dataAbsentReason 'error'" in gap["detail"] and "Observation/o1748" in gap["detail"]
    due = _card(cards, "monitoring-cbc-due")
    assert due["summary"].endswith("2026-12-01: no platelets")
    assert "platelet count 2026-12-01 (dataAbsentReason 'error')" in due["detail"]


def test_c121_cancelled_neutrophils_beside_a_white_cell_count_is_named_not_a_due_cbc():
    cards = _cards("c121")
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning" and "neutrophil count 'status cancelled'" in gap["summary"]
    assert "status 'cancelled'" in gap["detail"] and "'0.6 10*9/L' was sent with it" in gap["detail"]
    # the white cell count and the platelets were read: the CBC itself is complete (no due card); the cancelled
    # result's value is not a result (no cytopenia card on 0.6)
    assert sorted(_rule(c) for c in cards) == ["data-incomplete", "dose-new-start"]


def test_c77_only_absent_counts_says_what_was_sent_not_none_on_record():
    cards = _cards("c77")
    gap = _card(cards, "data-incomplete")
    assert gap["detail"].count("dataAbsentReason 'error'") == 3
    due = _card(cards, "monitoring-cbc-due")
    assert "3 counts sent without a result" in due["summary"]
    assert "none on record" not in due["detail"].split("- Liver")[0]


# ------------------------------------------------------------------ the class, without noise
def test_the_definition_is_knowledge_data_with_its_sources():
    cbc = load().monitoring.cbc
    assert cbc.complete_count == (("wbc", "neutrophils"), ("platelets",))
    assert cbc.complete_count_source == "fda_azathioprine_monitoring" and "bsr_2017" in cbc.complete_count_sources
    assert set(cbc.absent_gap_analytes) == {"wbc", "neutrophils", "platelets", "hemoglobin"}


def test_a_full_cbc_gives_the_same_answer_as_before():
    assert run() == []  # established therapy, full CBC and liver tests 3 days ago
    assert ids(run([med_request(daily_mg=100)], meds=[])) == ["dose-new-start"]  # new start: baseline present


def test_counts_of_one_sample_reported_on_two_days_still_make_one_cbc():
    labs = [o for o in normal_labs(3) if o["id"] != "plt"] + [lab("777-3", 250, "10*9/L", when=days_ago(2), id="plt2")]
    assert "monitoring-cbc-due" not in ids(run([med_request(daily_mg=100)], meds=[], labs=labs))


@pytest.mark.parametrize("missing", ["plt", "wbc-and-anc"])
def test_a_cbc_without_platelets_or_without_white_cells_is_not_up_to_date(missing):
    drop = {"plt"} if missing == "plt" else {"wbc", "anc"}
    labs = [o for o in normal_labs(3) if o["id"] not in drop]
    f = one(run(labs=labs), "monitoring-cbc-due")  # established therapy: the 90-day check
    assert f.values["cbc_due"] and f.values["last_cbc"] == ""
    assert f.values["partial_cbc"]["missing"] == ([["platelets"]] if missing == "plt" else [["wbc", "neutrophils"]])


def test_neutrophils_alone_with_platelets_are_a_white_count():
    labs = [o for o in normal_labs(3) if o["id"] != "wbc"]
    assert "monitoring-cbc-due" not in ids(run(labs=labs))


def _absent(loinc: str, *, status: str = "final", reason: str | None = "error", when: str | None = None,
            id: str = "x", value: float | None = None) -> dict:
    o: dict = {"resourceType": "Observation", "id": id, "status": status,
               "code": {"coding": [{"system": LOINC, "code": loinc}]}, "effectiveDateTime": when or days_ago(1)}
    if reason:
        o["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                             "code": reason}]}
    if value is not None:
        o["valueQuantity"] = {"value": value, "unit": "10*9/L"}
    return o


def test_the_mapper_reports_the_facts_and_no_gap():
    gaps: list[DataGap] = []
    absent: dict = {}
    labs = measurements([_absent("777-3", id="p1"), _absent("751-8", status="cancelled", reason=None, value=0.6, id="n1"),
                         _absent("6690-2", status="entered-in-error", reason=None, value=0.1, id="w1")], gaps, {}, absent)
    assert labs == {} and gaps == []  # the mapper decides nothing
    (p,) = absent["platelets"]
    assert (p.reason, p.status, p.source_ref) == ("error", "final", "Observation/p1")
    (n,) = absent["neutrophils"]
    assert (n.status, n.value_text, n.reason) == ("cancelled", "0.6 10*9/L", "")
    assert "wbc" not in absent  # entered-in-error is not a result: silent


def test_a_cancelled_count_with_a_later_readable_one_is_silent():
    labs = normal_labs(3) + [_absent("777-3", status="cancelled", reason=None, when=days_ago(5), id="old")]
    assert run(labs=labs) == []


def test_a_cancelled_count_of_the_same_time_as_a_readable_one_is_silent():
    labs = normal_labs(3) + [_absent("777-3", status="cancelled", reason=None, when=days_ago(3), id="dup")]
    assert run(labs=labs) == []


def test_an_absent_count_newer_than_the_readable_one_is_named():
    labs = normal_labs(3) + [_absent("777-3", reason="not-performed", when=days_ago(1), id="new")]
    gap = one(run(labs=labs), "data-incomplete")
    (g,) = gap.values["gaps"]
    assert g["key"] == "platelets" and "dataAbsentReason 'not-performed'" in gap_why(g)


def test_an_absent_count_older_than_the_result_age_is_not_a_gap():
    age = load().monitoring.cbc.result_max_age_days
    labs = normal_labs(3) + [_absent("6690-2", when=days_ago(age + 30), id="ancient")]
    labs = [o for o in labs if o["id"] != "wbc"]  # no readable WBC at all; neutrophils are
    assert "data-incomplete" not in ids(run(labs=labs))


def test_absent_results_of_other_analytes_stay_quiet():
    # eGFR and ALT sent without a value: not blood counts (the gap is only for the CBC analytes)
    labs = normal_labs(3) + [_absent("62238-1", id="egfr-x", when=days_ago(1)), _absent("1742-6", id="alt-x", when=days_ago(1))]
    assert run(labs=labs) == []


def test_an_entered_in_error_count_stays_silent():
    labs = [o for o in normal_labs(3) if o["id"] != "plt"] + [
        lab("777-3", 250, "10*9/L", when=days_ago(3), id="plt"),
        _absent("777-3", status="entered-in-error", reason=None, value=20, when=days_ago(1), id="eie")]
    assert run(labs=labs) == []


def test_the_smart_picture_dates_the_cbc_by_the_last_complete_count():
    from fhir_mappers.build import build_facts
    from rules.picture import picture
    from tests.builders import TODAY, bundle, patient, weight

    labs = normal_labs(100) + [lab("718-7", 13.5, "g/dL", when=days_ago(2), id="hb-new")]
    facts = build_facts([med_request(daily_mg=100)], {"patient": patient(), "labs": bundle(*labs),
                                                      "weight": bundle(weight(70))}, today=TODAY)
    cbc = picture(facts)["monitoring"]["cbc"]
    assert cbc["last"].startswith(days_ago(100)[:10]) and cbc["overdue"]


def test_a_cancelled_report_names_its_counts_and_an_entered_in_error_one_stays_silent():
    def report(status: str) -> dict:
        plt = {"resourceType": "Observation", "id": "plt-r", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": "777-3"}]}, "effectiveDateTime": days_ago(1),
               "valueQuantity": {"value": 30, "unit": "10*9/L"}}
        return {"resourceType": "DiagnosticReport", "id": "cbc-r", "status": status, "contained": [plt],
                "code": {"coding": [{"system": LOINC, "code": "58410-2"}]}, "effectiveDateTime": days_ago(1)}

    gap = one(run(labs=normal_labs(3) + [report("cancelled")]), "data-incomplete")
    (g,) = gap.values["gaps"]
    assert g["key"] == "platelets" and "status 'cancelled'" in gap_why(g) and "'30 10*9/L'" in gap_why(g)
    assert "cytopenia-severe" not in ids(run(labs=normal_labs(3) + [report("cancelled")]))  # never a value
    assert run(labs=normal_labs(3) + [report("entered-in-error")]) == []


def test_a_newer_haemoglobin_beside_an_up_to_date_cbc_changes_no_wording():
    # liver tests due, CBC up to date (5 days old), a haemoglobin of yesterday: the card is about the liver tests
    labs = [o for o in normal_labs(5) if o["id"] not in ("alt", "ast")] + [lab("718-7", 13.0, "g/dL", when=days_ago(1), id="hb1")]
    f = one(run(labs=labs), "monitoring-cbc-due")
    assert not f.values["cbc_due"] and f.values["lft_due"]
    assert "partial_cbc" not in f.values and "absent_cbc" not in f.values
