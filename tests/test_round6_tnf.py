"""Round-6 review, M6: a thiopurine with a TNF blocker gets the hepatosplenic T-cell lymphoma card (Imuran boxed
warning, MALIGNANCY; FDA 2011), in both directions. Built from the reviewer's c42 (14-year-old boy, Crohn's disease,
infliximab active, azathioprine draft), copied to tests/data/review6."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tests.review_cases import case_cards


CASES = Path(__file__).resolve().parent / "data" / "review6"


def _case(prefix: str) -> dict:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request)


def _hstcl(cards: list[dict]) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == "interaction-tnf-blockers"]


def test_c42_boy_on_infliximab_azathioprine_draft() -> None:
    (card,) = _hstcl(_cards(_case("c42")))
    assert card["indicator"] == "warning"
    assert "hepatosplenic T-cell lymphoma" in card["summary"] and "young males" in card["summary"]
    assert "adolescent and young adult males" in card["detail"]
    assert "Crohn's disease or ulcerative colitis" in card["detail"]
    assert "boxed warning (MALIGNANCY)" in card["detail"]
    assert "Infliximab (active) with azathioprine (ordered now)" in card["detail"]


def _swap(request: dict) -> dict:
    """The other direction: azathioprine active, the TNF blocker the draft."""
    r = copy.deepcopy(request)
    aza = r["context"]["draftOrders"]["entry"][0]["resource"]
    meds = r["prefetch"]["medications"]["entry"]
    ifx = next(e["resource"] for e in meds if "infliximab" in json.dumps(e["resource"]))
    aza["status"], ifx["status"] = "active", "draft"
    aza["authoredOn"] = "2026-01-10"
    r["prefetch"]["medications"]["entry"] = [e for e in meds if e["resource"] is not ifx] + [{"resource": aza}]
    r["context"]["draftOrders"]["entry"] = [{"resource": ifx}]
    return r


def test_tnf_blocker_ordered_on_active_azathioprine() -> None:
    (card,) = _hstcl(_cards(_swap(_case("c42"))))
    assert card["indicator"] == "warning"
    assert "Infliximab (ordered now) with azathioprine (active)" in card["detail"]
    assert "Before adding infliximab to the azathioprine" in card["detail"]


@pytest.mark.parametrize(("code", "name"), [("327361", "adalimumab"), ("709271", "certolizumab pegol"),
                                            ("214555", "etanercept"), ("", "Simponi (golimumab)"), ("", "Humira")])
def test_every_tnf_blocker_by_code_or_name(code: str, name: str) -> None:
    r = _case("c42")
    ifx = next(e["resource"] for e in r["prefetch"]["medications"]["entry"] if "infliximab" in json.dumps(e["resource"]))
    coding = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}] if code else []
    ifx["medicationCodeableConcept"] = {"coding": coding, "text": name} if coding else {"text": name}
    if code:
        ifx["medicationCodeableConcept"] = {"coding": coding}
    assert len(_hstcl(_cards(r))) == 1


def test_no_card_without_a_tnf_blocker() -> None:
    r = _case("c42")
    r["prefetch"]["medications"]["entry"] = [e for e in r["prefetch"]["medications"]["entry"]
                                             if "infliximab" not in json.dumps(e["resource"])]
    assert _hstcl(_cards(r)) == []
