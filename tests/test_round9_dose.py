"""Round-9 review, M2, M3, m2: allopurinol's one-third to one-quarter taken of the dose the patient took before (when it
is a usual dose for the indication), one range on summary and detail; a TPMT poor metabolizer in leukaemia already on
CPIC's regimen (10 mg/m2 three times a week) is not cut again, and the oral suspension is measured to the nearest
volume; an interaction note leads the merged info card before the age note. Built from the reviewer's case files
(tests/data/review9, copied from the round-9 cases)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review9"


def _request(name: str) -> dict:
    (path,) = CASES.glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _topic(cards: list[dict], code: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == code]
    return card


def _draft(request: dict) -> dict:
    return next(e["resource"] for e in request["context"]["draftOrders"]["entry"]
                if e["resource"]["resourceType"] == "MedicationRequest")


def _set_dose(resource: dict, mg: float) -> None:
    resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = mg


def _med(request: dict, rid: str) -> dict:
    return next(e["resource"] for e in request["prefetch"]["medications"]["entry"] if e["resource"]["id"] == rid)


def _ranges(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?-\d+(?:\.\d+)? mg/day", text))


# ------------------------------------------------------------------ M2: allopurinol, the dose taken before


def test_c52_quarter_of_the_dose_taken_is_within_the_reduced_range() -> None:
    card = _topic(case_cards(_request("c52")), "interaction-xanthine-oxidase")
    assert card["indicator"] == "info" and not card.get("suggestions")
    assert "below" not in card["summary"] and "below" not in card["detail"]
    # one range, computed from the 100 mg/day taken (25-33 mg/day), in the summary and the detail alike
    assert "25-33 mg/day" in card["summary"] and "25-33 mg/day" in card["detail"]
    assert _ranges(card["summary"]) == {"25-33 mg/day"}
    assert "100 mg/day the patient took before this order (MedicationRequest/aza-old, stopped" in card["detail"]
    assert "rheumatoid arthritis" in card["detail"]


def test_third_of_the_dose_taken_is_not_cut_either() -> None:
    request = _request("c52")
    _set_dose(_draft(request), 33)
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert card["indicator"] == "info" and not card.get("suggestions") and "below" not in card["summary"]


def test_half_of_the_dose_taken_is_cut_to_the_label_fraction_of_it() -> None:
    request = _request("c52")
    _set_dose(_draft(request), 50)
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert card["indicator"] == "critical"
    (label,) = [s["label"] for s in card["suggestions"]]
    assert "25 mg" in label  # one-quarter to one-third of the 100 mg/day taken, not of 2 mg/kg x 72 kg (36-48)


def test_an_order_below_the_range_gives_one_range_in_summary_and_detail() -> None:
    request = _request("c52")
    _set_dose(_draft(request), 12.5)
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert "below the reduced range" in card["summary"]
    assert _ranges(card["summary"]) == {"25-33 mg/day"} and "25-33 mg/day" in card["detail"]


def test_the_active_order_being_replaced_is_the_established_dose() -> None:
    request = _request("c52")
    old = _med(request, "aza-old")
    old["status"] = "active"
    _draft(request)["priorPrescription"] = {"reference": "MedicationRequest/aza-old"}
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert card["indicator"] == "info" and not card.get("suggestions")
    assert "25-33 mg/day" in card["summary"] and "below" not in card["summary"]
    assert "100 mg/day the patient takes (MedicationRequest/aza-old, active" in card["detail"]


def test_an_established_dose_inside_the_usual_range_is_the_usual_dose() -> None:
    # 175 mg/day at 72 kg (2.4 mg/kg/day, rheumatoid arthritis up to 2.5): one-quarter to one-third = 43.75-58.3 mg/day
    request = _request("c52")
    _set_dose(_med(request, "aza-old"), 175)
    _set_dose(_draft(request), 50)
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert card["indicator"] == "info" and not card.get("suggestions") and "below" not in card["summary"]
    assert "dose taken before this order (MedicationRequest/aza-old, stopped), 175 mg/day" in card["detail"]


def test_an_established_dose_under_the_indications_usual_range_is_not_the_basis() -> None:
    # 50 mg/day at 72 kg = 0.7 mg/kg/day, under the label's RA start of 1 mg/kg/day: the normal dose stands
    request = _request("c52")
    _set_dose(_med(request, "aza-old"), 50)
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert "took before" not in card["detail"] and "2.0 mg/kg/day × 72 kg" in card["detail"]
    assert "below the reduced range" in card["summary"]
    (summary_range,) = _ranges(card["summary"])
    assert summary_range in card["detail"]  # still one range for summary and detail


def test_a_later_ended_order_is_not_the_dose_taken_before() -> None:
    request = _request("c52")
    _med(request, "aza-old")["authoredOn"] = "2026-12-20"  # dated after the new order: not "before"
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert "took before" not in card["detail"]


def test_a_dose_taken_since_the_allopurinol_order_is_not_its_basis() -> None:
    # the 100 mg order was written after allopurinol (2026-10-01): it may carry a reduction for it already
    request = _request("c52")
    _med(request, "aza-old")["authoredOn"] = "2026-11-01"
    card = _topic(case_cards(request), "interaction-xanthine-oxidase")
    assert "took before" not in card["detail"]
    (summary_range,) = _ranges(card["summary"])
    assert summary_range in card["detail"]


def test_c95_combined_reduction_still_follows() -> None:
    cards = case_cards(_request("c95"))
    assert not [c for c in cards if c["indicator"] != "info"]
    assert not [s for c in cards for s in c.get("suggestions", [])]


# ------------------------------------------------------------------ M3: TPMT poor metabolizer in ALL


def test_c67_cpic_regimen_already_ordered_is_not_cut() -> None:
    cards = case_cards(_request("c67"))
    card = _topic(cards, "pgx-poor-metabolizer")
    assert card["indicator"] == "info" and not card.get("suggestions")
    assert "already follows" in card["summary"]
    assert "7 mg" not in card["summary"] and "0.35 mL" not in card["detail"]
    assert not [c for c in cards if c["indicator"] == "critical"]
    assert "up to 10 mg per dose on 3 days a week" in card["detail"]


def test_the_same_dose_daily_is_cut_to_the_nearest_measurable_volume() -> None:
    request = _request("c67")
    del _draft(request)["dosageInstruction"][0]["timing"]["repeat"]["dayOfWeek"]  # 10 mg every day
    card = _topic(case_cards(request), "pgx-poor-metabolizer")
    assert card["indicator"] == "critical"
    (label,) = [s["label"] for s in card["suggestions"]]
    # one tenth of 75 mg/m2 x 1.06 m2 = 7.95 mg: 0.4 mL = 8 mg, not rounded down to 0.35 mL = 7 mg
    assert "8 mg (0.4 mL of the 20 mg/mL oral suspension) three times a week" in label


def test_above_cpics_example_regimen_is_still_cut() -> None:
    request = _request("c67")
    _set_dose(_draft(request), 15)  # 14.2 mg/m2 per dose, three times a week
    card = _topic(case_cards(request), "pgx-poor-metabolizer")
    assert card["indicator"] == "critical"
    (label,) = [s["label"] for s in card["suggestions"]]
    assert "8 mg (0.4 mL" in label


# ------------------------------------------------------------------ m2: the interaction note leads the age note


def test_c94_interaction_note_is_named_in_the_merged_summary() -> None:
    cards = case_cards(_request("c94"))
    (card,) = [c for c in cards if "mergedRuleIds" in c["extension"]["azathioprine-cds"]]
    merged = card["extension"]["azathioprine-cds"]["mergedRuleIds"]
    assert merged.index("interaction-aminosalicylates") < merged.index("elderly")
    assert "monitor CBC" in card["summary"]
    assert "PRELIMINARY" in card["summary"]  # the preliminary result still leads


def test_c43_merge_without_interaction_unchanged() -> None:
    cards = case_cards(_request("c43"))
    (card,) = cards
    assert card["summary"].startswith("PRELIMINARY result") and "aged" in card["summary"]
    assert "more note" not in card["summary"]



def test_c86_nudt15_daily_figure_measured_to_the_nearest_volume_and_said_so() -> None:
    # 10 mg/m2/day x 0.86 m2 = 8.56 mg/day: 0.45 mL = 9 mg (within the 10 % accepted above the figure), not 0.4 mL
    card = _topic(case_cards(_request("c86")), "pgx-poor-metabolizer")
    assert card["indicator"] == "critical"
    assert "9 mg (0.45 mL of the 20 mg/mL oral suspension) once daily" in card["detail"]
    assert "0.45 mL is the nearest volume the oral syringe measures" in card["detail"]
