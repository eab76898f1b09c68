"""Round-7 review M2: a count sent as a number without a unit ("<0.5", "0,8") is read as an upper bound.

Every unit a blood count is read in (codes.toml, lab_units.toml: ×10⁹/L, 10³/µL, G/L, /µL, /mm³) converts to
×10⁹/L by a factor of at most 1, so the number is the most the count can be, whatever unit the laboratory meant:
enough to show a low count (severe: CTCAE v5; low: BSR/BHPR 2017), never a normal one. Haemoglobin (g/L, g/dL,
mmol/L: factors up to 16) and a ">" limit give no useful bound.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tests.review_cases import case_cards


CASES = Path(__file__).resolve().parent / "data" / "review7"


def _request(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request)


def _topic(cards: list[dict], code: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == code]


def _neutrophils(request: dict) -> dict:
    for value in request["prefetch"].values():
        for e in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            r = e.get("resource", {})
            if r.get("resourceType") == "Observation" and "751-8" in json.dumps(r.get("code")):
                return r
    raise AssertionError("no neutrophil result in the case")


def test_c32_unitless_text_below_the_severe_threshold_stops():
    cards = _cards(_request("c32-neut-string-unreadable"))
    severe = _topic(cards, "cytopenia-severe")
    assert severe and severe[0]["indicator"] == "critical", [c["summary"] for c in cards]
    assert "'<0.5' as reported (no unit: at most 0.5 ×10⁹/L in any unit it is reported in)" in severe[0]["detail"]
    assert not _topic(cards, "dose-new-start")  # the stop supersedes a start regimen: one order, one answer
    # round-11 m6: the bound the card rests on and quotes (with "no unit") is not named again as unread
    assert not _topic(cards, "data-incomplete"), [c["summary"] for c in cards]


def test_the_control_with_a_unit_is_unchanged():
    cards = _cards(_request("c51-neut-comparator-lt0.5"))
    assert _topic(cards, "cytopenia-severe") and not _topic(cards, "data-incomplete")


@pytest.mark.parametrize(("sent", "severe", "low"), [
    ("0,8", True, False),      # decimal comma, no unit
    ("1.2", False, True),      # below BSR's 1.6: withhold
    ("3.5", False, False),     # could be normal or far lower (per µL): no conclusion, the gap says so
    (">0.5", False, False),    # a lower limit bounds nothing from above
])
def test_a_unitless_neutrophil_count_concludes_low_never_normal(sent, severe, low):
    request = copy.deepcopy(_request("c32-neut-string-unreadable"))
    _neutrophils(request)["valueString"] = sent
    cards = _cards(request)
    assert bool(_topic(cards, "cytopenia-severe")) is severe, [c["summary"] for c in cards]
    assert bool(_topic(cards, "cytopenia")) is low, [c["summary"] for c in cards]
    # never silently taken as a value: a card quotes it as sent with its bound ("no unit: at most ..."), or, when
    # no card could use it, the data-incomplete card names it (round-11 m6: not both)
    assert bool(_topic(cards, "data-incomplete")) is not (severe or low), [c["summary"] for c in cards]
    used = _topic(cards, "cytopenia-severe") + _topic(cards, "cytopenia")
    assert all(f"'{sent}' as reported (no unit" in c["detail"] for c in used)


def test_unitless_haemoglobin_gives_no_bound():
    """A haemoglobin of "9" could be 9 g/dL (90 g/L) or 9 mmol/L (145 g/L): no low conclusion from it."""
    from fhir_mappers.terminology import terminology

    hb = terminology().analytes["hemoglobin"]
    assert max(hb.factors.values()) > 10  # 9 without a unit is at most 145 g/L: not below any anaemia threshold


# ---------------------------------------------------------------- M1: the label's two forms of the starting dose


def _mp_order(request: dict) -> dict:
    return next(e["resource"] for e in request["context"]["draftOrders"]["entry"]
                if e["resource"]["resourceType"] == "MedicationRequest")


def _set_daily_mg(request: dict, mg: float) -> None:
    dosage = _mp_order(request)["dosageInstruction"][0]
    dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": "mg", "system": "http://unitsofmeasure.org",
                                               "code": "mg"}}]
    dosage["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    dosage.pop("text", None)


def test_c11_a_start_within_the_labels_mg_per_kg_form_is_not_cut():
    """Purixan 2.1: "1.5 to 2.5 mg/kg (50 to 75 mg/m2)"; 150 mg at 70 kg is 2.14 mg/kg (81.3 mg/m2 at 1.84 m2)."""
    cards = _cards(_request("c11-all-maint-mp-75mgm2-adult"))
    assert not _topic(cards, "dose-above-range"), [c["summary"] for c in cards]


def test_a_start_above_both_forms_is_still_cut():
    request = copy.deepcopy(_request("c11-all-maint-mp-75mgm2-adult"))
    _set_daily_mg(request, 200)  # 2.86 mg/kg, 108.7 mg/m2
    above = _topic(_cards(request), "dose-above-range")
    assert above and "mg/m²" in above[0]["summary"]


# ---------------------------------------------------------------- m3: count units as US laboratories print them


@pytest.mark.parametrize("printed", ["K/mm3", "10E3/mm3", "k/cmm", "K/cumm"])
def test_thousand_per_cubic_millimetre_printings_are_read_as_10e9_per_litre(printed):
    from fhir_mappers.observations import UnitReader
    from fhir_mappers.terminology import terminology

    for analyte in ("wbc", "neutrophils", "platelets"):
        assert UnitReader()(terminology().analytes[analyte], printed) == (1.0, "10*9/L")
