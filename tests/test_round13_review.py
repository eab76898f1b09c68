"""Round-13 black-box review, M2 and M3 (cases in tests/data/review13, written by the reviewer).

M2: febuxostat newly ordered beside an active thiopurine in a TPMT poor metabolizer gave only the "cancel the
febuxostat" card, which offered "allopurinol with the thiopurine dose reduction": no card told the prescriber that
the active thiopurine itself is CPIC's "consider a non-thiopurine alternative". The active order now gets the
poor-metabolizer card, and the febuxostat card does not offer allopurinol with a reduced thiopurine.

M3: a TPMT *3A/*3A result set aside (subject on another FHIR server) was named only "Genotype display name"; the
data-incomplete card now quotes the value as sent ("Genotype display name: TPMT *3A/*3A").
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review13"


def _cards(name: str) -> list[dict]:
    return case_cards(json.loads((CASES / f"{name}.json").read_text(encoding="utf-8")))


def _card(cards: list[dict], rule_id: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule_id]
    return card


@pytest.mark.parametrize("name, drug", [("a07_ibd_tpm_febux_mp", "Mercaptopurine"), ("a17_ra_tpm_febux_aza", "Azathioprine")])
def test_febuxostat_draft_beside_a_poor_metabolizers_active_thiopurine(name: str, drug: str) -> None:
    cards = _cards(name)
    pm = _card(cards, "pgx-poor-metabolizer")
    assert pm["indicator"] == "critical" and "non-thiopurine alternative" in pm["summary"]
    assert f"{drug} is an active order" in pm["detail"] and "an order being signed now interacts with it" in pm["detail"]
    xo = _card(cards, "interaction-xanthine-oxidase")
    assert "cancel the febuxostat order" in xo["summary"]
    assert "allopurinol with the thiopurine dose reduction" not in xo["detail"]
    assert "poor metabolizer" in xo["detail"]
    # no dose is stated for the active order: the febuxostat is to be cancelled, the thiopurine replaced
    assert not any("Recommended dose" in c["detail"] for c in cards)


def test_a_set_aside_tpmt_result_is_quoted_with_its_value() -> None:
    gap = _card(_cards("s02_other_server_pgx_tpm"), "data-incomplete")
    assert "'Genotype display name: TPMT *3A/*3A'" in gap["detail"]


@pytest.mark.parametrize("name", ["a18_ra_tim_aza100_allo", "a08_tx_tim_allo"])
def test_allopurinol_added_to_an_accepted_intermediate_metabolizer_dose_takes_the_labels_fraction_of_it(name: str) -> None:
    """Round-13 M1: a TPMT intermediate metabolizer on 100 mg/day (69 % of the normal dose: inside CPIC's 30-80 %, so
    not cut) with allopurinol newly ordered was told 25 mg every other day (12.5 mg/day, one-eighth of the dose
    taken): the fraction was taken of the service's more conservative 30-50 % suggestion. The Imuran label's
    one-third to one-quarter of the dose taken is 25-33 mg/day: both cards now say 25 mg once daily."""
    cards = _cards(name)
    xo = _card(cards, "interaction-xanthine-oxidase")
    assert xo["summary"].endswith("reduce the active azathioprine order to 25 mg/day")
    assert "of the 100 mg/day the patient takes" in xo["detail"]
    assert "Recommended dose for this azathioprine order: 25 mg once daily" in xo["detail"]
    pgx = _card(cards, "pgx-dose-in-reduced-range")
    assert "Recommended dose for this azathioprine order: 25 mg once daily" in pgx["detail"]  # one order, one dose
