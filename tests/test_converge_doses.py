"""Value tests at each boundary of converging advice, warfarin direction, citations and suggestion shape
(issue 17 items 4-5, 7; issue 19 "Suggestions that real clients apply")."""
from __future__ import annotations

import pytest

from tests import builders as b
from tests.builders import days_ago, med_request, weight
from tests.test_converge_property import ALLO, LN, TPMT_IM, dose_updates

SIGN = "thiopurine-order-sign"
ALLO_DRAFT = med_request("519", "allopurinol 100 MG Oral Tablet", id="allo-new", daily_mg=300)
# round-15 M1: a new start's fractions are taken of the label's starting dose (75 kg: 75 mg); the form tests below use
# inflammatory bowel disease (no start regimen: the 2 mg/kg usual dose stays the basis) to keep their figures
IBD = {**LN, "id": "cond-ibd", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "34000006"}]}}
WARFARIN = med_request("855332", "warfarin sodium 5 MG Oral Tablet", id="warf", status="active", daily_mg=5,
                       authored=days_ago(100))


@pytest.fixture
def sign(client):
    def _sign(orders, **pre):
        pre.setdefault("weights", [weight(75)])
        resp = client.post(f"/cds-services/{SIGN}", json=b.hook_request("order-sign", orders=orders,
                                                                        pre=b.prefetch(**pre)))
        assert resp.status_code == 200
        return resp.get_json()["cards"]
    return _sign


def _card(cards, rule):
    (c,) = [c for c in cards if c["source"]["topic"]["code"] == rule]
    return c


# ------------------------------------------------------------ the headline patient
# a new start at 75 kg: allopurinol's 1/4-1/3 of the label's start (75 mg) is the accepted top (round-15 M1): 25 mg;
# before round 15 an order up to CPIC's band top x 1/3 of 150 mg (40 mg/day) was accepted for a new start
BOUNDARY = 25


def test_headline_told_25_mg_and_25_mg_is_then_not_cut_again(sign):
    # a new start (round-15 M1 is scoped to allopurinol's fraction): CPIC's TPMT IM band stays of the normal dose
    # (30-50 % of 150 mg), allopurinol's 1/4-1/3 is of the label's start (75 mg): 25 mg/day on every card
    first = sign([med_request(daily_mg=150)], pgx=TPMT_IM, conditions=[LN], meds=[ALLO])
    assert all("25 mg/day" in c["summary"] for c in first)
    again = sign([med_request(daily_mg=25)], pgx=TPMT_IM, conditions=[LN], meds=[ALLO])
    assert not dose_updates(again)
    assert not any("8.33" in c["summary"] or "specialist" in c["summary"] for c in again)
    assert all(c["indicator"] == "info" for c in again)  # at most a note that the dose follows the advice
    assert "already follows this advice" in _card(again, "interaction-xanthine-oxidase")["detail"] or \
        "within the reduced range" in " ".join(c["summary"] for c in again)


@pytest.mark.parametrize("ordered, changed", [(12.5, False), (20, False), (BOUNDARY, False), (BOUNDARY + 1, True)])
def test_headline_boundary_at_the_top_of_the_advised_range(sign, ordered, changed):
    # 75 kg, a new start: an order at or under the accepted top is not cut, one above it is
    cards = sign([med_request(daily_mg=ordered)], pgx=TPMT_IM, conditions=[LN], meds=[ALLO])
    assert bool(dose_updates(cards)) is changed


# ------------------------------------------------------------ allopurinol alone
@pytest.mark.parametrize("ordered, changed, where", [(12.5, False, "below"), (18, False, "below"),
                                                     (25, False, "within"), (26, True, ""), (150, True, "")])
def test_allopurinol_fraction_of_the_usual_dose_not_of_the_order(sign, ordered, changed, where):
    # 75 kg, new start (round-15 M1): the label's start 75 mg; one-quarter to one-third = 18.75-25 mg/day
    cards = sign([med_request(daily_mg=ordered)], meds=[ALLO])
    xoi = _card(cards, "interaction-xanthine-oxidase")
    assert bool(dose_updates(cards)) is changed
    assert "every other day" not in xoi["summary"] or changed
    if not changed:
        assert xoi["indicator"] == "info" and f"{where} the reduced range (19-25 mg/day)" in xoi["summary"]
    else:
        assert xoi["indicator"] == "critical" and "25 mg/day" in xoi["summary"]


@pytest.mark.parametrize("ordered, changed", [(37.5, False), (50, False), (63, True), (150, True)])
def test_allopurinol_fraction_without_a_start_regimen(sign, ordered, changed):
    # IBD (no start regimen): usual 2 mg/kg/day = 150 mg; one-quarter to one-third = 37.5-50 mg/day, an order accepted
    # up to one-third of the top of IBD's usual range (2.5 mg/kg = 187.5 mg: 62.5 mg), as before round 15
    cards = sign([med_request(daily_mg=ordered)], meds=[ALLO], conditions=[IBD])
    assert bool(dose_updates(cards)) is changed


# ------------------------------------------------------------ renewal replaces its prior order
def test_renewal_with_allopurinol_gives_one_card_one_dose_never_updating_the_replaced_order(sign):
    prior = med_request(id="aza-prior", status="active", daily_mg=50, authored=days_ago(120))
    renewal = med_request(id="aza-renew", daily_mg=50)
    renewal["priorPrescription"] = {"reference": "MedicationRequest/aza-prior"}
    cards = sign([renewal, ALLO_DRAFT], meds=[prior])
    xoi = [c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]
    assert len(xoi) == 1
    updates = dose_updates(cards)
    assert all(u["resource"]["id"] != "aza-prior" for u in updates)
    assert not updates  # 50 mg for 75 kg is within 37.5-50 mg/day


def test_based_on_replaces_too_but_another_drug_is_not_replaced(sign):
    prior = med_request(id="aza-prior", status="active", daily_mg=150, authored=days_ago(120))
    renewal = med_request(id="aza-renew", daily_mg=150)
    renewal["basedOn"] = [{"reference": "MedicationRequest/aza-prior"}]
    cards = sign([renewal], meds=[prior, ALLO])
    assert len([c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]) == 1
    assert [u["resource"]["id"] for u in dose_updates(cards)] == ["aza-renew"]


# ------------------------------------------------------------ suggestions real clients apply
def test_no_update_of_an_active_order_only_the_draft(sign):
    cards = sign([ALLO_DRAFT], meds=[med_request(id="aza-on", status="active", daily_mg=150, authored=days_ago(200))])
    xoi = _card(cards, "interaction-xanthine-oxidase")
    assert not dose_updates(cards)
    assert [a["type"] for s in xoi["suggestions"] for a in s["actions"]] == ["delete"]
    # the allopurinol order reads the weight too (audit round 2): 75 kg -> usual 150 mg -> 37.5-50 mg/day
    assert "Reduce the active azathioprine order itself" in xoi["detail"] and "50 mg/day" in xoi["summary"]


def test_update_keeps_the_drafts_medication_and_id_and_states_the_dose(sign):
    cards = sign([med_request(daily_mg=150)], meds=[ALLO], conditions=[IBD])
    (u,) = dose_updates(cards)
    assert u["resource"]["id"] == "mr-aza"
    assert u["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "197388"
    assert "50 mg" in u["description"]


def test_tid_stays_tid_with_the_per_dose_amount_recomputed(sign):
    cards = sign([med_request(dosages=[b.dosage(50, frequency=3)])], pgx=TPMT_IM, conditions=[IBD])  # 150 mg/day, TID
    (u,) = dose_updates(cards)
    (d,) = u["resource"]["dosageInstruction"]
    assert d["timing"]["repeat"]["frequency"] == 3 and d["doseAndRate"][0]["doseQuantity"]["value"] == 25
    assert "three times daily" in u["description"]


def test_tid_becomes_once_daily_when_no_tablet_gives_the_third(sign):
    # 100 mg order, TPMT IM at 50 kg weight: 30-50 mg/day; 50/3 mg is no tablet amount
    cards = sign([med_request(dosages=[b.dosage(100 / 3, frequency=3)])], pgx=TPMT_IM, weights=[weight(50)])
    (u,) = dose_updates(cards)
    (d,) = u["resource"]["dosageInstruction"]
    assert d["timing"]["repeat"]["frequency"] == 1 and "once daily" in u["description"]


def test_ml_order_stays_in_ml(sign):
    order = med_request("1234", "mercaptopurine 20 MG/ML Oral Suspension", id="mp",
                        dosages=[b.dosage(5, unit="mL", code="mL")])  # 100 mg/day
    cards = sign([order], meds=[ALLO])
    (u,) = dose_updates(cards)
    q = u["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert q["unit"] == "mL" and q["code"] == "mL" and 0 < q["value"] < 5
    assert "mL" in u["description"]


def test_tablet_order_stays_in_tablets(sign):
    order = med_request(dosages=[b.dosage(3, unit="tablet", code="{tbl}", system=None)])  # 3 x 50 mg
    cards = sign([order], meds=[ALLO], conditions=[IBD])
    (u,) = dose_updates(cards)
    q = u["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert q == {"value": 1, "unit": "tablet", "code": "{tbl}"}


def test_alternate_days_read_back_as_the_advised_average(sign):
    # 60 kg, IBD: 125 mg ordered, a usual dose for IBD; allopurinol 31-42 mg/day -> 50/25 mg alternate days (37.5)
    cards = sign([med_request(daily_mg=125)], meds=[ALLO], weights=[weight(60)], conditions=[IBD])
    (u,) = dose_updates(cards)
    doses = u["resource"]["dosageInstruction"]
    assert len(doses) == 2 and {d["sequence"] for d in doses} == {1}  # concurrent, not one after the other
    again = sign([u["resource"]], meds=[ALLO], weights=[weight(60)], conditions=[IBD])
    assert not dose_updates(again)


# ------------------------------------------------------------ warfarin in the direction of the change
def test_warfarin_start_of_azathioprine_inr_may_fall(sign):
    c = _card(sign([med_request(daily_mg=100)], meds=[WARFARIN]), "interaction-warfarin")
    assert "may need to rise" in c["summary"] and "likely to rise" not in c["summary"]


def test_warfarin_cut_of_azathioprine_inr_likely_to_rise(sign):
    active = med_request(id="aza-on", status="active", daily_mg=150, authored=days_ago(200))
    c = _card(sign([med_request(daily_mg=100)], meds=[WARFARIN, active]), "interaction-warfarin")
    assert "INR is likely to rise" in c["summary"] and "warfarin may need to fall" in c["summary"]


def test_warfarin_with_an_advised_cut_says_the_inr_may_rise(sign):
    c = _card(sign([med_request(daily_mg=150)], pgx=TPMT_IM, meds=[WARFARIN]), "interaction-warfarin")
    assert "likely to rise" in c["summary"]


def test_warfarin_started_on_azathioprine(sign):
    active = med_request(id="aza-on", status="active", daily_mg=100, authored=days_ago(200))
    warf = dict(WARFARIN, status="draft", id="warf-new")
    c = _card(sign([warf], meds=[active]), "interaction-warfarin")
    assert "higher warfarin dose" in c["summary"]


# ------------------------------------------------------------ citations
def _cited(card):
    return [link["url"] for link in card.get("links", [])] + [card["source"].get("url", "")]


def test_mercaptopurine_cards_cite_the_purixan_label_not_imuran(sign):
    order = med_request("1234", "mercaptopurine 50 MG Oral Tablet", id="mp", daily_mg=100)
    for c in sign([order], meds=[ALLO, WARFARIN], pgx=TPMT_IM):
        assert not any("606101a0" in u or "query=azathioprine" in u for u in _cited(c)), c["summary"]
        assert "Imuran" not in c["detail"].split("**Sources**")[-1]


def test_febuxostat_card_cites_uloric_not_imuran(sign):
    febu = med_request("73689", "febuxostat 40 MG Oral Tablet", id="febu", daily_mg=40)
    c = _card(sign([febu], meds=[med_request(id="aza-on", status="active", daily_mg=100, authored=days_ago(90))]),
              "interaction-xanthine-oxidase")
    assert "febuxostat" in c["source"]["label"].lower()
    assert "Imuran" not in c["detail"].split("**Sources**")[-1]


def test_imuran_label_cited_by_its_named_sections_never_numbers(sign):
    cards = sign([med_request(daily_mg=150)], pgx=TPMT_IM, conditions=[LN], meds=[ALLO, WARFARIN])
    sources = " ".join(c["detail"].split("**Sources**")[-1] for c in cards)
    assert "IMURAN label" in sources and "section 7" not in sources and "sections 2.4" not in sources


# ------------------------------------------------------------ no usual dose: no figure from the ordered dose
@pytest.mark.parametrize("ordered", [80, 40, 20])
def test_thioguanine_band_is_not_applied_to_the_ordered_dose(sign, ordered):
    cards = sign([med_request("10485", "thioguanine 40 MG Oral Tablet", id="tg", daily_mg=ordered)], pgx=TPMT_IM)
    c = _card(cards, "pgx-reduce-dose")
    assert not dose_updates(cards) and "of the normal dose" in c["summary"]
    assert "reduce to" not in c["summary"]


def test_update_of_a_renewal_keeps_what_it_renews(sign):
    prior = med_request(id="aza-prior", status="active", daily_mg=150, authored=days_ago(120))
    renewal = dict(med_request(id="aza-renew", daily_mg=150), priorPrescription={"reference": "MedicationRequest/aza-prior"},
                   basedOn=[{"reference": "MedicationRequest/aza-prior"}])
    (u,) = dose_updates(sign([renewal, ALLO_DRAFT], meds=[prior]))
    assert u["resource"]["id"] == "aza-renew"
    assert u["resource"]["priorPrescription"] == {"reference": "MedicationRequest/aza-prior"}
    assert u["resource"]["basedOn"] == [{"reference": "MedicationRequest/aza-prior"}]
