"""Round-4 review, M2 (slice clinfix): the pregnancy card is worded per drug. ACR 2020 names azathioprine as
compatible with pregnancy (info); the mercaptopurine label (8.1) and the thioguanine label warn of fetal harm
(warning, as the breastfeeding card); a new start is said as such. Case: tests/data/review4/clinfix/ (README)."""
from __future__ import annotations

import json
from pathlib import Path

from service.cli import main

CASES = Path(__file__).parent / "data" / "review4" / "clinfix"
P31 = "p31-pregnant-mp-first-trimester-sle"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def card(cards, code):
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def draft(request: dict) -> dict:
    return request["context"]["draftOrders"]["entry"][0]["resource"]


def as_drug(request: dict, code: str, display: str) -> dict:
    draft(request)["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": code, "display": display}],
                                                   "text": display}
    return request


def test_p31_mercaptopurine_new_start_in_pregnancy_is_not_worded_for_azathioprine(monkeypatch, capsys, tmp_path):
    c = card(run(load(P31), monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "warning"
    assert "new mercaptopurine start" in c["summary"] and "fetal harm" in c["summary"]
    assert "Azathioprine may be continued" not in c["detail"] and "continued" not in c["summary"]
    assert "This is a new start of mercaptopurine in pregnancy" in c["detail"]
    assert "does not name mercaptopurine" in c["detail"] and "azathioprine is the one ACR 2020 names" in c["detail"]
    assert "section 8.1" in c["detail"] and "Pregnancy" in c["detail"]


def test_p31_mercaptopurine_continued_in_pregnancy(monkeypatch, capsys, tmp_path):
    request = load(P31)
    active = {**draft(request), "id": "mp-active", "status": "active", "authoredOn": "2026-01-10"}
    request["prefetch"]["medications"] = {"resourceType": "Bundle", "type": "searchset",
                                          "entry": [{"resource": active}]}
    c = card(run(request, monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "warning" and "Pregnant patient on mercaptopurine" in c["summary"]
    assert "new start" not in c["detail"] and "If it is continued, weigh the benefit" in c["detail"]


def test_p31_thioguanine_worded_for_thioguanine(monkeypatch, capsys, tmp_path):
    request = as_drug(load(P31), "", "thioguanine 40 MG Oral Tablet")
    draft(request)["medicationCodeableConcept"] = {"text": "thioguanine 40 MG Oral Tablet"}
    c = card(run(request, monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "warning" and "thioguanine" in c["summary"]
    assert "pregnancy category D" in c["detail"] and "does not name thioguanine" in c["detail"]


def test_p31_azathioprine_new_start_is_compatible_and_said_as_a_start(monkeypatch, capsys, tmp_path):
    request = as_drug(load(P31), "197388", "azathioprine 50 MG Oral Tablet")
    c = card(run(request, monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "info"
    assert c["summary"] == ("Pregnant patient: azathioprine may be started when benefit outweighs risk; counsel and "
                            "monitor blood counts")
    assert "Azathioprine may be started in pregnancy" in c["detail"] and "compatible with pregnancy" in c["detail"]
