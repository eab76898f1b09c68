"""Round-8 review, H3: myelosuppressive co-medication other than co-trimoxazole was not flagged. The Imuran label,
PRECAUTIONS, Drug Interactions: "Drugs which may affect leukocyte production, including co-trimoxazole, may lead to
exaggerated leukopenia, especially in renal transplant recipients". Built from the reviewer's c78 (mycophenolate
mofetil active, azathioprine ordered), c79 (valganciclovir active, kidney transplant) and c64 (clozapine active),
copied to tests/data/review8; each in both directions, by RxNorm code and by name without a code."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review8"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# case prefix -> (id of the active interacting MedicationRequest, rule id)
CASE_RULE = {
    "c78": ("mmf", "interaction-mycophenolate"),
    "c79": (None, "interaction-myelosuppressive-antivirals"),
    "c64": (None, "interaction-clozapine"),
}


def _case(prefix: str) -> dict:
    (path,) = CASES.glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards_of(request: dict, rule_id: str) -> list[dict]:
    return [c for c in case_cards(request) if c["source"]["topic"]["code"] == rule_id]


def _other(request: dict) -> dict:
    """The interacting (non-thiopurine) active medication of the case."""
    (res,) = [e["resource"] for e in request["prefetch"]["medications"]["entry"]
              if "azathioprine" not in json.dumps(e["resource"]).lower()]
    return res


def _swap(request: dict) -> dict:
    """The other direction: azathioprine active, the interacting drug ordered now."""
    r = copy.deepcopy(request)
    aza = r["context"]["draftOrders"]["entry"][0]["resource"]
    other = _other(r)
    aza["status"], other["status"] = "active", "draft"
    aza["authoredOn"] = "2026-01-10"
    other["authoredOn"] = "2026-12-07"
    r["prefetch"]["medications"]["entry"] = [e for e in r["prefetch"]["medications"]["entry"]
                                             if e["resource"] is not other] + [{"resource": aza}]
    r["context"]["draftOrders"]["entry"] = [{"resource": other}]
    return r


def _with_drug(request: dict, code: str | None, text: str) -> dict:
    r = copy.deepcopy(request)
    other = _other(r)
    other["medicationCodeableConcept"] = ({"coding": [{"system": RXNORM, "code": code}]} if code else {"text": text})
    return r


def test_c78_mycophenolate_active_azathioprine_ordered() -> None:
    (card,) = _cards_of(_case("c78"), "interaction-mycophenolate")
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Mycophenolate mofetil with azathioprine")
    assert "avoid unless" in card["summary"] and len(card["summary"]) <= 140
    assert "Mycophenolate mofetil (active) with azathioprine (ordered now)" in card["detail"]
    assert "If this is not a planned switch, do not combine them." in card["detail"]
    assert "switch from mycophenolate mofetil to azathioprine" in card["detail"]
    assert "exaggerated leukopenia, especially in renal transplant recipients" in card["detail"]
    labels = [link["label"] for link in card.get("links", [])]
    assert any("other agents affecting myelopoiesis" in x for x in labels)
    assert any("CellCept" in x for x in labels)


def test_c78_other_direction_mycophenolate_ordered_on_azathioprine() -> None:
    (card,) = _cards_of(_swap(_case("c78")), "interaction-mycophenolate")
    assert card["indicator"] == "warning"
    assert "Mycophenolate mofetil (ordered now) with azathioprine (active)" in card["detail"]
    assert "switch from azathioprine to mycophenolate mofetil" in card["detail"]


def test_c79_valganciclovir_kidney_transplant() -> None:
    (card,) = _cards_of(_case("c79"), "interaction-myelosuppressive-antivirals")
    assert card["indicator"] == "warning"
    assert card["summary"] == ("Valganciclovir (CMV antiviral) with azathioprine: additive myelosuppression "
                               "(boxed warning: hematologic toxicity); monitor CBC")
    assert "Valganciclovir (active) with azathioprine (ordered now)" in card["detail"]
    assert "Check the CBC before and during combined use." in card["detail"]
    assert any("Valcyte" in link["label"] for link in card.get("links", []))


def test_c64_clozapine() -> None:
    (card,) = _cards_of(_case("c64"), "interaction-clozapine")
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Clozapine with azathioprine: clozapine causes severe neutropenia")
    assert "(clozapine)" not in card["summary"]  # the group name is not repeated after the drug's own name
    assert card["summary"].endswith("monitor CBC")
    assert any("Clozaril" in link["label"] for link in card.get("links", []))


@pytest.mark.parametrize("prefix", ["c79", "c64"])
def test_other_direction_drug_ordered_on_active_azathioprine(prefix: str) -> None:
    rule_id = CASE_RULE[prefix][1]
    (card,) = _cards_of(_swap(_case(prefix)), rule_id)
    assert card["indicator"] == "warning"
    assert "(ordered now) with azathioprine (active)" in card["detail"]


@pytest.mark.parametrize(("prefix", "code", "text", "rule_id"), [
    ("c78", "68149", "", "interaction-mycophenolate"),                      # IN mycophenolate mofetil
    ("c78", "200060", "", "interaction-mycophenolate"),                     # SCD 500 mg tablet
    ("c78", "7145", "", "interaction-mycophenolate"),                       # IN mycophenolic acid
    ("c78", None, "CellCept 500 mg tablet", "interaction-mycophenolate"),
    ("c78", None, "Myfortic (mycophenolate sodium) 360 mg", "interaction-mycophenolate"),
    ("c78", None, "mycophenolic acid DR 720 mg", "interaction-mycophenolate"),
    ("c79", "275891", "", "interaction-myelosuppressive-antivirals"),       # IN valganciclovir
    ("c79", "4678", "", "interaction-myelosuppressive-antivirals"),         # IN ganciclovir
    ("c79", None, "Valcyte 450 mg", "interaction-myelosuppressive-antivirals"),
    ("c79", None, "ganciclovir 5 mg/kg IV", "interaction-myelosuppressive-antivirals"),
    ("c64", "2626", "", "interaction-clozapine"),                           # IN clozapine
    ("c64", "197535", "", "interaction-clozapine"),                         # SCD 100 mg tablet (the case's code)
    ("c64", None, "Clozaril 100 mg", "interaction-clozapine"),
    ("c64", None, "Versacloz oral suspension", "interaction-clozapine"),
    ("c64", None, "Ferriprox (deferiprone) 1000 mg", "interaction-deferiprone"),
    ("c64", None, "deferiprone 500 mg tablet", "interaction-deferiprone"),
])
def test_by_code_or_by_name_without_code(prefix: str, code: str | None, text: str, rule_id: str) -> None:
    r = _with_drug(_case(prefix), code, text)
    assert len(_cards_of(r, rule_id)) == 1
    assert len(_cards_of(_swap(r), rule_id)) == 1


def test_one_card_per_interacting_drug_per_order() -> None:
    """Two mycophenolate records (mofetil and acid) give two cards, one per medication; each carries both
    ingredient names at most once; no other interaction card appears for them."""
    r = _case("c78")
    extra = copy.deepcopy(_other(r))
    extra["id"] = "mpa"
    extra["medicationCodeableConcept"] = {"text": "mycophenolate mofetil 250 mg capsule"}
    r["prefetch"]["medications"]["entry"].append({"resource": extra})
    cards = case_cards(r)
    assert len([c for c in cards if c["source"]["topic"]["code"] == "interaction-mycophenolate"]) == 2
    assert not [c for c in cards if c["source"]["topic"]["code"] in
                {"interaction-cotrimoxazole", "interaction-clozapine", "interaction-myelosuppressive-antivirals"}]


def test_no_card_without_the_interacting_drug() -> None:
    for prefix, (_, rule_id) in CASE_RULE.items():
        r = _case(prefix)
        r["prefetch"]["medications"]["entry"] = [e for e in r["prefetch"]["medications"]["entry"]
                                                 if "azathioprine" in json.dumps(e["resource"]).lower()]
        assert _cards_of(r, rule_id) == []


def test_valganciclovir_is_not_read_as_ganciclovir_twice() -> None:
    """'valganciclovir' and 'ganciclovir' are distinct names (whole-word matching): one card, naming valganciclovir."""
    (card,) = _cards_of(_with_drug(_case("c79"), None, "valganciclovir 450 mg tablet"),
                        "interaction-myelosuppressive-antivirals")
    assert card["summary"].startswith("Valganciclovir (CMV antiviral)")
