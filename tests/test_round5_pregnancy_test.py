"""Value tests for the round-5 review, H4 (HARM): a positive pregnancy test (hCG) was ignored. A pregnancy test in
the ``pregnancy`` (or labs) key is now read as pregnancy status (rules.populations.hcg_result, populations.toml
[pregnancy.test]); a test that cannot be read is reported, never treated as negative. The cases are the reviewer's
request files (tests/data/review5/), evaluated on 2026-12-07; the controls are edits of them."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hooks.prefetch import PREFETCH
from service.cli import main

CASES = Path(__file__).parent / "data" / "review5"
SCT = "http://snomed.info/sct"


def load(stem: str) -> dict:
    (path,) = CASES.glob(f"{stem}-*.json")
    return json.loads(path.read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def codes(cards) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def card(cards, code) -> dict:
    found = [c for c in cards if c["source"]["topic"]["code"] == code]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def hcg(request: dict) -> dict:
    (entry,) = request["prefetch"]["pregnancy"]["entry"]
    return entry["resource"]


def test_c83_positive_urine_hcg_new_mercaptopurine_is_the_label_warning(monkeypatch, capsys, tmp_path):
    c = card(run(load("c83"), monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "warning"
    # round-19 M1: the patient has IBD: the IBD guidelines' wording, not ACR 2020 (still the label's warning)
    assert c["summary"] == ("Positive pregnancy test: new mercaptopurine start (IBD): the label warns of fetal harm; "
                            "start only if benefit clearly outweighs risk")
    assert "Positive pregnancy test" in c["detail"] and "2026-12-01" in c["detail"]
    assert "section 8.1: miscarriage and stillbirth reported" in c["detail"]


def test_c83_same_card_as_the_coded_pregnancy_of_c12(monkeypatch, capsys, tmp_path):
    by_test = card(run(load("c83"), monkeypatch, capsys, tmp_path), "pregnancy")
    by_condition = card(run(load("c12"), monkeypatch, capsys, tmp_path), "pregnancy")
    assert by_test["indicator"] == by_condition["indicator"] == "warning"
    assert by_test["summary"].split(":", 1)[1] == by_condition["summary"].split(":", 1)[1]


def test_c67_positive_urine_hcg_azathioprine_keeps_acr_wording(monkeypatch, capsys, tmp_path):
    c = card(run(load("c67"), monkeypatch, capsys, tmp_path), "pregnancy")
    # round-19 M1: c67 is Crohn's disease and a new start: the IBD guidelines' message, the same as for mercaptopurine
    # (a thiopurine newly started in pregnancy: the label's fetal-harm warning), not ACR 2020
    assert c["indicator"] == "warning"
    assert c["summary"].startswith("Positive pregnancy test: new azathioprine start (IBD)")
    assert "ACR" not in c["detail"] and "ECCO" in c["detail"]
    ra = copy.deepcopy(load("c67"))  # the same in rheumatoid arthritis keeps ACR 2020's wording
    ra["prefetch"]["conditions"]["entry"][0]["resource"]["code"] = {
        "coding": [{"system": SCT, "code": "69896004", "display": "Rheumatoid arthritis"}]}
    c = card(run(ra, monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "info"
    assert c["summary"].startswith("Positive pregnancy test: azathioprine may be")
    assert "ACR 2020 reproductive health guideline: compatible with pregnancy" in c["detail"]


def test_c92_serum_hcg_25000_flagged_high_is_pregnancy(monkeypatch, capsys, tmp_path):
    c = card(run(load("c92"), monkeypatch, capsys, tmp_path), "pregnancy")
    assert c["indicator"] == "warning" and "new mercaptopurine start" in c["summary"]
    assert "25000" in c["detail"] and "flagged H by the laboratory" in c["detail"]


def test_c92_without_flag_positive_by_the_cited_cut_off(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c92"))
    del hcg(request)["interpretation"]
    c = card(run(request, monkeypatch, capsys, tmp_path), "pregnancy")
    assert "at or above 25 mIU/mL" in c["detail"] and "80385-8" in c["detail"]  # the LOINC source is cited


@pytest.mark.parametrize("value", [
    {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "260385009", "display": "Negative"}], "text": "Negative"}},
    {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "260385009"}]}},
    {"valueString": "Not detected"},
])
def test_negative_urine_hcg_control_no_pregnancy_card(value, monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c83"))
    obs = hcg(request)
    del obs["valueCodeableConcept"]
    obs.update(value)
    cards = run(request, monkeypatch, capsys, tmp_path)
    assert "pregnancy" not in codes(cards) and "pregnancy-test-unreadable" not in codes(cards)


def test_negative_serum_hcg_within_the_laboratory_range(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c92"))
    obs = hcg(request)
    del obs["interpretation"]
    obs["valueQuantity"]["value"] = 2
    obs["referenceRange"] = [{"high": {"value": 5, "unit": "m[IU]/mL"}}]
    cards = run(request, monkeypatch, capsys, tmp_path)
    assert "pregnancy" not in codes(cards) and "pregnancy-test-unreadable" not in codes(cards)


@pytest.mark.parametrize("change,why", [
    (lambda o: (o.pop("interpretation"), o["valueQuantity"].update(value=12)), "between 5 and 25 mIU/mL"),
    (lambda o: (o.pop("interpretation"), o["valueQuantity"].update(unit="ng/mL", code="ng/mL")), "is not IU/L"),
])
def test_an_unreadable_serum_hcg_is_reported_not_negative(change, why, monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c92"))
    change(hcg(request))
    cards = run(request, monkeypatch, capsys, tmp_path)
    c = card(cards, "pregnancy-test-unreadable")
    assert c["indicator"] == "warning" and "could not be read" in c["summary"]
    assert why in c["detail"] and "not treated as negative" in c["detail"]
    assert "pregnancy" not in codes(cards)


def test_an_equivocal_urine_hcg_is_reported(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c67"))
    obs = hcg(request)
    obs["valueCodeableConcept"] = {"text": "Equivocal"}
    c = card(run(request, monkeypatch, capsys, tmp_path), "pregnancy-test-unreadable")
    # round-19 M1: Crohn's disease, a new azathioprine start: the IBD guidelines concern continuing a thiopurine taken
    assert c["indicator"] == "warning" and "ECCO 2015, AGA 2019" in c["detail"]
    assert "reported as equivocal" in c["detail"]


def _status(date: str, code: str) -> dict:
    return {"resource": {"resourceType": "Observation", "id": f"ps-{date}", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
                         "effectiveDateTime": date, "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}}


def test_a_newer_not_pregnant_status_wins_over_an_older_positive_test(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c83"))
    request["prefetch"]["pregnancy"]["entry"].append(_status("2026-12-05", "60001007"))  # not pregnant
    assert "pregnancy" not in codes(run(request, monkeypatch, capsys, tmp_path))


def test_a_positive_test_after_a_not_pregnant_status_is_pregnancy(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c83"))
    request["prefetch"]["pregnancy"]["entry"].append(_status("2026-06-01", "60001007"))
    assert card(run(request, monkeypatch, capsys, tmp_path), "pregnancy")["indicator"] == "warning"


def test_a_positive_test_older_than_the_longest_pregnancy_is_not_current(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c83"))
    hcg(request)["effectiveDateTime"] = "2025-12-01"  # 371 days: beyond 294 days (42 weeks, ACOG)
    assert "pregnancy" not in codes(run(request, monkeypatch, capsys, tmp_path))


def test_hcg_in_a_man_is_not_pregnancy(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c92"))
    request["prefetch"]["patient"]["gender"] = "male"
    cards = run(request, monkeypatch, capsys, tmp_path)
    assert "pregnancy" not in codes(cards) and "pregnancy-test-unreadable" not in codes(cards)


def test_the_pregnancy_prefetch_asks_for_the_pregnancy_tests():
    query = PREFETCH["pregnancy"]
    for code in ("82810-3", "2106-3", "2118-8", "21198-7"):
        assert f"http://loinc.org|{code}" in query
    assert "2106-3" not in PREFETCH["labs"]
