"""Round-17 review H4, M4, M5: TPMT/NUDT15 intermediate metabolizers.

H4: a renewal that names the order it renews (priorPrescription, basedOn) is established therapy, as the same renewal
beside the active order is (``rules.common.taken_orders``: one definition for PGx, the start, monitoring).
M4: an IM new start where no start regimen applies (IBD, a transplant) gets one answer whatever was typed: the band
it is told is the band it is accepted in.
M5: the share of the normal dose a card prints is computed from the figure shown; a start dose that decides the
figure (AASLD 2019: 50 mg/day in autoimmune hepatitis) is named.
Cases from the reviewer (tests/data/review17/), evaluated on 2026-12-07.
"""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

import rules
from hooks.pipeline import HookEnv, run
from hooks.registry import SERVICES
from outbound.fhir_client import FhirClient
from rules.common import is_new_start, taken_orders
from rules.evaluate import without_replaced
from rules.monitoring import monitoring_windows
from tests.builders import days_ago, med_request, weight
from tests.review_cases import case_cards
from tests.test_cards_catalogue import TPMT_IM, condition, facts_for

CASES = Path(__file__).resolve().parent / "data" / "review17"
DAY = date(2026, 12, 7)
RA = condition("69896004")


def _cards(name: str, guideline: str = "cpic") -> list[dict]:
    request = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
    if guideline == "cpic":
        return case_cards(request, DAY)
    env = HookEnv(client=FhirClient(), today=lambda: DAY, rule_options=rules.RuleOptions(guideline=guideline))
    return run(SERVICES["thiopurine-order-sign"], request, env).response["cards"]


def _pgx(cards: list[dict]) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"].startswith("pgx-")]
    return card


def _updates(cards: list[dict]) -> set[str]:
    return {s["label"] for c in cards for s in c.get("suggestions", []) if s["label"].startswith("Change to")}


# ------------------------------------------------------------------ H4
@pytest.mark.parametrize("name, since", [("d16_im_established_150", "2024-06-01"),
                                         ("f03_im_renewal_prior_ktx", "2020-01-10"),
                                         ("f04_im_renewal_basedon", "2024-06-01"),
                                         ("f05_im_renewal_no_link", "2024-06-01")])
def test_linked_renewal_of_a_tolerated_im_dose_is_not_cut(name, since):
    cards = _cards(name)
    card = _pgx(cards)
    assert card["source"]["topic"]["code"] == "pgx-im-established-dose", card["summary"]
    assert card["indicator"] == "info"
    assert f"taken since {since}" in card["summary"]
    assert not _updates(cards)
    assert not any(c["indicator"] != "info" for c in cards), [c["summary"] for c in cards]


def test_linked_renewal_reads_as_the_unlinked_one():
    linked, unlinked = _cards("d16_im_established_150"), _cards("f05_im_renewal_no_link")
    assert [(c["summary"], c["indicator"]) for c in linked] == [(c["summary"], c["indicator"]) for c in unlinked]


def _renewal(draft_mg: float, link: str = "priorPrescription"):
    draft = med_request(daily_mg=draft_mg)
    ref = {"reference": "MedicationRequest/aza-old"}
    draft[link] = ref if link == "priorPrescription" else [ref]
    active = med_request(id="aza-old", status="active", daily_mg=150, authored=days_ago(900))
    return without_replaced(facts_for([draft], meds=[active], pgx=TPMT_IM, weights=[weight(70)], conditions=[RA]))


# the class: every "new start or established" decision reads the renewed order as therapy taken, with its dose and date
@pytest.mark.parametrize("link", ["priorPrescription", "basedOn"])
def test_one_definition_of_therapy_taken(link):
    facts = _renewal(150, link)
    assert [m.ref for m in facts.renewed_medications] == ["MedicationRequest/aza-old"]
    assert [m.ref for m in taken_orders(facts, "azathioprine")] == ["MedicationRequest/aza-old"]
    assert not is_new_start(facts, facts.orders[0], "azathioprine")
    assert monitoring_windows(facts)[2] == "established"


def test_a_linked_renewal_at_a_new_dose_is_a_dose_change_for_monitoring():
    # was "established": the renewed order was out of the active list, so the raised dose was not seen
    assert monitoring_windows(_renewal(200))[2] == "dose_change"


# ------------------------------------------------------------------ M4
@pytest.mark.parametrize("cohort, doses, figure, band", [
    ("c31_im_crohn_{}", [100, 150, 200], 50, "42-70"),
    ("f02_nudt_im_crohn_55kg_{}", [75, 100, 150], 50, "33-55"),
    ("f01_im_ktx_early_{}", [150, 200], 100, "63-105"),
])
def test_im_new_start_without_start_regimen_one_answer(cohort, doses, figure, band):
    for dose in doses:
        cards = _cards(cohort.format(dose))
        card = _pgx(cards)
        assert card["source"]["topic"]["code"] == "pgx-reduce-dose", (dose, card["summary"])
        assert f"reduce to {figure} mg/day (range {band} mg/day)" in card["summary"], card["summary"]
        assert _updates(cards) == {f"Change to azathioprine {figure} mg once daily"}
        assert "for a new or changed dose" not in card["detail"]
        assert "This is a new start" in card["detail"]


def test_transplant_250_gets_the_same_figure():
    cards = _cards("c35_im_ktx_early")
    assert "reduce to 100 mg/day (range 63-105 mg/day)" in _pgx(cards)["summary"]


# an order inside the band it is told is accepted; the cut target is never below an order that would be accepted
def test_order_inside_the_new_start_band_is_accepted():
    card = _pgx(_cards("f01_im_ktx_early_100"))
    assert card["source"]["topic"]["code"] == "pgx-dose-in-reduced-range"
    assert "for a new or changed dose" not in card["detail"]


@pytest.mark.parametrize("cohort, doses", [("c31_im_crohn_{}", [100, 150, 200]),
                                           ("f01_im_ktx_early_{}", [100, 150, 200])])
def test_no_discontinuity(cohort, doses):
    accepted, targets = [], []
    for dose in doses:
        cards = _cards(cohort.format(dose))
        if _pgx(cards)["source"]["topic"]["code"] == "pgx-dose-in-reduced-range":
            accepted.append(dose)
        targets += [int(x) for x in re.findall(r"azathioprine (\d+) mg once daily", " ".join(_updates(cards)))]
    assert all(t >= a for t in targets for a in accepted), (accepted, targets)


# established therapy keeps the CPIC band acceptance (a dose change from an active order, not a new start)
def test_established_therapy_still_accepted_in_cpic_band():
    active = med_request(id="aza-old", status="active", daily_mg=100, authored=days_ago(400))
    ibd = condition("34000006")
    facts = facts_for([med_request(daily_mg=100)], meds=[active], pgx=TPMT_IM, weights=[weight(70)], conditions=[ibd])
    found = rules.evaluate(facts, rules.RuleOptions(guideline="cpic"))
    (f,) = [f for f in found if f.rule_id.startswith("pgx-")]
    assert f.rule_id == "pgx-dose-in-reduced-range" and f.values["accept_how"] == "band"


# ------------------------------------------------------------------ M5
@pytest.mark.parametrize("guideline", ["cpic", "dpwg"])
def test_aih_start_cap_named_with_true_percentage(guideline):
    card = _pgx(_cards("d36_im_aih_90kg", guideline))
    assert ("DPWG 2025: 50 % of the normal dose" in card["detail"]) is (guideline == "dpwg")
    assert "reduce to 50 mg/day" in card["summary"]
    assert "50 % of the normal dose" not in card["summary"]
    assert "(AASLD starting dose, 28 % of the normal dose)" in card["summary"], card["summary"]
    assert "AASLD starting dose for autoimmune hepatitis, 50 mg/day = 28 % of the normal dose 180 mg/day" in card["detail"]


# the class: every "N % of the normal dose = X mg/day" printed is true arithmetic
@pytest.mark.parametrize("name", ["d36_im_aih_90kg", "c31_im_crohn_150", "f01_im_ktx_early_200",
                                  "f02_nudt_im_crohn_55kg_100"])
def test_percentages_are_true(name):
    card = _pgx(_cards(name))
    text = card["summary"] + " " + card["detail"]
    normal = re.search(r"= (\d+) mg/day \(weight of", card["detail"])
    for pct, mg in re.findall(r"(\d+) % of the normal dose = (\d+) mg/day", text):
        assert normal and abs(int(pct) - int(mg) / int(normal.group(1)) * 100) < 1, (pct, mg)
    for mg, pct, ref in re.findall(r"(\d+) mg/day = (\d+) % of the normal dose (\d+) mg/day", text):
        assert abs(int(pct) - int(mg) / int(ref) * 100) < 1, (mg, pct, ref)


# DPWG's point figure (50 % of 140 mg = 70 mg) keeps its half-tablet tolerance on a new start (product policy):
# 75 mg, the figure rounded to the nearest tablet, is not cut; 100 and 150 mg get one figure
def test_dpwg_point_figure_new_start_ibd():
    ibd = condition("34000006")
    rules_of = {}
    for dose in (75, 100, 150):
        facts = facts_for([med_request(daily_mg=dose)], pgx=TPMT_IM, weights=[weight(70)], conditions=[ibd])
        found = rules.evaluate(facts, rules.RuleOptions(guideline="dpwg"))
        (f,) = [f for f in found if f.rule_id.startswith("pgx-")]
        rules_of[dose] = (f.rule_id, f.dose.high_mg if f.dose else None)
    assert rules_of[75][0] == "pgx-dose-in-reduced-range"
    assert rules_of[100] == rules_of[150] == ("pgx-reduce-dose", 70.0)
