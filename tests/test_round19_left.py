"""Round-19 (left): one order, one answer for restarts and switches; results dated after today.

1. A renewal draft naming an order STOPPED before the renewal is a restart: a new start for every rule (monitoring's
   weekly phase, the renal card's start advice, the start dose), as the same draft without the link is
   (``rules.common.link_shows_therapy``, ``rules.evaluate.without_replaced``).
2. A documented switch mercaptopurine -> azathioprine (the draft names the mercaptopurine order) is a new start of
   azathioprine for its dose: the TPMT band of azathioprine's own normal dose, as the same azathioprine order sent
   without the link (r11b), never from the mercaptopurine dose.
3. A low count dated tomorrow (kept as current by the time-zone tolerance) carries the "DATED ... (AFTER TODAY),
   verify:" marker as the findings raised by results dated later do (``rules.future.ahead_marked``).
4. The SMART app's picture shows results dated after today, apart from the current values and marked.
Cases: tests/data/review17/, tests/data/review18/, evaluated on 2026-12-07 (fixed).
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.build import build_facts
from rules.common import is_new_start
from rules.evaluate import without_replaced
from rules.picture import picture
from tests.review_cases import case_cards

DATA = Path(__file__).resolve().parent / "data"
DAY = date(2026, 12, 7)
TPMT_NM = "TPMT *1/*1"


def _load(folder: str, name: str) -> dict:
    return json.loads((DATA / folder / f"{name}.json").read_text(encoding="utf-8"))


def _by_rule(cards: list[dict]) -> dict[str, dict]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def _answer(cards: list[dict]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"],
                   tuple(s["label"] for s in c.get("suggestions", []))) for c in cards)


def _draft(req: dict) -> dict:
    return req["context"]["draftOrders"]["entry"][0]["resource"]


def _labs_on(req: dict, day: str) -> dict:
    for e in req["prefetch"]["labs"]["entry"]:
        e["resource"]["effectiveDateTime"] = day
    return req


def _lab(req: dict, loinc: str) -> dict:
    (res,) = [e["resource"] for e in req["prefetch"]["labs"]["entry"] if e["resource"]["code"]["coding"][0]["code"] == loinc]
    return res


def _tpmt(req: dict, text: str) -> dict:
    for e in req["prefetch"]["pgx"]["entry"]:
        value = e["resource"]["valueCodeableConcept"]
        if value.get("text", "").startswith("TPMT"):
            value["text"] = text
    return req


def _restart(tpmt: str = TPMT_NM, labs_day: str = "2026-11-10", link: bool = True) -> dict:
    """r08: azathioprine 150 mg for rheumatoid arthritis (70 kg), renewing aza-old (150 mg, stopped; its end date is
    its authoredOn, 2024-06-01, long before the draft); the counts 27 days old."""
    req = _tpmt(_labs_on(_load("review18", "r08_im_renewal_prior_stopped"), labs_day), tpmt)
    if not link:
        del _draft(req)["priorPrescription"]
    return req


def _old_order(req: dict) -> dict:
    (old,) = [e["resource"] for e in req["prefetch"]["past_medications"]["entry"]]
    return old


# ------------------------------------------------------------------ 1. a restart after a stop is a new start


def test_restart_after_a_stop_gets_the_weekly_cbc_of_a_new_start():
    cards = _by_rule(case_cards(_restart(), DAY))
    cbc = cards["monitoring-cbc-due"]  # before: no card (the link read as established therapy, 27-day-old CBC)
    assert cbc["summary"] == "Azathioprine (new start): CBC and liver tests due; last CBC 2026-11-10"
    assert {s["label"] for s in cbc["suggestions"]} == {"Order a CBC", "Order liver tests"}
    assert cards["dose-new-start"]["summary"].startswith("Azathioprine new start at 150 mg/day: start at 75 mg/day")


def test_restart_after_a_stop_answers_as_the_same_order_without_the_link():
    assert _answer(case_cards(_restart(), DAY)) == _answer(case_cards(_restart(link=False), DAY))


def test_renewal_of_an_order_stopped_on_the_renewal_day_is_still_established():
    req = _restart()
    old = _old_order(req)
    old["dispenseRequest"] = {"validityPeriod": {"start": "2024-06-01", "end": "2026-12-07"}}
    facts = without_replaced(build_facts([_draft(req)], req["prefetch"], today=DAY))
    (order,) = facts.orders
    assert [m.ref for m in facts.renewed_medications] == ["MedicationRequest/aza-old"]
    assert not is_new_start(facts, order, "azathioprine")
    cards = _by_rule(case_cards(req, DAY))
    assert "dose-new-start" not in cards
    assert "new start" not in cards.get("monitoring-cbc-due", {}).get("summary", "")


def test_renewal_of_a_completed_order_is_still_established():
    req = _restart()
    _old_order(req)["status"] = "completed"
    cards = _by_rule(case_cards(req, DAY))
    assert "dose-new-start" not in cards
    assert "new start" not in cards.get("monitoring-cbc-due", {}).get("summary", "")


def test_a_link_to_an_order_not_on_record_still_reads_as_a_renewal():
    req = _restart()
    req["prefetch"]["past_medications"]["entry"] = []
    facts = without_replaced(build_facts([_draft(req)], req["prefetch"], today=DAY))
    (order,) = facts.orders
    assert order.prior_therapy is not None and not is_new_start(facts, order, "azathioprine")


def test_restart_after_a_stop_with_renal_impairment_is_told_to_start_low():
    req = _restart(labs_day="2026-12-01")
    _lab(req, "62238-1")["valueQuantity"]["value"] = 25
    cards = _by_rule(case_cards(req, DAY))
    renal = cards["renal-impairment"]
    assert renal["summary"] == "Azathioprine with renal impairment (eGFR 25): use lower doses, monitor CBC"  # was "review"
    assert "Start at the low end of the range." in renal["detail"]
    assert "established therapy" not in renal["detail"]
    assert "lower in renal impairment" in cards["dose-new-start"]["summary"]


def _mp_restart(stopped_on: str) -> dict:
    """d05 (ALL, adult, 1.84 m2, mercaptopurine 137.5 mg/day = 75 mg/m2, eGFR 40), now naming mp-old: a stopped order
    of the same dose whose end is ``stopped_on``."""
    req = _load("review17", "d05_all_adult_mp_egfr40")
    _draft(req)["priorPrescription"] = {"reference": "MedicationRequest/mp-old"}
    old = copy.deepcopy(_draft(req))
    old.update(id="mp-old", status="stopped", authoredOn="2025-01-10",
               dispenseRequest={"validityPeriod": {"start": "2025-01-10", "end": stopped_on}})
    del old["priorPrescription"]
    req["prefetch"]["past_medications"]["entry"] = [{"resource": old}]
    return req


def test_mercaptopurine_restart_in_all_with_renal_impairment_gets_the_labels_lowest_start():
    cards = _by_rule(case_cards(_mp_restart("2026-06-01"), DAY))
    renal = cards["renal-impairment"]
    # was "review the dose"; the label's lowest start is 50 mg/m² = 92 mg to 1.5 mg/kg = 105 mg (round-19 M2)
    assert renal["summary"] == ("Mercaptopurine with renal impairment (eGFR 40): new start: give 100 mg/day (label's "
                                "lowest start 92-105 mg), monitor CBC")
    assert [s["label"] for s in renal["suggestions"]] == ["Change to mercaptopurine 100 mg once daily"]
    new = _by_rule(case_cards(_load("review17", "d05_all_adult_mp_egfr40"), DAY))["renal-impairment"]
    assert renal["summary"] == new["summary"]  # the restart reads as the new start it is


def test_mercaptopurine_renewal_stopped_by_the_renewal_is_reviewed_not_restarted():
    renal = _by_rule(case_cards(_mp_restart("2026-12-07"), DAY))["renal-impairment"]
    assert "review the dose" in renal["summary"] and "new start" not in renal["summary"]
    assert not renal.get("suggestions")


# ------------------------------------------------------------------ 2. a switch is a new start of the new drug


def test_switch_from_mercaptopurine_doses_azathioprine_as_a_new_start():
    cards = _by_rule(case_cards(_load("review18", "r11_switch_mp_to_aza_prior_points_mp"), DAY))
    pgx = cards["pgx-reduce-dose"]
    # was "reduce to 75 mg/day (range 45-75 mg/day)" of the 150 mg ordered; now the band of azathioprine's own
    # normal dose (2 mg/kg x 70 kg = 140 mg), as the same order without the link (r11b)
    assert "TPMT intermediate metabolizer: reduce to 50 mg/day (range 42-70 mg/day)" in pgx["summary"]
    assert "This is a new start" in pgx["detail"]
    assert [s["label"] for s in pgx["suggestions"]] == ["Change to azathioprine 50 mg once daily"]
    unlinked = _by_rule(case_cards(_load("review18", "r11b_aza_im_while_mp_active_nolink"), DAY))["pgx-reduce-dose"]
    assert pgx["summary"] == unlinked["summary"]
    note = cards["thiopurine-switch"]
    assert "new start of azathioprine" in note["detail"] and "never against the mercaptopurine dose" in note["detail"]
    assert "0.55" not in note["detail"] and "conversion factor" in note["detail"]


def test_switch_in_rheumatoid_arthritis_gets_the_azathioprine_start_dose():
    req = _load("review18", "r11d_switch_mp_active_to_aza_prior_nm")
    for e in req["prefetch"]["conditions"]["entry"]:
        e["resource"]["code"]["coding"][0]["code"] = "69896004"  # rheumatoid arthritis
    cards = case_cards(req, DAY)
    assert "duplicate-thiopurine" not in _by_rule(cards)
    # one merged info card (AZA_CDS_MAX_INFO_CARDS = 1): the start dose of azathioprine and the switch note, which
    # leads it (it asks the prescriber to end the replaced order: round-19 M4)
    (card,) = [c for c in cards if "**Thiopurine switch**" in c["detail"]]
    assert card["source"]["topic"]["code"] == "thiopurine-switch"
    assert "dose-new-start" in card["extension"]["azathioprine-cds"]["mergedRuleIds"]
    assert "Azathioprine new start at 150 mg/day: start at 75 mg/day and titrate" in card["detail"]
    assert "For its dose this is a new start of azathioprine" in card["detail"]


def test_switch_back_to_a_drug_taken_before_is_not_a_new_start():
    req = _load("review18", "r11_switch_mp_to_aza_prior_points_mp")
    earlier = copy.deepcopy(_draft(req))
    earlier.update(id="aza-2023", status="completed", authoredOn="2023-01-10")
    del earlier["priorPrescription"]
    req["prefetch"].setdefault("past_medications", {"resourceType": "Bundle", "type": "searchset", "entry": []})
    req["prefetch"]["past_medications"]["entry"].append({"resource": earlier})
    facts = without_replaced(build_facts([_draft(req)], req["prefetch"], today=DAY))
    (order,) = facts.orders
    assert order.prior_therapy is not None and "aza-2023" in order.prior_therapy.evidence
    assert "mp-old" not in order.prior_therapy.evidence  # the link to the other drug is no evidence of azathioprine
    assert not is_new_start(facts, order, "azathioprine")
    note = _by_rule(case_cards(req, DAY))["thiopurine-switch"]
    assert "earlier azathioprine therapy" in note["detail"]


# ------------------------------------------------------------------ 3. a low count dated tomorrow says so


def _tomorrow_neutrophils(day: str, value: float = 1.2) -> dict:
    """f10 with the platelets dated tomorrow replaced by a neutrophil count (below BSR's 1.6) dated ``day``."""
    req = _load("review18", "f10_tomorrow_platelets_low")
    (res,) = [e["resource"] for e in req["prefetch"]["labs"]["entry"] if e["resource"]["id"] == "fplt"]
    res.update(id="fneut", effectiveDateTime=day)
    res["code"]["coding"][0]["code"] = "751-8"
    res["valueQuantity"]["value"] = value
    del res["interpretation"]
    return req


def test_low_neutrophils_dated_tomorrow_carry_the_after_today_marker():
    card = _by_rule(case_cards(_tomorrow_neutrophils("2026-12-08"), DAY))["cytopenia"]
    assert card["summary"].startswith("DATED 2026-12-08 (AFTER TODAY), verify: ")
    assert "neutrophils 1.2" in card["summary"]
    assert card["indicator"] == "warning"  # its own severity
    assert "This card rests on a record dated 2026-12-08, after today**: neutrophils 1.2" in card["detail"]
    assert "read as a current result" in card["detail"] and "not counted as current" not in card["detail"]


def test_low_neutrophils_dated_later_keep_the_set_aside_wording_and_today_none():
    later = _by_rule(case_cards(_tomorrow_neutrophils("2026-12-09"), DAY))["cytopenia"]
    assert later["summary"].startswith("DATED 2026-12-09 (AFTER TODAY), verify: ")
    assert "not counted as current" in later["detail"]
    today = _by_rule(case_cards(_tomorrow_neutrophils("2026-12-07"), DAY))["cytopenia"]
    assert "AFTER TODAY" not in today["summary"] and "after today" not in today["detail"]


def test_severe_platelets_dated_tomorrow_carry_the_marker_and_still_stop():
    card = _by_rule(case_cards(_load("review18", "f10_tomorrow_platelets_low"), DAY))["cytopenia-severe"]
    assert card["summary"].startswith("DATED 2026-12-08 (AFTER TODAY), verify: Severe cytopenia (platelets 18")
    assert card["indicator"] == "critical"
    assert [s["label"] for s in card["suggestions"]] == ["Cancel the azathioprine order"]


# ------------------------------------------------------------------ 4. the SMART picture shows them, marked


def _picture(req: dict) -> dict:
    drafts = [e["resource"] for e in req["context"]["draftOrders"]["entry"]]
    return picture(build_facts(drafts, req["prefetch"], today=DAY))


@pytest.mark.parametrize("day, kept", [("2026-12-20", False), ("2027-12-08", False), ("2026-12-08", True)])
def test_picture_shows_results_dated_after_today_marked_never_as_current(day, kept):
    req = _load("review18", "f10_tomorrow_platelets_low")
    (res,) = [e["resource"] for e in req["prefetch"]["labs"]["entry"] if e["resource"]["id"] == "fplt"]
    res["effectiveDateTime"] = day
    platelets = _picture(req)["labs"]["platelets"]
    current = [(p["when"][:10], p["value"]) for p in platelets["series"]]
    if kept:  # kept as current by the time-zone tolerance (as the cards): charted, but marked
        assert platelets["series"][-1]["value"] == 18 and platelets["series"][-1]["after_today"] is True
        assert platelets["after_today"] == []
    else:  # set aside: listed apart, marked, never among the current values
        assert (day, 18) not in current and all(not p.get("after_today") for p in platelets["series"])
        assert [(p["when"][:10], p["value"], p["after_today"]) for p in platelets["after_today"]] == [(day, 18.0, True)]
    assert current[0] == ("2026-12-01", 250.0)


def test_picture_without_future_results_lists_none():
    pic = _picture(_load("review18", "r08_im_renewal_prior_stopped"))
    assert all(lab["after_today"] == [] for lab in pic["labs"].values()) and pic["weights_after_today"] == []


def test_picture_monitoring_phase_of_a_restart_is_a_new_start():
    assert _picture(_restart())["monitoring"]["phase"] == "new_start"
