"""Round-19 review H3, m9, m8: a held or myelotoxic dose is not a tolerated dose; the renewal status is said.

H3: a renewal of a dose whose order is ``on-hold``, or that was followed by a count below the BSR 2017 action limits
(or flagged low by the laboratory) since it began, within the results window, is not an established, tolerated dose
(``rules.common.dose_not_tolerated``): no ``pgx-im-established-dose``, no raised dose kept, no quiet allopurinol
combination note; a warning names the hold (statusReason as sent) and the low counts, with the reduced restart range
of the normal dose (CPIC 2018 IM 30-80 %, this service's 30-50 %).
m9: a restart after a stop and a renewal link that matches no order say why they are dosed as new starts.
m8: a raised renewal keeps the tolerated dose as the safe reference; an increase is titration on counts; the reduced
range is of the normal dose whatever was typed.
Cases from the reviewer (tests/data/review19/) and variants built from them, evaluated on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)


def _request(name: str) -> dict[str, Any]:
    (path,) = CASES.glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict[str, Any]) -> list[dict]:
    return case_cards(request, DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


def _prior(request: dict[str, Any], ref_id: str = "aza-old") -> dict[str, Any]:
    for group in request["prefetch"].values():
        for entry in (group or {}).get("entry", []) if isinstance(group, dict) else []:
            if entry["resource"].get("id") == ref_id:
                return entry["resource"]
    raise AssertionError(ref_id)


def _labs(request: dict[str, Any]) -> list[dict]:
    return request["prefetch"]["labs"]["entry"]


def _draft(request: dict[str, Any]) -> dict[str, Any]:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


# ------------------------------------------------------------------ H3
def test_renewal_of_a_dose_held_for_neutropenia_is_not_tolerated():
    cards = _cards(_request("r19-68"))
    assert not _topic(cards, "pgx-im-established-dose")
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert card["indicator"] == "warning"
    assert "on hold" in card["summary"] and "neutrophils 0.8 LL (2026-11-09)" in card["summary"]
    assert "restart at 75 mg/day" in card["summary"]
    assert "taken since" not in card["summary"]
    detail = card["detail"]
    assert "statusReason as sent: 'neutropenia (ANC 0.8 on 2026-11-09)'" in detail
    assert "neutrophils 0.8 ×10⁹/L (flagged LL) (2026-11-09)" in detail
    assert "white cells 2.1 ×10⁹/L (2026-11-09)" in detail
    assert "Reduced range: 45-75 mg/day, from the normal dose" in detail
    assert "not cut" not in detail
    assert "BSR" in " ".join(link["label"] for link in card.get("links", [])) or "BSR" in detail
    assert _updates(cards) == {"Change to azathioprine 75 mg once daily"}


def test_held_dose_gets_the_answer_a_plain_stop_gets():
    held = _topic(_cards(_request("r19-68")), "pgx-")[0]
    stopped = _topic(_cards(_request("r19-42")), "pgx-")[0]
    assert held["source"]["topic"]["code"] == stopped["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "45-75 mg/day" in held["detail"] and "45-75 mg/day" in stopped["detail"]


def test_low_count_while_on_an_active_dose_is_not_tolerated():
    """Not held, active, latest counts normal: the LL count 29 days ago on that dose still rules out 'tolerated'."""
    request = _request("r19-68")
    prior = _prior(request)
    prior["status"] = "active"
    prior.pop("statusReason")
    (card,) = _topic(_cards(request), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "on hold" not in card["summary"] and "neutrophils 0.8 LL" in card["summary"]
    assert "Not an established, tolerated dose" in card["detail"]


def test_a_low_flag_alone_counts():
    """A count within the BSR limits but flagged L by the laboratory is a low count (brief: "flagged L/LL")."""
    request = _request("r19-68")
    prior = _prior(request)
    prior["status"] = "active"
    prior.pop("statusReason")
    for entry in _labs(request):
        r = entry["resource"]
        if r["effectiveDateTime"] == "2026-11-09" and r["code"]["coding"][0]["code"] in ("751-8", "6690-2"):
            r["valueQuantity"]["value"] = 1.7 if r["code"]["coding"][0]["code"] == "751-8" else 4.0
            r["interpretation"] = [{"coding": [{"system": r"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                                "code": "L"}]}]
    (card,) = _topic(_cards(request), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "(flagged L)" in card["detail"]


@pytest.mark.parametrize("when", ["2023-11-09", "2026-08-01"])
def test_a_low_count_before_the_dose_or_outside_the_window_does_not_count(when):
    """Before the order began (2024-02-01), or older than the 90-day results window: the dose is established."""
    request = _request("r19-68")
    prior = _prior(request)
    prior["status"] = "active"
    prior.pop("statusReason")
    for entry in _labs(request):
        r = entry["resource"]
        if r["effectiveDateTime"] == "2026-11-09":
            r["effectiveDateTime"] = when
    (card,) = _topic(_cards(request), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-im-established-dose"
    assert card["indicator"] == "info"


def test_a_held_dose_inside_the_reduced_range_is_still_a_warning():
    request = _request("r19-68")
    _prior(request)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 50
    _draft(request)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 50
    cards = _cards(request)
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-dose-in-reduced-range"
    assert card["indicator"] == "warning"
    assert "on hold" in card["summary"] and "restart within reduced range, CBC weekly" in card["summary"]
    assert "Not an established, tolerated dose" in card["detail"]
    assert not _updates(cards)


def test_onhold_renewal_without_a_reason_names_the_hold():
    """m9 and H3: r19-41 (on hold, no statusReason, counts normal) is no longer 'taken since ...' without the hold."""
    cards = _cards(_request("r19-41"))
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "on hold" in card["summary"] and "taken since" not in card["summary"]
    assert "is **on hold** (no reason given)" in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 75 mg once daily"}


def test_raised_renewal_of_a_held_dose_is_not_kept():
    """Round-18 M4's 'keep the tolerated dose' needs a tolerated dose: a held one is cut to the restart band."""
    request = _request("r19-68")
    _draft(request)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 175
    cards = _cards(request)
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "keep" not in card["summary"]
    assert "45-75 mg/day" in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 75 mg once daily"}


def test_onhold_renewal_restarts_the_weekly_cbc_phase():
    """A renewal of an order on hold is a restart: monitored as a start (CBC weekly), not as established therapy."""
    request = _request("r19-68")
    for entry in _labs(request):  # the newest CBC 10 days old: due in the weekly phase, not in the routine one
        r = entry["resource"]
        if r["effectiveDateTime"] == "2026-12-06":
            r["effectiveDateTime"] = "2026-11-28"
    (card,) = _topic(_cards(request), "monitoring-cbc-due")
    assert "restart after a hold" in card["summary"]


def test_held_thiopurine_renewed_beside_allopurinol_is_no_established_combination():
    request = _request("r19-40")
    baseline = _topic(_cards(copy.deepcopy(request)), "interaction-xanthine-oxidase")[0]
    assert baseline["indicator"] == "info" and "together since" in baseline["summary"]
    prior = _prior(request)
    prior["status"] = "on-hold"
    prior["statusReason"] = {"text": "neutropenia (ANC 0.9 on 2026-11-02)"}
    (card,) = _topic(_cards(request), "interaction-xanthine-oxidase")
    assert card["indicator"] == "warning"
    assert "together since" not in card["summary"] and "weekly" in card["summary"]
    assert "**Not an established combination**" in card["detail"]
    assert "neutropenia (ANC 0.9 on 2026-11-02)" in card["detail"]


def test_held_for_neutropenia_with_a_count_still_low_keeps_the_withhold_card():
    """r19-48 (control): the current ANC 1.4 gives the BSR withhold card; no 'tolerated' reassurance anywhere."""
    cards = _cards(_request("r19-48"))
    assert _topic(cards, "cytopenia")
    assert not _topic(cards, "pgx-im-established-dose")
    assert not any("tolerated" in c["summary"] for c in cards)


def test_stopped_on_the_renewal_day_is_still_established():
    """r19-43 (control): a stop by the renewal itself is continuation, and no low count or hold: established."""
    (card,) = _topic(_cards(_request("r19-43")), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-im-established-dose"


# ------------------------------------------------------------------ m9
def test_restart_after_a_stop_says_why():
    (card,) = _topic(_cards(_request("r19-42")), "pgx-")
    assert "restart after a stop" in card["summary"]
    assert "**Restart after a stop**: this order renews MedicationRequest/aza-old, which was stopped on 2026-05-01" \
        in card["detail"]


def test_restart_after_an_undated_stop_says_so():
    (card,) = _topic(_cards(_request("r19-69")), "pgx-")
    assert "restart after a stop" in card["summary"]
    assert "which was stopped (no stop date given)" in card["detail"]


def test_dangling_renewal_link_says_why():
    (card,) = _topic(_cards(_request("r19-46")), "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "renewed order not found" in card["summary"]
    assert "this order names MedicationRequest/aza-gone" in card["detail"]
    assert "no order of that id is in the record sent" in card["detail"]


# ------------------------------------------------------------------ m8
@pytest.mark.parametrize(("name", "kept"), [("r19-44", 100), ("r19-78", 150)])
def test_raised_renewal_keeps_the_tolerated_dose_as_the_reference(name, kept):
    cards = _cards(_request(name))
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert f"keep the tolerated dose, {kept} mg/day" in card["summary"]
    assert "titrate any increase on counts" in card["summary"]
    detail = card["detail"]
    assert "not advised" not in detail
    assert "the safe reference" in detail and "titration guided by counts" in detail
    assert "based on degree of myelosuppression and disease-specific guidelines" in detail
    assert "check the CBC weekly after the change" in detail
    # one basis: the reduced range is of the normal dose (2 mg/kg x 75 kg), never of the raised dose typed
    assert "Reduced range: 45-75 mg/day, from the normal dose 2.0 mg/kg/day × 75 kg = 150 mg/day" in detail
    assert _updates(cards) == {f"Change to azathioprine {kept} mg once daily"}
