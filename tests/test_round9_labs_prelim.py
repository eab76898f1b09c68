"""Value tests for the round-9 review: H3 (haemoglobin under LOINC codes other than 718-7 / 59260-0 dropped
silently), M5 (a poor-metabolizer card resting on a FINAL result headed "PRELIMINARY result") and M1 (no
open-course note for a first thioguanine order in AML with no end date). The cases are the reviewer's request
files, unchanged (tests/data/review9/), evaluated on 2026-12-07; variants are derived from them in the tests."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhir_mappers.observations import measurements
from hooks.prefetch import PREFETCH
from service.cli import main

CASES = Path(__file__).parent / "data" / "review9"


def load(stem: str) -> dict:
    (path,) = CASES.glob(f"{stem}-*.json")
    return json.loads(path.read_text())


def run(request: dict, monkeypatch, capsys, tmp_path) -> list[dict]:
    monkeypatch.setenv("AZA_CDS_GUIDELINE", "cpic")
    path = tmp_path / "case.json"
    path.write_text(json.dumps(request))
    assert main(["check", "--json", "--today", "2026-12-07", str(path)]) == 0
    return json.loads(capsys.readouterr().out)["cards"]


def code(card: dict) -> str:
    return card["source"]["topic"]["code"]


def by_code(cards: list[dict], rule: str) -> list[dict]:
    return [c for c in cards if code(c) == rule]


# ------------------------------------------------------------------ H3: haemoglobin under other LOINC codes

@pytest.mark.parametrize(("stem", "value"), [("c60", 71), ("c92", 70), ("c93", 70), ("c69", 71)])
def test_haemoglobin_under_venous_arterial_calculated_codes_is_read(stem, value, monkeypatch, capsys, tmp_path):
    # c60 30350-3 venous, c92 30313-1 arterial, c93 20509-6 calculated, c69 718-7 (control): Hb < 80 g/L (CTCAE
    # grade 3) is the same severe cytopenia under each code
    (card,) = by_code(run(load(stem), monkeypatch, capsys, tmp_path), "cytopenia-severe")
    assert card["indicator"] == "critical"
    assert f"haemoglobin {value} g/L" in card["summary"]


def _hb_obs(loinc: str, display: str | None, value: float = 7.1, unit: str = "g/dL") -> dict:
    coding = {"system": "http://loinc.org", "code": loinc, **({"display": display} if display else {})}
    return {"resourceType": "Observation", "id": "x", "status": "final", "code": {"coding": [coding]},
            "effectiveDateTime": "2026-12-06", "valueQuantity": {"value": value, "unit": unit}}


@pytest.mark.parametrize("loinc", ["30350-3", "30313-1", "30351-1", "30352-9", "20509-6", "55782-7", "14775-1"])
def test_each_listed_haemoglobin_mass_code_is_read_in_g_per_l(loinc):
    gaps: list = []
    labs = measurements([_hb_obs(loinc, None)], gaps)
    assert [m.value for m in labs["hemoglobin"]] == [pytest.approx(71.0)] and not gaps


def test_molar_arterial_haemoglobin_converts_by_its_unit():
    gaps: list = []
    labs = measurements([_hb_obs("75928-2", None, 4.4, "mmol/L")], gaps)
    assert labs["hemoglobin"][0].value == pytest.approx(4.4 * 16.114) and not gaps


def test_a_haemoglobin_in_an_unknown_unit_is_a_gap_not_a_value():
    gaps: list = []
    assert not measurements([_hb_obs("30350-3", None, 7.1, "g%")], gaps).get("hemoglobin")
    assert gaps


def test_an_unlisted_loinc_code_named_haemoglobin_is_named_as_unread(monkeypatch, capsys, tmp_path):
    # the class: a LOINC code not in the list whose display IS a judged analyte is never dropped silently
    request = copy.deepcopy(load("c60"))
    for e in request["prefetch"]["labs"]["entry"]:
        c = e["resource"]["code"]["coding"][0]
        if c["code"] == "30350-3":
            c.update(code="76768-1", display="Hemoglobin [Mass/volume] in Mixed venous blood by Oximetry")
    cards = run(request, monkeypatch, capsys, tmp_path)
    (gap,) = by_code(cards, "data-incomplete")
    assert "haemoglobin '7.1 g/dL' could not be read" in gap["summary"]
    assert "LOINC 76768-1" in gap["detail"] and "Mixed venous blood by Oximetry" in gap["detail"]


@pytest.mark.parametrize(("display", "named"), [
    ("Hemoglobin [Mass/volume] in Venous blood", True),
    ("Hb (venous POC)", True),
    ("Leukocytes [#/volume] in Blood by Estimate", True),
    ("Alanine aminotransferase [Enzymatic activity/volume] in Blood", True),
    # other analytes with a LOINC code of their own: not named (no noise on a usual panel)
    ("Lymphocytes/100 leukocytes in Blood by Automated count", False),
    ("Hemoglobin A1c/Hemoglobin.total in Blood", False),
    ("Hemoglobin F [Mass/volume] in Blood", False),
    ("Bilirubin.direct [Mass/volume] in Serum or Plasma", False),
    ("Band form neutrophils [#/volume] in Blood by Manual count", False),
    ("Platelet mean volume [Entire volume] in Blood by Automated count", False),
    ("Creatinine [Mass/volume] in Body fluid", False),
    ("Hemoglobin [Mass/volume] in Urine", False),
    ("Hemoglobin [Presence] in Stool", False),
])
def test_which_loinc_coded_names_are_named_as_unread(display, named):
    gaps: list = []
    measurements([_hb_obs("00000-0", display)], gaps)
    assert bool(gaps) is named


def test_the_labs_prefetch_asks_for_the_new_codes():
    for loinc in ("30350-3", "30313-1", "20509-6", "30352-9", "33256-9"):
        assert f"http://loinc.org|{loinc}" in PREFETCH["labs"]


# ------------------------------------------------------------------ M5: PRELIMINARY only on the deciding result

@pytest.mark.parametrize("stem", ["c88", "c91"])
def test_a_poor_metabolizer_on_a_final_result_is_not_headed_preliminary(stem, monkeypatch, capsys, tmp_path):
    (card,) = by_code(run(load(stem), monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert card["indicator"] == "critical"
    assert "PRELIMINARY" not in card["summary"] and card["summary"].startswith("Azathioprine: TPMT poor metabolizer")


def test_an_older_preliminary_superseded_by_a_final_result_is_not_to_be_confirmed(monkeypatch, capsys, tmp_path):
    (card,) = by_code(run(load("c88"), monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert "TPMT result (2025-01-10) is PRELIMINARY" not in card["detail"]
    assert "*1/*1 → normal metabolizer (2025-01-10) [PRELIMINARY result]" in card["detail"]  # still shown as such


def test_the_other_genes_preliminary_result_is_still_named_in_the_detail(monkeypatch, capsys, tmp_path):
    (card,) = by_code(run(load("c91"), monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert "NUDT15 result (2025-01-10) is PRELIMINARY" in card["detail"]


def test_a_poor_metabolizer_on_a_preliminary_result_keeps_the_prefix(monkeypatch, capsys, tmp_path):
    (card,) = by_code(run(load("c65"), monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert card["summary"].startswith("PRELIMINARY result: ")


def test_a_final_poor_result_with_the_final_result_preliminary_again_is_preliminary(monkeypatch, capsys, tmp_path):
    # c88 with its deciding *3A/*3A made preliminary too: now the finding rests on a preliminary result
    request = copy.deepcopy(load("c88"))
    for e in request["prefetch"]["pgx"]["entry"]:
        if "*3A/*3A" in json.dumps(e["resource"]):
            e["resource"]["status"] = "preliminary"
    (card,) = by_code(run(request, monkeypatch, capsys, tmp_path), "pgx-poor-metabolizer")
    assert card["summary"].startswith("PRELIMINARY result: ")


# ------------------------------------------------------------------ M1: thioguanine open course in AML

@pytest.mark.parametrize(("stem", "indication"), [("c38", "acute myeloid leukaemia"),
                                                  ("c36", "acute lymphoblastic leukaemia")])
def test_a_first_thioguanine_order_with_no_end_date_gets_the_open_course_note(stem, indication, monkeypatch, capsys,
                                                                               tmp_path):
    cards = run(load(stem), monkeypatch, capsys, tmp_path)
    (card,) = by_code(cards, "thioguanine-open-course")
    assert card["indicator"] == "info" and indication in card["summary"]
    assert "long-term continuous use not recommended (Tabloid)" in card["summary"]
    assert not by_code(cards, "thioguanine-liver-toxicity")


def test_a_first_aml_order_giving_its_duration_gets_no_note(monkeypatch, capsys, tmp_path):
    request = copy.deepcopy(load("c38"))
    for e in request["context"]["draftOrders"]["entry"]:
        r = e["resource"]
        if r.get("resourceType") == "MedicationRequest":
            r["dosageInstruction"][0].setdefault("timing", {}).setdefault("repeat", {})["boundsDuration"] = {
                "value": 28, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}
    cards = run(request, monkeypatch, capsys, tmp_path)
    assert not by_code(cards, "thioguanine-open-course") and not by_code(cards, "thioguanine-liver-toxicity")
