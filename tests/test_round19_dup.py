"""Round-19 review H4, M4, m6, m7: duplicate thiopurines and the switch note.

H4: a switch (the draft names, by priorPrescription / basedOn, the order of the other thiopurine it replaces) replaces
only the order it names: every other active order or statement of a thiopurine still gets the critical
``duplicate-thiopurine`` card (Imuran label: azathioprine is converted to mercaptopurine; additive myelotoxicity). A
statement that records taking the named order (its basedOn / derivedFrom names it) is that therapy, not a second one.
M4: the switch note asks the prescriber to act (end the replaced order): among merged info notes it leads, so the
merged card's summary names "end the mercaptopurine order".
m6: two thiopurine drafts give one duplicate card, not one per draft.
m7: the duplicate card names, and offers to end, every other order (two mercaptopurine orders: both).
Cases from the reviewer (tests/data/review19/), evaluated on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)


def _request(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(name: str | dict) -> list[dict]:
    return case_cards(_request(name) if isinstance(name, str) else name, DAY)


def _of(cards: list[dict], rule_id: str) -> list[dict]:
    return [c for c in cards if c["extension"]["azathioprine-cds"]["ruleId"] == rule_id]


def _suggestions(card: dict) -> list[tuple[str, str]]:
    """(label, the order each delete action removes) of every suggestion."""
    return [(s["label"], a.get("resourceId", "")) for s in card.get("suggestions", []) for a in s["actions"]]


def _medications(request: dict) -> list[dict]:
    return request["prefetch"]["medications"]["entry"]


# ------------------------------------------------------------------ H4
def test_switch_naming_one_order_still_flags_a_second_order_of_the_drug():
    cards = _cards("r19-80-switch-named-plus-second-mp-active")
    (dup,) = _of(cards, "duplicate-thiopurine")
    assert dup["indicator"] == "critical"
    assert dup["summary"] == ("Azathioprine ordered while another mercaptopurine order (not the one this switch "
                              "replaces) is active: duplicate thiopurine therapy")
    assert "MedicationRequest/mp-susp" in dup["detail"] and "mercaptopurine 20 MG/ML Oral Suspension" in dup["detail"]
    offered = _suggestions(dup)
    assert [ref for _, ref in offered] == ["MedicationRequest/mr-aza", "MedicationRequest/mp-susp"]
    assert not any(s.get("isRecommended") for s in dup["suggestions"])  # the prescriber chooses which to keep
    # the order the switch names is still ended by the switch note, which says the duplicate card exists
    (note,) = _of(cards, "thiopurine-switch")
    assert note["indicator"] == "info"
    assert "end the mercaptopurine order" in note["summary"] and "see duplicate card" in note["summary"]
    assert [ref for _, ref in _suggestions(note)] == ["MedicationRequest/mp-old"]


def test_switch_naming_one_order_still_flags_a_statement_of_the_drug():
    cards = _cards("r19-87-switch-named-plus-mp-statement")
    (dup,) = _of(cards, "duplicate-thiopurine")
    assert dup["indicator"] == "critical"
    assert "another mercaptopurine record (not the one this switch replaces)" in dup["summary"]
    assert "recorded as taken: end it where it is prescribed" in dup["detail"]
    # a statement is no order here: only this order's cancel is offered
    assert [ref for _, ref in _suggestions(dup)] == ["MedicationRequest/mr-aza"]
    assert _of(cards, "thiopurine-switch")


def test_statement_recording_the_named_order_is_that_therapy_not_a_duplicate():
    request = _request("r19-87-switch-named-plus-mp-statement")
    (statement,) = [e for e in _medications(request) if e["resource"]["resourceType"] == "MedicationStatement"]
    for link in ({"basedOn": [{"reference": "MedicationRequest/mp-old"}]},
                 {"derivedFrom": [{"reference": "https://ehr.example/fhir/MedicationRequest/mp-old"}]}):
        sent = copy.deepcopy(request)
        (st,) = [e for e in _medications(sent) if e["resource"]["id"] == statement["resource"]["id"]]
        st["resource"].update(link)
        cards = _cards(sent)
        assert not _of(cards, "duplicate-thiopurine"), link
        assert _of(cards, "thiopurine-switch")


def test_naming_both_orders_is_a_switch_from_both():
    request = _request("r19-80-switch-named-plus-second-mp-active")
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["basedOn"] = [{"reference": "MedicationRequest/mp-susp"}]
    cards = _cards(request)
    assert not _of(cards, "duplicate-thiopurine")
    (note,) = _of(cards, "thiopurine-switch")
    assert "end the mercaptopurine orders" in note["summary"]
    labels = dict((ref, label) for label, ref in _suggestions(note))
    assert set(labels) == {"MedicationRequest/mp-old", "MedicationRequest/mp-susp"}
    assert "mercaptopurine 20 MG/ML Oral Suspension" in labels["MedicationRequest/mp-susp"]


def test_plain_switch_and_plain_duplicate_are_unchanged():
    (note,) = _of(_cards("r19-61-switch-mp-to-aza-named"), "thiopurine-switch")
    assert note["summary"] == "Azathioprine replaces mercaptopurine (switch): end the mercaptopurine order"
    assert _suggestions(note) == [("End the mercaptopurine order this order replaces", "MedicationRequest/mp-old")]
    for name in ("r19-86-renewal-aza-while-mp-active", "r19-63-duplicate-statement-outside"):
        (dup,) = _of(_cards(name), "duplicate-thiopurine")
        assert dup["summary"] == "Azathioprine ordered while mercaptopurine is active: duplicate thiopurine therapy"
        assert "If this order is meant to replace the mercaptopurine order (a switch), name that order" in dup["detail"]


# ------------------------------------------------------------------ M4
def _merged(cards: list[dict]) -> dict:
    (card,) = [c for c in cards if c["indicator"] == "info"]
    return card


def test_merged_info_card_summary_names_ending_the_replaced_order():
    """r19-72 (azathioprine 100 mg for a TPMT IM, switched from mercaptopurine): a switch is dosed as a new start
    (round 19), so 100 mg is cut on a warning and the switch note is an info card of its own; once the suggested
    dose is signed the IM note is info too, and the one merged info card leads with the order to end."""
    request = _request("r19-72-switch-mp-to-aza-im-100mg")
    first = _cards(request)
    (note,) = [c for c in first if c["indicator"] == "info"]
    assert note["source"]["topic"]["code"] == "thiopurine-switch"
    assert note["summary"].startswith("Azathioprine replaces mercaptopurine (switch): end the mercaptopurine order")
    (update,) = [a for c in first for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]
    signed = copy.deepcopy(request)
    signed["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] = update["resource"]["dosageInstruction"]
    card = _merged(_cards(signed))
    assert "mergedRuleIds" in card["extension"]["azathioprine-cds"]
    assert card["source"]["topic"]["code"] == "thiopurine-switch"
    assert card["summary"].startswith("Azathioprine replaces mercaptopurine: end the mercaptopurine order")
    assert ("End the mercaptopurine order this order replaces", "MedicationRequest/mp-old") in _suggestions(card)


def test_switch_note_still_named_once_the_suggested_dose_is_signed():
    """r19-62: sign the dose the service suggests (whatever it is); the merged info card then left still names the
    order to end."""
    request = _request("r19-62-switch-mp-to-aza-tpmt-im")
    first = _cards(request)
    (update,) = [a for c in first for s in c.get("suggestions", []) for a in s["actions"] if a["type"] == "update"]
    signed = copy.deepcopy(request)
    signed["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] = update["resource"]["dosageInstruction"]
    cards = _cards(signed)
    assert not [c for c in cards if c["indicator"] != "info"], [c["summary"] for c in cards]
    card = _merged(cards)
    assert "end the mercaptopurine order" in card["summary"]


def test_switch_note_leads_other_acting_notes():
    """The switch note is named before another note that asks to act (no weight on record: weigh the patient)."""
    request = _request("r19-72-switch-mp-to-aza-im-100mg")
    for key in list(request["prefetch"]):
        bundle = request["prefetch"][key]
        if isinstance(bundle, dict) and "entry" in bundle:
            bundle["entry"] = [e for e in bundle["entry"] if "29463-7" not in json.dumps(e["resource"])]
    cards = _cards(request)
    summaries = [c["summary"] for c in cards]
    assert any(c["extension"]["azathioprine-cds"]["ruleId"] == "weight-missing"
               or "weight-missing" in c["extension"]["azathioprine-cds"].get("mergedRuleIds", []) for c in cards), summaries
    card = _merged(cards)
    assert card["summary"].startswith("Azathioprine replaces mercaptopurine: end the mercaptopurine order"), summaries


# ------------------------------------------------------------------ m6
def test_two_thiopurine_drafts_give_one_duplicate_card():
    cards = _cards("r19-60-two-thiopurine-drafts")
    (dup,) = _of(cards, "duplicate-thiopurine")
    assert dup["summary"] == "Azathioprine ordered while mercaptopurine is ordered now: duplicate thiopurine therapy"
    assert sorted(ref for _, ref in _suggestions(dup)) == ["MedicationRequest/mr-aza", "MedicationRequest/mr-mp"]


# ------------------------------------------------------------------ m7
def test_duplicate_card_offers_to_end_every_other_order_each_named():
    (dup,) = _of(_cards("r19-90-duplicate-two-mp-orders-active"), "duplicate-thiopurine")
    assert dup["summary"] == "Azathioprine ordered while 2 mercaptopurine orders are active: duplicate thiopurine therapy"
    assert _suggestions(dup) == [
        ("Cancel the azathioprine order", "MedicationRequest/mr-aza"),
        ("Cancel the mercaptopurine order MedicationRequest/mp-old (mercaptopurine 50 MG Oral Tablet)",
         "MedicationRequest/mp-old"),
        ("Cancel the mercaptopurine order MedicationRequest/mp-susp (mercaptopurine 20 MG/ML Oral Suspension)",
         "MedicationRequest/mp-susp"),
    ]
    assert "every other thiopurine listed" in dup["detail"]
    assert "MedicationRequest/mp-old" in dup["detail"] and "MedicationRequest/mp-susp" in dup["detail"]
