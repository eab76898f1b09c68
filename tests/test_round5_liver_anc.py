"""Round-5 review, H1 and H5: total bilirubin and alkaline phosphatase are judged by the liver-test rule (with the
Hy's law pattern as the severe card), and a differential sent only as a neutrophil percentage gives a calculated
absolute count (or, when it cannot be calculated, a data gap). Built from the reviewer's case files
(tests/data/review5, copied from the round-5 cases)."""
from __future__ import annotations

import copy

import pytest
import json
from pathlib import Path
from tests.review_cases import case_cards


CASES = Path(__file__).resolve().parent / "data" / "review5"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request)


def _topic(cards: list[dict], code: str) -> list[dict]:
    return [c for c in cards if c["source"]["topic"]["code"] == code]


def _labs(request: dict) -> list[dict]:
    return [e["resource"] for e in request["prefetch"]["labs"]["entry"]]


def _lab(request: dict, loinc: str) -> dict:
    return next(r for r in _labs(request) if r["code"]["coding"][0]["code"] == loinc)


def _drop(request: dict, loinc: str) -> None:
    request["prefetch"]["labs"]["entry"] = [e for e in request["prefetch"]["labs"]["entry"]
                                            if e["resource"]["code"]["coding"][0]["code"] != loinc]


# ------------------------------------------------------------------------------------------------ H1: liver


def test_c31_hys_law_pattern_names_bilirubin_and_alp_and_stops():
    """ALT 320, AST 280, bilirubin 68 umol/L (3.2 x the default 21), ALP 400: every abnormal analyte is named with
    its value, and the transaminase + bilirubin rise is the severe card (critical, stop)."""
    cards = _cards(_case("c31-liver-bili-umol-alt-high"))
    liver = _topic(cards, "liver-tests")
    assert len(liver) == 1, [c["summary"] for c in cards]
    card = liver[0]
    assert card["indicator"] == "critical"
    for quoted in ("ALT 320 U/L", "AST 280 U/L", "bilirubin 68 µmol/L", "ALP 400 U/L", "Hy's law"):
        assert quoted in card["summary"], card["summary"]
    assert "stop" in card["summary"]
    assert "3.2 × the upper limit 21 µmol/L" in card["detail"]
    assert "Pathology Harmony 2011" in card["detail"]  # the default upper limit is named as a default


def test_c35_bilirubin_4_mg_dl_alone_is_a_liver_card_quoting_the_value_as_sent():
    cards = _cards(_case("c35-bilirubin-mgdl-4"))
    liver = _topic(cards, "liver-tests")
    assert len(liver) == 1, [c["summary"] for c in cards]
    assert liver[0]["indicator"] == "warning"  # bilirubin alone, ALT normal: not the Hy's law pattern
    assert "bilirubin 4 mg/dL (68 µmol/L)" in liver[0]["summary"]
    assert "withhold" in liver[0]["summary"]
    assert "ALT" not in liver[0]["summary"]  # a normal ALT is not named as abnormal


def test_c88_alp_600_flag_hh_is_a_liver_card():
    cards = _cards(_case("c88-alp-600-bili-normal-alt-normal"))
    liver = _topic(cards, "liver-tests")
    assert len(liver) == 1, [c["summary"] for c in cards]
    assert liver[0]["indicator"] == "warning"
    assert "ALP 600 U/L" in liver[0]["summary"]
    assert "4.6 × the upper limit 130 U/L" in liver[0]["detail"]


def test_alp_in_microkatal_is_converted_and_quoted_as_sent():
    request = _case("c88-alp-600-bili-normal-alt-normal")
    alp = _lab(request, "6768-6")
    alp["valueQuantity"] = {"value": 10, "unit": "ukat/L", "system": "http://unitsofmeasure.org", "code": "ukat/L"}
    alp.pop("interpretation", None)
    liver = _topic(_cards(request), "liver-tests")
    assert liver and "ALP 10 ukat/L (600 U/L)" in liver[0]["summary"]


def test_the_laboratorys_upper_limit_decides_when_it_is_sent():
    """4.0 mg/dL against a laboratory limit of 3.0 mg/dL is 1.33 x: below the CTCAE grade-2 cut (1.5 x)."""
    request = _case("c35-bilirubin-mgdl-4")
    bili = _lab(request, "1975-2")
    bili["referenceRange"] = [{"high": {"value": 3.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                        "code": "mg/dL"}}]
    assert not _topic(_cards(request), "liver-tests")
    bili["referenceRange"][0]["high"]["value"] = 2.0  # 2 x the laboratory's limit
    liver = _topic(_cards(request), "liver-tests")
    assert liver and "2 × the upper limit" in liver[0]["detail"] and "default" not in liver[0]["detail"]


def test_a_mild_bilirubin_rise_is_not_a_card():
    request = _case("c35-bilirubin-mgdl-4")
    bili = _lab(request, "1975-2")
    bili["valueQuantity"]["value"] = 1.7  # 29 umol/L: 1.4 x the default 21 umol/L
    bili.pop("interpretation", None)
    assert not _topic(_cards(request), "liver-tests")


def test_c11_aih_start_alt_95_bilirubin_24_gives_no_stop_card():
    cards = _cards(_case("c11-aih-aza-1mgkg-bili-umol"))
    assert not any(c["indicator"] == "critical" for c in cards), [c["summary"] for c in cards]
    assert not _topic(cards, "liver-tests")


def test_hys_pattern_in_autoimmune_hepatitis_on_treatment_is_a_warning_not_a_stop():
    """AIH on treatment (c31's liver results, indication AIH): the rise may be a relapse; the card names the
    bilirubin and asks for urgent hepatology review, it does not cancel the order."""
    request = _case("c31-liver-bili-umol-alt-high")
    cond = request["prefetch"]["conditions"]["entry"][0]["resource"]
    cond["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "408335007",
                                "display": "Autoimmune hepatitis"}], "text": "Autoimmune hepatitis"}
    cards = _cards(request)
    liver = _topic(cards, "liver-tests")
    assert liver and liver[0]["indicator"] == "warning", [c["summary"] for c in cards]
    assert "bilirubin 68 µmol/L" in liver[0]["summary"] and "autoimmune hepatitis" in liver[0]["summary"]
    assert not liver[0].get("suggestions")


# --------------------------------------------------------------------------------------------------- H5: ANC


def test_c97_anc_is_calculated_from_wbc_and_percentage_and_is_severe():
    cards = _cards(_case("c97-neutrophil-percent-only-anc-0-8"))
    severe = _topic(cards, "cytopenia-severe")
    assert severe and severe[0]["indicator"] == "critical", [c["summary"] for c in cards]
    assert "neutrophils 0.8 ×10⁹/L (calculated: white cells 4 ×10⁹/L × 20 % neutrophils" in severe[0]["detail"]
    assert not _topic(cards, "data-incomplete")


def test_a_percentage_from_another_sample_time_is_not_multiplied_but_named_as_a_gap():
    request = _case("c97-neutrophil-percent-only-anc-0-8")
    _lab(request, "770-8")["effectiveDateTime"] = "2026-12-02"
    cards = _cards(request)
    assert not _topic(cards, "cytopenia-severe")
    gap = _topic(cards, "data-incomplete")
    assert gap and gap[0]["indicator"] == "warning", [c["summary"] for c in cards]
    assert "absolute neutrophil count" in gap[0]["summary"] + gap[0]["detail"]
    assert "20 %" in gap[0]["summary"] and "flagged L" in gap[0]["detail"]


def test_a_cbc_without_a_differential_and_a_normal_white_count_says_nothing_of_neutrophils():
    """A CBC ordered without a differential is common; with a white cell count that is not low nothing was sent
    that could not be read, and a gap card on every such record would be noise (the cytopenia rule judges WBC)."""
    request = _case("c97-neutrophil-percent-only-anc-0-8")
    _drop(request, "770-8")
    cards = _cards(request)
    assert not _topic(cards, "data-incomplete") and not _topic(cards, "cytopenia-severe"), [c["summary"] for c in cards]


@pytest.mark.parametrize("flag", ["L", None])
def test_a_low_white_count_without_any_neutrophil_count_is_a_data_gap(flag):
    request = _case("c97-neutrophil-percent-only-anc-0-8")
    _drop(request, "770-8")
    wbc = _lab(request, "6690-2")
    wbc["valueQuantity"]["value"] = 3.2
    wbc["referenceRange"] = [{"low": {"value": 4.0 if flag is None else 3.0, "unit": wbc["valueQuantity"].get("unit")}}]
    wbc.pop("interpretation", None)
    if flag:
        wbc["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                              "code": flag}]}]
    gap = _topic(_cards(request), "data-incomplete")
    assert gap and "absolute neutrophil count" in gap[0]["summary"] + gap[0]["detail"]
    assert "low white cell count" in gap[0]["detail"]


def test_an_absolute_count_sent_wins_over_the_percentage():
    request = _case("c97-neutrophil-percent-only-anc-0-8")
    anc = copy.deepcopy(_lab(request, "6690-2"))
    anc["id"] = "anc"
    anc["code"] = {"coding": [{"system": "http://loinc.org", "code": "751-8"}]}
    anc["valueQuantity"]["value"] = 2.5
    request["prefetch"]["labs"]["entry"].append({"resource": anc})
    cards = _cards(request)
    assert not _topic(cards, "cytopenia-severe") and not _topic(cards, "data-incomplete"), \
        [c["summary"] for c in cards]
