"""Round-18 review: TPMT data that must raise a concern.

H2: a TPMT/NUDT15 result dated after today that reads poor metabolizer raises the critical verify card and withholds
the start dose whatever other results of the gene exist (an older normal genotype never outweighs it); the conflict
between the two results is named.
H3: a TPMT activity in the intermediate range measured soon after a red-cell transfusion may hide a poor metabolizer
(donor cells only raise it): the card names the transfusion and result, says the true activity may be lower (poor)
and advises TPMT genotyping; the intermediate reduction stays as the minimum precaution.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review18"


def _req(name: str) -> dict:
    return json.loads(next(CASES.glob(f"{name}_*.json")).read_text(encoding="utf-8"))


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _card(cards: list[dict], rule: str) -> dict:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule]
    return card


def _pgx_entries(req: dict) -> list[dict]:
    return req["prefetch"]["pgx"]["entry"]


# ------------------------------------------------------------------ H2


def test_f18_future_pm_genotype_beside_older_normal_is_critical_and_names_the_conflict():
    cards = case_cards(_req("f18"))
    card = _card(cards, "pgx-uninterpretable")
    assert card["indicator"] == "critical"
    assert "'*3A/*3A' (poor metabolizer) dated 2027-02-01" in card["summary"]
    assert "conflicts with '*1/*1' (2025-01-10)" in card["summary"]
    assert "**conflicts** with the current TPMT result '*1/*1' (2025-01-10, normal metabolizer)" in card["detail"]
    assert "CPIC advises a non-thiopurine alternative" in card["detail"]
    # no start dose beside an unresolved poor-metabolizer reading
    assert "dose-new-start" not in _codes(cards)
    assert not any("75 mg/day" in c["summary"] for c in cards)
    labels = [s["label"] for s in card.get("suggestions", [])]
    assert any("TPMT genotyping" in x for x in labels)
    assert any(x.startswith("Cancel") for x in labels)


def test_f18_control_f06_future_pm_alone_unchanged():
    card = _card(case_cards(_req("f06")), "pgx-uninterpretable")
    assert card["indicator"] == "critical"
    assert card["summary"] == ("Azathioprine: TPMT result '*3A/*3A' (poor metabolizer) dated 2027-02-01, after today: "
                               "set aside; verify before prescribing")
    assert "conflicts" not in card["detail"]


def test_f18_class_future_pm_beside_current_intermediate_genotype_is_critical_not_dosed():
    req = copy.deepcopy(_req("f18"))
    changed = False
    for e in _pgx_entries(req):
        r = e["resource"]
        text = json.dumps(r)
        if "*1/*1" in text and "2025-01-10" in text and "TPMT" in text:
            r2 = json.loads(text.replace("*1/*1", "*1/*3A"))
            e["resource"] = r2
            changed = True
            break
    assert changed
    cards = case_cards(req)
    codes = _codes(cards)
    card = _card(cards, "pgx-uninterpretable")
    assert card["indicator"] == "critical"
    assert "'*1/*3A'" in card["detail"]
    assert "pgx-reduce-dose" not in codes and "dose-new-start" not in codes


def test_f19_control_future_deficient_activity_still_raises():
    cards = case_cards(_req("f19"))
    pm = _card(cards, "pgx-poor-metabolizer")
    assert pm["indicator"] == "critical" and pm["summary"].startswith("DATED 2027-02-01 (AFTER TODAY), verify")


# ------------------------------------------------------------------ H3


def test_t07_intermediate_activity_after_transfusion_is_named_unreliable_and_keeps_the_reduction():
    cards = case_cards(_req("t07"))
    card = _card(cards, "pgx-reduce-dose")
    assert "activity after a transfusion: may be poor" in card["summary"]
    assert "reduce to 50 mg/day" in card["summary"]  # the IM reduction stays: the minimum precaution
    d = card["detail"]
    assert "TPMT activity of 20 U/mL RBC (2026-11-20) was measured 19 days after a red-cell transfusion" in d
    assert "2026-11-01" in d
    assert "true activity may be lower (poor metabolizer)" in d
    assert "Genotype TPMT before prescribing" in d
    labels = [s["label"] for s in card.get("suggestions", [])]
    assert any("TPMT" in x and "genotyping" in x for x in labels)
    assert "dose-new-start" not in _codes(cards)


def test_t07_control_intermediate_activity_without_transfusion_is_a_plain_im():
    req = copy.deepcopy(_req("t07"))
    req["prefetch"] = {k: v for k, v in req["prefetch"].items() if "transfus" not in json.dumps(v).lower()
                       and "116859006" not in json.dumps(v)}
    cards = case_cards(req)
    card = _card(cards, "pgx-reduce-dose")
    assert "transfusion" not in card["summary"] and "transfusion" not in card["detail"]


def test_transfusion_controls_unchanged():
    t01 = _card(case_cards(_req("t01")), "pgx-uninterpretable")
    assert "19 days after a transfusion: unreliable; genotype TPMT" in t01["summary"]
    assert _card(case_cards(_req("t03")), "pgx-poor-metabolizer")["indicator"] == "critical"
    assert not [c for c in case_cards(_req("t08")) if c["source"]["topic"]["code"].startswith("pgx-")]


# ------------------------------------------------------------------ m6


def test_f10b_f10d_a_cbc_dated_tomorrow_that_alone_clears_an_overdue_check_is_said_verify():
    for name in ("f10b", "f10d"):
        cards = case_cards(_req(name))
        card = _card(cards, "monitoring-cbc-due")
        assert card["indicator"] == "info"
        assert card["summary"] == ("Azathioprine: CBC dated 2026-12-08 (after today) taken as current; verify its date "
                                   "(CBC before it: 2026-05-20)")
        assert "**verify its date**" in card["detail"]
        assert not card.get("suggestions")


def test_f10b_control_the_same_cbc_dated_today_gives_no_card():
    req = json.loads(json.dumps(_req("f10b")).replace("2026-12-08", "2026-12-07"))
    assert "monitoring-cbc-due" not in _codes(case_cards(req))
