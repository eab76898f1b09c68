"""Value tests for the round-5 review (2026-12-07), defect H2 (HARM): renal failure went unrecognised unless a
current eGFR or creatinine was present. A coded diagnosis of kidney failure, CKD stage 4-5 or dialysis dependence
(SNOMED CT, ICD-10-CM: populations.toml [renal] kidney_failure_*) is now read as renal impairment by the existing
`renal-impairment` rule, whose card names the diagnosis as recorded; an eGFR (or creatinine) older than the result
window is not dropped: with nothing newer on record, a low last value gives the same card with its date.

The cases are the reviewer's request files, unchanged (tests/data/review5/README.renal.md): c16 (SNOMED 236435004,
no eGFR), c54 (ICD-10-CM N18.6 + Z99.2, no eGFR), c60 (only an eGFR of 22 from 2024); c15 (eGFR 18) and c55
(creatinine 6.5 mg/dL) are the controls, whose cards must not change. Variants are built from c60."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from service.cli import main

CASES = Path(__file__).parent / "data" / "review5"


def load(stem: str) -> dict:
    (path,) = CASES.glob(f"{stem}-*.json")
    return json.loads(path.read_text())


def run(request: dict, capsys, tmp_path) -> list[dict]:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def rules(cards) -> list[tuple[str, str]]:
    return [(c["indicator"], c["source"]["topic"]["code"]) for c in cards]


def renal(cards) -> dict:
    found = [c for c in cards if c["source"]["topic"]["code"] == "renal-impairment"]
    assert len(found) == 1, [c["summary"] for c in cards]
    return found[0]


def summary_of(cards, code) -> str:
    return next(c["summary"] for c in cards if c["source"]["topic"]["code"] == code)


# ---------------------------------------------------------------------------------------------- the reviewer's cases

def test_c16_esrd_on_dialysis_snomed_without_egfr_is_renal_impairment(capsys, tmp_path):
    cards = run(load("c16"), capsys, tmp_path)
    assert rules(cards) == [("warning", "renal-impairment"), ("info", "dose-new-start")]
    card = renal(cards)
    assert card["summary"] == ("Azathioprine with renal impairment (End stage renal disease on dialysis): "
                               "use lower doses, monitor CBC")
    detail = card["detail"]
    assert "Diagnosis on record: End stage renal disease on dialysis (SNOMED CT 236435004)" in detail
    assert "GFR below 30" in detail and "KDIGO 2024" in detail
    assert "the FDA label advises lower doses" in detail
    assert any("KDIGO 2024" in link["label"] for link in card["links"])  # the stage definition is cited


def test_c54_icd10_n18_6_and_z99_2_without_egfr_is_renal_impairment(capsys, tmp_path):
    cards = run(load("c54"), capsys, tmp_path)
    assert rules(cards) == [("warning", "renal-impairment"), ("info", "dose-new-start")]
    card = renal(cards)
    assert card["summary"].startswith("Azathioprine with renal impairment (End stage renal disease)")
    assert "End stage renal disease (ICD-10-CM N18.6)" in card["detail"]
    assert "also Dependence on renal dialysis (ICD-10-CM Z99.2)" in card["detail"]


def test_c60_only_an_old_egfr_of_22_is_said_with_its_date(capsys, tmp_path):
    cards = run(load("c60"), capsys, tmp_path)
    assert rules(cards) == [("warning", "renal-impairment"), ("info", "dose-new-start")]
    card = renal(cards)
    assert card["summary"] == ("Azathioprine with renal impairment (last eGFR 22, 2024-01-10): "
                               "use lower doses, check a current eGFR")
    detail = card["detail"]
    assert detail.startswith("Last eGFR 22 mL/min/1.73m² (2024-01-10)")
    assert "older than the 90 days" in detail and "no newer eGFR or serum creatinine" in detail


@pytest.mark.parametrize("stem", ["c16", "c54", "c60"])
def test_the_dose_advice_is_the_same_as_for_a_current_low_egfr(stem, capsys, tmp_path):
    """One order, one dose: the renal card adds no figure (the label gives none); the start-dose card is the one
    the eGFR-18 control (c15) gets."""
    control = run(load("c15"), capsys, tmp_path)
    cards = run(load(stem), capsys, tmp_path)
    assert summary_of(cards, "dose-new-start") == summary_of(control, "dose-new-start")
    assert "use lower doses" in renal(cards)["summary"]


def test_controls_c15_and_c55_are_unchanged(capsys, tmp_path):
    c15 = run(load("c15"), capsys, tmp_path)
    assert rules(c15) == [("warning", "renal-impairment"), ("info", "dose-new-start")]
    assert renal(c15)["summary"] == "Azathioprine with renal impairment (eGFR 18): use lower doses, monitor CBC"
    assert renal(c15)["detail"].startswith("eGFR 18 mL/min/1.73m² (2026-12-01). Patients with renal impairment")
    c55 = run(load("c55"), capsys, tmp_path)
    assert [r for r in rules(c55)][0] == ("warning", "renal-impairment")
    assert renal(c55)["summary"] == ("Azathioprine with renal impairment (eGFR 6 from creatinine): "
                                     "use lower doses, monitor CBC")
    assert "Diagnosis on record" not in renal(c55)["detail"] and "Last eGFR" not in renal(c55)["detail"]


# --------------------------------------------------------------------------------------- variants built from c60

def _labs(request: dict) -> list:
    return request["prefetch"]["labs"]["entry"]


def _egfr_entry(request: dict) -> dict:
    return next(e for e in _labs(request) if e["resource"]["code"]["coding"][0]["code"] == "62238-1")


def _with_egfr(value: float, when: str, *, keep_old: bool = False) -> dict:
    request = load("c60")
    entry = copy.deepcopy(_egfr_entry(request))
    entry["resource"].update(id=f"g-{when}", effectiveDateTime=when)
    entry["resource"]["valueQuantity"]["value"] = value
    if not keep_old:
        _labs(request).remove(_egfr_entry(request))
    _labs(request).append(entry)
    return request


def _without_egfr() -> dict:
    request = load("c60")
    _labs(request).remove(_egfr_entry(request))
    return request


def _condition(system: str, code: str, display: str, status: str = "active") -> dict:
    return {"resource": {"resourceType": "Condition", "id": f"c-{code}", "subject": {"reference": "Patient/pt-1"},
                         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                        "code": status}]},
                         "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display}}}


SNOMED, ICD10CM = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"


def test_a_normal_recent_egfr_and_no_diagnosis_gives_no_renal_card(capsys, tmp_path):
    cards = run(_with_egfr(75, "2026-12-01"), capsys, tmp_path)
    assert "renal-impairment" not in [code for _, code in rules(cards)]


def test_a_newer_normal_egfr_outweighs_an_old_low_one(capsys, tmp_path):
    cards = run(_with_egfr(75, "2026-12-01", keep_old=True), capsys, tmp_path)
    assert "renal-impairment" not in [code for _, code in rules(cards)]


def test_an_old_normal_egfr_gives_no_card(capsys, tmp_path):
    cards = run(_with_egfr(75, "2024-01-10"), capsys, tmp_path)
    assert "renal-impairment" not in [code for _, code in rules(cards)]


def test_an_old_creatinine_alone_is_computed_and_said_with_its_date(capsys, tmp_path):
    request = _without_egfr()
    _labs(request).append({"resource": {
        "resourceType": "Observation", "id": "cr-old", "status": "final", "subject": {"reference": "Patient/pt-1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}, "effectiveDateTime": "2025-02-01",
        "valueQuantity": {"value": 4.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}})
    card = renal(run(request, capsys, tmp_path))
    assert card["summary"].startswith("Azathioprine with renal impairment (last eGFR ")
    assert "from creatinine, 2025-02-01" in card["summary"]
    assert "This is the last creatinine on record" in card["detail"]
    assert "CKD-EPI 2021" in card["detail"]


@pytest.mark.parametrize("system,code,display", [
    (ICD10CM, "N18.4", "Chronic kidney disease, stage 4 (severe)"),
    (ICD10CM, "N18.5", "Chronic kidney disease, stage 5"),
    (ICD10CM, "Z99.2", "Dependence on renal dialysis"),
    (ICD10CM, "Z49.31", "Encounter for adequacy testing for hemodialysis"),
    (ICD10CM, "I12.0", "Hypertensive chronic kidney disease with stage 5 chronic kidney disease or end stage renal disease"),
    (SNOMED, "46177005", "End-stage renal disease"),
    (SNOMED, "431857002", "Chronic kidney disease stage 4"),
    (SNOMED, "433146000", "Chronic kidney disease stage 5"),
    (SNOMED, "714152005", "Chronic kidney disease stage 5 on dialysis"),
    (SNOMED, "105502003", "Dependence on renal dialysis"),
])
def test_each_kidney_failure_code_is_renal_impairment(system, code, display, capsys, tmp_path):
    request = _without_egfr()
    request["prefetch"]["conditions"]["entry"].append(_condition(system, code, display))
    card = renal(run(request, capsys, tmp_path))
    assert code in card["detail"] and display in card["detail"]


@pytest.mark.parametrize("system,code,display,status", [
    (ICD10CM, "N18.32", "Chronic kidney disease, stage 3b", "active"),       # GFR 30-44: above the cut-off
    (ICD10CM, "N18.9", "Chronic kidney disease, unspecified", "active"),     # no stage: no GFR implied
    (SNOMED, "714153000", "Chronic kidney disease stage 5 with transplant", "active"),  # a graft: the eGFR decides
    (ICD10CM, "Z94.0", "Kidney transplant status", "active"),
    (ICD10CM, "N18.6", "End stage renal disease", "resolved"),               # not active: not read
])
def test_codes_that_do_not_imply_a_low_gfr_give_no_card(system, code, display, status, capsys, tmp_path):
    request = _without_egfr()
    request["prefetch"]["conditions"]["entry"].append(_condition(system, code, display, status))
    assert "renal-impairment" not in [c for _, c in rules(run(request, capsys, tmp_path))]


def test_a_diagnosis_beside_a_current_egfr_that_is_not_low_says_both(capsys, tmp_path):
    request = _with_egfr(45, "2026-12-01")
    request["prefetch"]["conditions"]["entry"].append(_condition(ICD10CM, "N18.6", "End stage renal disease"))
    card = renal(run(request, capsys, tmp_path))
    assert "End stage renal disease (ICD-10-CM N18.6)" in card["detail"]
    assert "The latest eGFR, 45 mL/min/1.73m² (2026-12-01), is not below 30" in card["detail"]
    assert "on dialysis an eGFR does not measure kidney function; confirm the diagnosis is current" in card["detail"]


def test_a_current_low_egfr_and_a_diagnosis_name_the_egfr_first(capsys, tmp_path):
    request = load("c15")
    request["prefetch"]["conditions"]["entry"].append(_condition(ICD10CM, "N18.4", "Chronic kidney disease, stage 4 (severe)"))
    card = renal(run(request, capsys, tmp_path))
    assert card["summary"] == "Azathioprine with renal impairment (eGFR 18): use lower doses, monitor CBC"
    assert "; diagnosis on record: Chronic kidney disease, stage 4 (severe) (ICD-10-CM N18.4)" in card["detail"]
