"""Round-6 review, M4, M7, m2 (one order, one answer): built from the reviewer's case files (tests/data/review6,
copied from the round-6 cases).

- M4 (c28): the start regimen card ("start at 75 mg/day") is not shown for an order whose converged dose plan
  (allopurinol: 37.5 mg/day) is given on another card.
- M7 (c57): an azathioprine order at one-third of the usual dose as given in tablets (50 mg at 72 kg: 2 mg/kg =
  144 mg, given as 150 mg) beside active allopurinol is not cut again.
- m2 (c06, c07): no start regimen beside a withhold card for the same order."""
from __future__ import annotations

import json
import re
from pathlib import Path
from tests.review_cases import case_cards


CASES = Path(__file__).resolve().parent / "data" / "review6"


def _case(prefix: str) -> dict:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request)


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _mg_per_day(text: str) -> set[float]:
    return {float(x) for x in re.findall(r"(\d+(?:\.\d+)?) mg/day", text)}


def test_c28_one_dose_on_every_card() -> None:
    cards = _cards(_case("c28"))
    codes = _codes(cards)
    assert "dose-new-start" not in codes
    assert "interaction-xanthine-oxidase" in codes and "interaction-live-vaccine" in codes
    for c in cards:
        assert "75 mg/day" not in c["summary"] and "start at" not in c["summary"]
    xoi = next(c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase")
    # round-15 M1: a new start: one-quarter to one-third of the label's starting dose (about 1 mg/kg = 75 mg), not of
    # the 150 mg ordered (round-8 H4 took 37.5-50 mg/day of it): 18.75-25 mg/day
    assert "25 mg/day" in xoi["summary"]
    # every card stating a recommended dose states the same one
    recommended = {m for c in cards for m in re.findall(r"Recommended dose for this azathioprine order: ([^*]+)\*\*",
                                                        c["detail"])}
    assert len(recommended) == 1


def _c57(mg: float) -> dict:
    request = _case("c57")
    draft = next(e["resource"] for e in request["context"]["draftOrders"]["entry"]
                 if "azathioprine" in json.dumps(e["resource"]).lower())
    for d in draft["dosageInstruction"]:
        for dr in d.get("doseAndRate", []):
            if "doseQuantity" in dr:
                dr["doseQuantity"]["value"] = mg
    return request


def test_c57_one_third_in_tablets_not_cut_again() -> None:
    # round-15 M1: a new start: the fraction is of the label's starting dose (72 kg: 75 mg); one-third of it, 25 mg,
    # is not cut (c57's 50 mg, one-third of the 2 mg/kg dose, is now cut: see below)
    cards = _cards(_c57(25))
    (xoi,) = [c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]
    assert xoi["indicator"] == "info"
    assert "within" in xoi["summary"] and "CBC weekly" in xoi["summary"]
    assert not any("Change to" in s.get("label", "") for c in cards for s in c.get("suggestions", []))
    assert not any("37.5" in c["summary"] for c in cards)


def test_c57_above_the_tablet_third_is_still_cut() -> None:
    """Round-15 M1: a new start's 50 mg or 75 mg with allopurinol is cut to one-third of the label's start (25 mg)."""
    for mg in (50, 75):
        cards = _cards(_c57(mg))
        (xoi,) = [c for c in cards if c["source"]["topic"]["code"] == "interaction-xanthine-oxidase"]
        assert xoi["indicator"] == "critical"
        assert "25 mg/day" in xoi["summary"]


def test_c06_no_start_regimen_beside_withhold() -> None:
    cards = _cards(_case("c06"))
    codes = _codes(cards)
    assert "cytopenia" in codes and "dose-new-start" not in codes


def test_c07_no_start_regimen_beside_liver_withhold() -> None:
    cards = _cards(_case("c07"))
    codes = _codes(cards)
    assert "liver-tests" in codes and "dose-new-start" not in codes
