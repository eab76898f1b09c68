"""Round-15 black-box review, M5 and m5 (cases in tests/data/review15, written by the reviewer).

M5: co-trimoxazole in acute lymphoblastic leukaemia was lowered to an info card ("Pneumocystis prophylaxis ... is
standard, so the combination is expected") whatever its dose, also at treatment doses (1 or 2 DS tablets three times
a day, f06 / f02). The info now needs a prophylactic order (Bactrim label: at most 160 mg trimethoprim a day, for a
child also at most 150 mg/m2/day); a higher dose, a dose that cannot be read, or a child's dose with no body surface
area keeps the label's warning and says why.

m5: an ALL patient's merged summary offered "alternative or drastically reduced dose" (wording for non-malignant
conditions) when the order already follows the malignancy regimen.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

from fhir_mappers.medications import medication_fact
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review15"
COTRIM = "interaction-cotrimoxazole"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _resources(x: object) -> Iterator[dict]:
    if isinstance(x, dict):
        if "resourceType" in x:
            yield x
        for v in x.values():
            yield from _resources(v)
    elif isinstance(x, list):
        for v in x:
            yield from _resources(v)


def _cotrim_orders(request: dict) -> list[dict]:
    return [r for r in _resources(request) if r.get("resourceType") == "MedicationRequest"
            and "trimethoprim" in json.dumps(r.get("medicationCodeableConcept", {})).lower()]


def _observations(request: dict, loinc: str) -> list[dict]:
    return [r for r in _resources(request) if r.get("resourceType") == "Observation"
            and any(c.get("code") == loinc for c in r.get("code", {}).get("coding", []))]


def _cotrim_card(request: dict) -> dict:
    cards = [c for c in case_cards(request) if c["source"]["topic"]["code"] == COTRIM
             or COTRIM in c["extension"]["azathioprine-cds"].get("mergedRuleIds", [])]
    assert len(cards) == 1, [c["summary"] for c in cards]
    return cards[0]


def _daily(request: dict, frequency: int = 1, tablets: float = 1) -> dict:
    """The co-trimoxazole order(s) as ``tablets`` DS tablet(s) ``frequency`` times every day."""
    for r in _cotrim_orders(request):
        r["dosageInstruction"] = [{"timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "{tbl}",
                                                                     "system": "http://unitsofmeasure.org",
                                                                     "code": "{tbl}"}}]}]
    return request


# ---------------------------------------------------------------- M5: treatment doses keep the warning


def test_f02_two_ds_tablets_three_times_a_day_in_all_is_a_warning_naming_the_dose() -> None:
    card = _cotrim_card(_case("f02_cotrim_treatment_all"))
    assert card["indicator"] == "warning"
    assert "not a prophylactic regimen" in card["detail"]
    assert "960 mg trimethoprim a day" in card["detail"]
    assert "so the combination is expected" not in card["detail"]
    assert any("Bactrim" in link.get("label", "") or "Bactrim" in card["detail"] for link in [card["source"]])


def test_f06_one_ds_tablet_three_times_a_day_in_all_is_a_warning() -> None:
    card = _cotrim_card(_case("f06_cotrim_treatment_dose_ibd_vs_all"))
    assert card["indicator"] == "warning"
    assert "480 mg trimethoprim a day" in card["detail"]
    assert "at most 160 mg a day" in card["detail"]


def test_prophylaxis_in_all_stays_info_both_directions() -> None:
    for name in ("f01_cotrim_ppx_all", "f05_cotrim_all_icd10"):  # 1 DS Mon/Wed/Fri; child with height and weight
        card = _cotrim_card(_case(name))
        assert card["indicator"] == "info", name
        assert "so the combination is expected" in card["detail"]


def test_outside_all_the_warning_is_unchanged_and_does_not_speak_of_prophylaxis() -> None:
    for name in ("f03_cotrim_aml_tg", "f04_cotrim_ibd_mp"):
        card = _cotrim_card(_case(name))
        assert card["indicator"] == "warning", name
        assert "prophyla" not in card["detail"], name


def test_a_child_with_no_height_keeps_the_warning_and_says_the_dose_could_not_be_compared() -> None:
    request = _case("f01_cotrim_ppx_all")
    for obs in _observations(request, "8302-2"):
        obs["code"]["coding"] = [{"system": "http://loinc.org", "code": "9999-9", "display": "something else"}]
    card = _cotrim_card(request)
    assert card["indicator"] == "warning"
    assert "could not be compared with the prophylactic 150 mg/m²/day" in card["detail"]


def test_a_small_child_on_one_ds_tablet_daily_is_above_150_mg_per_m2() -> None:
    request = _daily(_case("f01_cotrim_ppx_all"))  # 160 mg/day: within the daily ceiling
    for obs in _observations(request, "29463-7"):
        obs["valueQuantity"]["value"] = 10
    for obs in _observations(request, "8302-2"):
        obs["valueQuantity"]["value"] = 80  # BSA sqrt(80 x 10 / 3600) = 0.47 m2: 340 mg/m2/day
    card = _cotrim_card(request)
    assert card["indicator"] == "warning"
    assert "mg/m²/day for a body surface area of 0.47 m²" in card["detail"]


def test_an_adult_with_all_on_one_ds_tablet_daily_is_prophylaxis() -> None:
    request = _daily(_case("f05_cotrim_all_icd10"))
    for r in _resources(request):
        if r.get("resourceType") == "Patient":
            r["birthDate"] = "1980-01-01"
    assert _cotrim_card(request)["indicator"] == "info"


def test_an_unreadable_co_trimoxazole_dose_keeps_the_warning() -> None:
    request = _case("f01_cotrim_ppx_all")
    for r in _cotrim_orders(request):  # no RxNorm code, no strength named: tablets cannot be made mg
        r["medicationCodeableConcept"] = {"text": "co-trimoxazole double strength tablet"}
    card = _cotrim_card(request)
    assert card["indicator"] == "warning"
    assert "its dose could not be read" in card["detail"]


def test_co_trimoxazole_tablets_are_read_as_their_trimethoprim() -> None:
    order = _cotrim_orders(_case("f02_cotrim_treatment_all"))[0]
    fact = medication_fact(copy.deepcopy(order), is_draft=True)
    assert fact is not None and fact.daily_dose is not None
    assert fact.daily_dose.mg == 960  # 2 x 160 mg x 3 a day


# ---------------------------------------------------------------- m5: the malignancy summary


def test_c02_merged_summary_in_all_does_not_offer_an_alternative() -> None:
    cards = case_cards(_case("c02_mp_tiw_draft_allo_active_follows"))
    summaries = " | ".join(c["summary"] for c in cards)
    assert "alternative" not in summaries
    assert "reduced regimen already followed (malignancy)" in summaries


def test_a_thiopurine_started_beside_active_treatment_dose_co_trimoxazole_in_all_is_a_warning() -> None:
    card = _cotrim_card(_daily(_case("f05_cotrim_all_icd10"), frequency=3))  # the thiopurine is the draft
    assert card["indicator"] == "warning"
    assert "480 mg trimethoprim a day" in card["detail"]
