"""Round-11 review m5: TPMT activity and whose cut-offs apply (docs/inputs.md now says what the service does).

The unit's cut-offs (U/mL RBC: ARUP 0092066, 17.0-23.9 intermediate) are one laboratory's; they apply when the
result carries no reference range or ARUP's own. A result with another laboratory's range is another assay, judged by
its own range and interpretation (CPIC: the laboratory's reference ranges). Conservative: a value below another
laboratory's range is never read as normal.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review11"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _activity(req: dict) -> dict:
    return next(e["resource"] for e in req["prefetch"]["pgx"]["entry"] if e["resource"]["id"] == "tpmt-act")


def test_l09_the_reporting_laboratorys_range_and_flag_decide() -> None:
    topics = _topics(case_cards(_case("l09_mayo_tpmt_20_normal_by_lab")))
    assert not {"pgx-reduce-dose", "pgx-poor-metabolizer", "pgx-test-missing"} & set(topics)


def test_l09b_l09c_without_another_range_the_cited_cut_offs_apply() -> None:
    for name in ("l09b_tpmt_20_arup_range_no_interp", "l09c_tpmt_20_no_range_no_interp"):
        cards = case_cards(_case(name))
        card = next(c for c in cards if c["source"]["topic"]["code"] == "pgx-reduce-dose")
        assert "TPMT intermediate metabolizer" in card["summary"]
        assert "17.0-23.9 U/mL RBC (ARUP)" in card["detail"]


def test_below_another_laboratorys_range_is_never_normal() -> None:
    req = _case("l09_mayo_tpmt_20_normal_by_lab")
    obs = _activity(req)
    obs["valueQuantity"]["value"] = 14.0  # below that laboratory's 15.1
    del obs["interpretation"]
    topics = _topics(case_cards(req))
    assert {"pgx-poor-metabolizer", "pgx-reduce-dose"} & set(topics)


def test_a_low_flag_from_another_laboratory_wins_over_its_range() -> None:
    req = _case("l09_mayo_tpmt_20_normal_by_lab")
    _activity(req)["interpretation"] = [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}]
    topics = _topics(case_cards(req))
    assert {"pgx-poor-metabolizer", "pgx-reduce-dose"} & set(topics)
