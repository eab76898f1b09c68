"""Round-18 review H1, M5, M4: renewals.

H1/M5: a renewal that names the order it renews (priorPrescription / basedOn) whose status is ``completed`` (many EHRs
complete the renewed order when the renewal is signed) is established therapy, as the same renewal of an active or
on-hold order is: ``rules.evaluate.without_replaced`` puts the renewed ended order with ``renewed_medications``, read by
``rules.common.taken_orders`` (one definition for PGx, the allopurinol combination, monitoring). A ``stopped`` renewed
order stopped before the renewal is a restart.
M4: a renewal that RAISES an established dose keeps the dose already taken and tolerated (never cut below it), for the
TPMT intermediate metabolizer and for allopurinol alike (``DoseLimit.keep_mg``).
Cases from the reviewer (tests/data/review18/), evaluated on 2026-12-07.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review18"
DAY = date(2026, 12, 7)


def _cards(name: str) -> list[dict]:
    return case_cards(json.loads((CASES / f"{name}.json").read_text(encoding="utf-8")), DAY)


def _topic(cards: list[dict], prefix: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"].startswith(prefix)]


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


# ------------------------------------------------------------------ H1
@pytest.mark.parametrize("name", ["r01_im_renewal_prior_active", "r03_im_renewal_prior_completed_pastkey",
                                  "r03b_im_renewal_prior_completed_medkey", "r03c_im_renewal_basedon_completed_medkey",
                                  "r09_im_renewal_prior_completed_ktx_established",
                                  "r13b_im_renewal_prior_completed_cbc_67d",
                                  "r15_im_renewal_prior_completed_plus_statement"])
def test_renewal_of_a_completed_order_is_established_therapy(name):
    cards = _cards(name)
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-im-established-dose"
    assert card["indicator"] == "info"
    assert "150 mg/day" in card["summary"] and "taken since 2024-06-01" in card["summary"]
    assert not _updates(cards)


def test_renewal_of_an_order_stopped_before_it_is_a_restart():
    cards = _cards("r08_im_renewal_prior_stopped")
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"


def test_nm_renewal_of_a_completed_order_still_has_no_card():
    assert not _topic(_cards("r13c_nm_renewal_prior_completed_cbc_67d"), "pgx-")


# ------------------------------------------------------------------ M5
@pytest.mark.parametrize("name", ["x01_aza_renewal_reduced_allo_established",
                                  "x11_aza_renewal_reduced_allo_prior_completed"])
def test_allopurinol_combination_renewed_from_a_completed_order_is_established(name):
    (card,) = _topic(_cards(name), "interaction-xanthine-oxidase")
    assert card["indicator"] == "info"
    assert "renewed, together since 2026-01-10" in card["summary"]
    assert "weekly" not in card["summary"]
    assert "ordered now" not in card["detail"]


# ------------------------------------------------------------------ M4
def test_im_renewal_at_a_raised_dose_keeps_the_tolerated_dose():
    cards = _cards("r04_im_renewal_prior_raised_dose")
    (card,) = _topic(cards, "pgx-")
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "keep the tolerated dose" in card["summary"] and "150 mg" in card["summary"]  # round-19 m8 wording
    assert "75 mg" not in card["summary"]
    assert "raises the dose taken since 2024-06-01" in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 150 mg once daily"}


def test_allopurinol_renewal_at_a_raised_dose_keeps_the_tolerated_dose():
    cards = _cards("x08_aza_renewal_reduced_allo_raised")
    (card,) = _topic(cards, "interaction-xanthine-oxidase")
    assert "50 mg/day" in card["summary"] and "alternate" not in card["summary"]
    assert "raises the 50 mg/day" in card["detail"]
    assert _updates(cards) == {"Change to azathioprine 50 mg once daily"}


def test_renewal_at_the_same_unreduced_dose_with_allopurinol_is_still_cut():
    cards = _cards("x06_aza_renewal_150_allo_since_jan")
    assert _updates(cards) and all("150" not in u for u in _updates(cards))


def test_without_replaced_keeps_a_renewed_ended_order_by_status_and_stop_date():
    from fhir_mappers.facts import ClinicalFacts, DailyDose, MedicationFact
    from rules.common import taken_orders
    from rules.evaluate import without_replaced

    aza = frozenset({"azathioprine"})
    dose = DailyDose(150, 150)
    draft = MedicationFact("MedicationRequest/new", aza, "aza", "draft", True, authored_on=DAY, daily_dose=dose,
                           replaces=frozenset({"MedicationRequest/a", "MedicationRequest/b", "MedicationRequest/c",
                                               "MedicationRequest/e"}))

    def ended(ref: str, status: str, on: date) -> MedicationFact:
        return MedicationFact(f"MedicationRequest/{ref}", aza, "aza", status, False, authored_on=date(2024, 6, 1),
                              daily_dose=dose, ended_on=on)

    # round-20 M2: a completed order whose recorded end is more than monitoring.toml restart_after_days before the
    # draft (e) is a restart, not therapy taken now; one that ended within it (a) is the renewed therapy
    past = [ended("a", "completed", DAY - timedelta(days=10)), ended("b", "stopped", DAY),
            ended("c", "stopped", date(2025, 1, 1)), ended("d", "completed", date(2025, 1, 1)),  # d: not named
            ended("e", "completed", date(2025, 1, 1))]
    facts = without_replaced(ClinicalFacts(today=DAY, orders=[draft], past_medications=past))
    assert [m.ref for m in taken_orders(facts, "azathioprine", draft)] == ["MedicationRequest/a", "MedicationRequest/b"]
    assert facts.past_medications == past  # still ended orders for the rules that read them
