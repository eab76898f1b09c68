"""Round-15 black-box review, H1 and M3 (cases in tests/data/review15, written by the reviewer).

H1: the patient takes allopurinol and the thiopurine order, written after it, is already at one-third to one-quarter
of the usual dose. An allopurinol RENEWAL (priorPrescription / basedOn naming the active allopurinol order) was read
as a newly started allopurinol (the renewed order is taken out of the active list) and cut the thiopurine again, to
1/9-1/16 of the usual dose. A renewal or continuation of an xanthine-oxidase inhibitor is not a new start: the label's
fraction (Imuran PRECAUTIONS, Purixan section 7: one-third to one-quarter of the usual dose) applies once.

M3: febuxostat active with a mercaptopurine renewal in ALL: the card recommended cancelling the leukaemia maintenance
("do not start ... choose another immunosuppressant"). The Uloric label contraindicates febuxostat in patients treated
with azathioprine or mercaptopurine: when the thiopurine is established or is leukaemia chemotherapy, the drug to stop
or replace is febuxostat, and the thiopurine order's PGx card agrees with the one it gets as the active order (c04).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review15"
XOI = "interaction-xanthine-oxidase"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _card(cards: list[dict], rule_id: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule_id]
    return card


def _xoi_text(cards: list[dict]) -> str:
    """The allopurinol/febuxostat advice, on its own card or merged into another card's detail."""
    return "\n".join(c["summary"] + "\n" + c["detail"] for c in cards
                     if "xanthine" in c["detail"] or "Allopurinol with" in c["detail"] or "Febuxostat" in c["summary"])


def _suggestions(cards: list[dict]) -> list[tuple[str, bool]]:
    return [(s["label"], bool(s.get("isRecommended"))) for c in cards for s in c.get("suggestions", [])]


def _draft(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def _meds(request: dict) -> list[dict]:
    return [e["resource"] for e in request["prefetch"]["medications"]["entry"]]


# --- H1 -------------------------------------------------------------------------------------------------------------

def test_c10_allopurinol_renewal_does_not_cut_azathioprine_again() -> None:
    cards = case_cards(_case("c10_allo_renewal_aza_already_reduced"))
    assert not [c for c in cards if c["indicator"] == "critical"]
    card = _card(cards, XOI)
    assert card["indicator"] == "info"
    # round-17 M6: a renewal of the established combination says so (no weekly-CBC demand)
    assert "50 mg/day within the accepted range (35-58 mg/day): no change" in card["summary"]
    assert "25 mg every other day" not in json.dumps(cards)


def test_c10_c13_c14_one_answer_for_one_order() -> None:
    """The renewal (c10), an unlinked second allopurinol draft (c13) and the thiopurine renewed instead (c14): the same
    order in the same state quotes the same accepted range (also round-15 m4)."""
    summaries = {name: _card(case_cards(_case(name)), XOI)["summary"] for name in
                 ("c10_allo_renewal_aza_already_reduced", "c13_allo_second_draft_no_link",
                  "c14_aza_renewal_allo_active_follows")}
    assert len(set(summaries.values())) == 1, summaries
    assert "(35-58 mg/day)" in summaries["c10_allo_renewal_aza_already_reduced"]


def test_c10_basedon_is_a_renewal_too() -> None:
    request = _case("c10_allo_renewal_aza_already_reduced")
    draft = _draft(request)
    draft["basedOn"] = [draft.pop("priorPrescription")]
    card = _card(case_cards(request), XOI)
    assert card["indicator"] == "info"
    assert "(35-58 mg/day)" in card["summary"]


def test_c10_renewal_of_a_stopped_allopurinol_is_a_restart() -> None:
    """Control: the draft names an allopurinol order that was stopped: allopurinol is started again, and the dose
    the patient takes (written while none was active) is reduced for it (round-4 H8)."""
    request = _case("c10_allo_renewal_aza_already_reduced")
    for m in _meds(request):
        if m["id"] == "allo":
            m["status"] = "stopped"
    card = _card(case_cards(request), XOI)
    assert card["indicator"] == "critical"
    assert "reduce the active azathioprine order" in card["summary"]


def test_c11_allopurinol_renewal_does_not_cut_mercaptopurine_again() -> None:
    cards = case_cards(_case("c11_allo_renewal_mp_daily_reduced"))
    assert not [c for c in cards if c["indicator"] == "critical"]
    card = _card(cards, XOI)
    assert card["indicator"] == "info"
    assert "20 mg/day within the reduced range" in card["summary"]  # round-17 M6 wording of a renewal
    assert "order to 6 mg/day" not in json.dumps(cards)


def test_c09_poor_metabolizer_renewal_matches_c02() -> None:
    """c09: the allopurinol renewal beside 3 mg three times a week (CPIC's regimen, already reduced for allopurinol)
    gets the answer c02 (the mercaptopurine renewed instead, allopurinol active) gets: no cut, one range."""
    c09 = case_cards(_case("c09_allo_draft_mp_tiw_already_reduced"))
    c02 = case_cards(_case("c02_mp_tiw_draft_allo_active_follows"))
    assert [c["indicator"] for c in c09] == ["info"]
    text = _xoi_text(c09)
    assert "1 mg 3x/week" not in json.dumps(c09)
    assert "of the 3 mg per dose three times a week the patient takes" not in text
    assert "within the accepted range (1.98-3.53 mg per dose)" in text
    assert "within the accepted range (1.98-3.53 mg per dose)" in _xoi_text(c02)
    # the active order is not told that another order changes its dose
    assert "another order now changes its dose" not in c09[0]["detail"]
    assert "an order being signed now interacts with it" in c09[0]["detail"]


def test_new_allopurinol_still_cuts_the_dose_taken() -> None:
    """Controls: allopurinol newly ordered (none active, none renewed) still takes the fraction (c01, c12)."""
    c01 = case_cards(_case("c01_allo_draft_mp_tiw_active"))
    assert "reduce the active mercaptopurine order to 3 mg 3x/week" in _card(c01, XOI)["summary"]
    c12 = case_cards(_case("c12_allo_new_no_active_allo_mp_tiw_after"))
    assert "reduce the active mercaptopurine order to 1 mg 3x/week" in _card(c12, XOI)["summary"]


# --- M3 -------------------------------------------------------------------------------------------------------------

def test_c05_febuxostat_active_with_all_maintenance_renewal() -> None:
    cards = case_cards(_case("c05_mp_tiw_draft_febu_active"))
    card = _card(cards, XOI)
    assert card["indicator"] == "critical"
    assert "do not start" not in card["summary"].lower()
    assert "stop/replace febuxostat" in card["summary"] or "stop or replace febuxostat" in card["summary"]
    assert "choose another immunosuppressant" not in card["detail"]
    assert "the drug to stop or replace is febuxostat" in card["detail"]
    assert "leukaemia chemotherapy" in card["detail"]
    # cancelling the mercaptopurine is an option only, never the recommended suggestion
    assert ("Cancel the mercaptopurine order", True) not in _suggestions(cards)
    # the PGx card says what it says for the same regimen as the active order (c04)
    pgx = _card(cards, "pgx-poor-metabolizer")
    pgx04 = _card(case_cards(_case("c04_febu_draft_mp_tiw_active")), "pgx-poor-metabolizer")
    assert pgx["indicator"] == pgx04["indicator"] == "info"
    assert "the order already follows the reduced regimen" in pgx["summary"]
    assert "the order already follows the reduced regimen" in pgx04["summary"]


def test_c04_febuxostat_draft_still_cancelled() -> None:
    cards = case_cards(_case("c04_febu_draft_mp_tiw_active"))
    assert "cancel the febuxostat order" in _card(cards, XOI)["summary"]
    assert ("Cancel the febuxostat order", True) in _suggestions(cards)


def _crohn(request: dict) -> dict:
    request = copy.deepcopy(request)
    for e in request["prefetch"]["conditions"]["entry"]:
        e["resource"]["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "34000006",
                                             "display": "Crohn's disease"}], "text": "Crohn's disease"}
    return request


def test_febuxostat_active_with_continuing_thiopurine_outside_leukaemia() -> None:
    """The class: a renewal in Crohn's disease is continuing therapy: febuxostat is the drug to stop or replace."""
    cards = case_cards(_crohn(_case("c05_mp_tiw_draft_febu_active")))
    card = _card(cards, XOI)
    assert "the drug to stop or replace is febuxostat" in card["detail"]
    assert "continuing therapy" in card["detail"]
    # (this patient is a TPMT poor metabolizer: outside leukaemia the PGx card itself advises an alternative)
    assert ("Cancel the mercaptopurine order", True) not in _suggestions([card])


def test_febuxostat_active_with_a_new_thiopurine_start_outside_leukaemia() -> None:
    """Control: a new start (no renewal link, no active order) outside leukaemia: do not start it while febuxostat is
    active, and cancelling the draft stays the recommended action."""
    request = _crohn(_case("c05_mp_tiw_draft_febu_active"))
    _draft(request).pop("priorPrescription")
    request["prefetch"]["medications"]["entry"] = [e for e in request["prefetch"]["medications"]["entry"]
                                                  if e["resource"]["id"] != "mp-act"]
    cards = case_cards(request)
    card = _card(cards, XOI)
    assert "do not start mercaptopurine" in card["summary"]
    assert ("Cancel the mercaptopurine order", True) in _suggestions(cards)


# --- the class: warfarin, new vs continuing -------------------------------------------------------------------------

def _as_warfarin(resource: dict) -> None:
    resource["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "855332",
                    "display": "warfarin sodium 5 MG Oral Tablet"}], "text": "warfarin sodium 5 MG Oral Tablet"}
    resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 5


def test_warfarin_renewal_is_not_a_warfarin_start() -> None:
    request = _case("c10_allo_renewal_aza_already_reduced")
    _as_warfarin(_draft(request))
    for m in _meds(request):
        if m["id"] == "allo":
            _as_warfarin(m)
    card = _card(case_cards(request), "interaction-warfarin")
    assert "taken together already" in card["summary"]
    assert "Warfarin is started" not in card["detail"]


def test_thiopurine_renewal_beside_warfarin_is_not_a_thiopurine_start() -> None:
    """c14 with warfarin in place of allopurinol: the azathioprine renewal (its active order taken out of the active
    list as renewed) at the same dose is continuing therapy, not a start that lowers the INR."""
    request = _case("c14_aza_renewal_allo_active_follows")
    for m in _meds(request):
        if "allopurinol" in json.dumps(m).lower():
            _as_warfarin(m)
    card = _card(case_cards(request), "interaction-warfarin")
    assert "Starting azathioprine" not in card["detail"]
    assert "Continuing azathioprine" in card["detail"]
