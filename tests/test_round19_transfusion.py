"""Round-19 review H2: a red-cell transfusion coded in ICD-10-PCS, or recorded only as text, before a TPMT activity.

r19-56 (ICD-10-PCS 30233N1 "Transfusion of Nonautologous Red Blood Cells into Peripheral Vein, Percutaneous Approach")
and r19-57 (text only: "Transfusion of 2 units packed red blood cells") got no card: a TPMT activity of 31 U/mL RBC
measured 10 days after the transfusion was read as normal and the full azathioprine start passed. Now
monitoring.toml [tpmt_activity.transfusion] lists the ICD-10-PCS table 302 codes of nonautologous red cells, frozen
red cells and whole blood (``icd10pcs``, under the ICD-10-PCS system identifiers ``icd10pcs_systems``), and words
(``words``, ``red_cell_words``, ``other_component_words``) for a Procedure with no listed code and no ICD-10-PCS code.
A Procedure that did not happen (entered-in-error, not-done, preparation) is not a transfusion; one stopped part way
or of unknown status is (donor cells may have been given), and the card names its status.
Controls: SNOMED CT 116859006 (r19-54, r19-85) and CPT 36430 (r19-55) unchanged; a transfusion 228 days before the
activity (r19-58) does not make it unreliable. Cases from the reviewer (tests/data/review19/), on 2026-12-08.
"""
from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from fhir_mappers.facts import ClinicalFacts
from fhir_mappers.patient import procedure_facts
from rules.common import indication_records
from tests.review_cases import case_cards

CASES = Path(__file__).resolve().parent / "data" / "review19"
DAY = date(2026, 12, 8)
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
UNRELIABLE = "TPMT activity 31 U/mL RBC (2026-11-30), 10 days after a transfusion: unreliable; genotype TPMT"


def _case(name: str) -> dict:
    (path,) = CASES.glob(f"{name}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _cards(request: dict) -> list[dict]:
    return case_cards(request, DAY)


def _topics(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _with_procedure(**changes) -> dict:
    """r19-56 with its transfusion Procedure changed (``code``, ``status``)."""
    req = copy.deepcopy(_case("r19-56"))
    (entry,) = [e for e in req["prefetch"]["conditions"]["entry"] if e["resource"]["resourceType"] == "Procedure"]
    entry["resource"].update(changes)
    return req


def _pcs(code: str, display: str = "", system: str = PCS) -> dict:
    return {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}],
            **({"text": display} if display else {})}


# ------------------------------------------------------------------ the reviewer's cases
@pytest.mark.parametrize("name", ["r19-56", "r19-57"])
def test_icd10pcs_or_text_transfusion_makes_a_normal_activity_unreliable(name):
    cards = _cards(_case(name))
    assert _topics(cards) == ["pgx-uninterpretable"]
    (card,) = cards
    assert card["indicator"] == "warning"
    assert card["summary"] == f"Azathioprine: {UNRELIABLE}"
    text = ("Transfusion of Nonautologous Red Blood Cells into Peripheral Vein, Percutaneous Approach" if name == "r19-56"
            else "Transfusion of 2 units packed red blood cells")
    assert f"after a red-cell transfusion ({text}, 2026-11-20)" in card["detail"]
    assert "status" not in card["detail"].split("after a red-cell transfusion", 1)[1][:len(text) + 30]
    assert [s["label"] for s in card["suggestions"]] == [
        "Order TPMT genotyping (the activity is unreliable after the transfusion)"]


@pytest.mark.parametrize("name, summary", [
    ("r19-54", "Azathioprine: TPMT activity 28.5 U/mL RBC (2026-11-24), 14 days after a transfusion: unreliable; "
               "genotype TPMT"),
    ("r19-85", "Azathioprine: TPMT activity 30 U/mL RBC (2026-11-29), 11 days after a transfusion: unreliable; "
               "genotype TPMT"),
])
def test_snomed_controls_unchanged(name, summary):
    cards = _cards(_case(name))
    assert [c["summary"] for c in cards if c["source"]["topic"]["code"] == "pgx-uninterpretable"] == [summary]


def test_cpt_control_intermediate_activity_unchanged():
    (card,) = [c for c in _cards(_case("r19-55")) if c["source"]["topic"]["code"].startswith("pgx-")]
    assert card["source"]["topic"]["code"] == "pgx-reduce-dose"
    assert "(activity after a transfusion: may be poor): reduce to 50 mg/day" in card["summary"]


def test_transfusion_long_before_the_activity_leaves_it_read():
    assert _cards(_case("r19-58")) == []


# ------------------------------------------------------------------ ICD-10-PCS codes
@pytest.mark.parametrize("code", ["30243N1", "30230N1", "30263N1", "30233H1", "30243P1", "30233n1"])
def test_other_nonautologous_red_cell_and_whole_blood_codes_count(code):
    cards = _cards(_with_procedure(code=_pcs(code)))
    assert [c["summary"] for c in cards] == [f"Azathioprine: {UNRELIABLE}"]


@pytest.mark.parametrize("system", ["urn:oid:2.16.840.1.113883.6.4", "http://terminology.hl7.org/CodeSystem/icd10PCS"])
def test_the_other_icd10pcs_system_identifiers_count(system):
    cards = _cards(_with_procedure(code=_pcs("30233N1", system=system)))
    assert [c["summary"] for c in cards] == [f"Azathioprine: {UNRELIABLE}"]


@pytest.mark.parametrize("code, display", [
    ("30233N0", "Transfusion of Autologous Red Blood Cells into Peripheral Vein, Percutaneous Approach"),
    ("30233R1", "Transfusion of Nonautologous Platelets into Peripheral Vein, Percutaneous Approach"),
    ("30233L1", "Transfusion of Nonautologous Fresh Plasma into Peripheral Vein, Percutaneous Approach"),
    ("30273N1", "Transfusion of Nonautologous Red Blood Cells into Products of Conception, Circulatory, "
                "Percutaneous Approach"),
])
def test_an_icd10pcs_code_decides_even_against_its_words(code, display):
    """Autologous red cells (the patient's own), platelets, plasma, a fetal transfusion: no donor red cells in the
    patient; the display names a red-cell transfusion, but the ICD-10-PCS code decides."""
    assert _cards(_with_procedure(code=_pcs(code, display))) == []


# ------------------------------------------------------------------ words
@pytest.mark.parametrize("text", ["Transfusion", "Blood transfusion", "PRBC transfusion x2", "Packed-RBCs transfused",
                                  "Transfusion of whole blood", "Platelet and red cell transfusion",
                                  "Exchange transfusion"])
def test_words_that_name_a_red_cell_transfusion_count(text):
    cards = _cards(_with_procedure(code={"text": text}))
    (card,) = cards
    assert card["summary"] == f"Azathioprine: {UNRELIABLE}"
    assert f"({text}, 2026-11-20)" in card["detail"]


@pytest.mark.parametrize("text", ["Platelet transfusion", "Transfusion of fresh frozen plasma (FFP)",
                                  "Albumin infusion", "Autotransfusion (cell salvage)", "Red cell antibody screen",
                                  "IVIG transfusion"])
def test_words_of_another_component_or_no_transfusion_do_not_count(text):
    assert _cards(_with_procedure(code={"text": text})) == []


def test_a_coding_display_is_read_as_well_as_the_text():
    code = {"coding": [{"system": "http://example.org/local", "code": "TX1", "display": "Packed red cells"}],
            "text": "Transfusion"}
    (card,) = _cards(_with_procedure(code=code))
    assert card["summary"] == f"Azathioprine: {UNRELIABLE}"


def test_an_unlisted_snomed_code_with_transfusion_words_counts():
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "71493000",
                        "display": "Transfusion of packed red blood cells"}]}
    (card,) = _cards(_with_procedure(code=code))
    assert card["summary"] == f"Azathioprine: {UNRELIABLE}"


# ------------------------------------------------------------------ status
@pytest.mark.parametrize("status", ["entered-in-error", "not-done", "preparation", "Entered-In-Error"])
def test_a_transfusion_that_did_not_happen_is_not_one(status):
    assert _cards(_with_procedure(status=status)) == []


@pytest.mark.parametrize("status, shown", [("stopped", "stopped"), ("unknown", "unknown"), ("on-hold", "on-hold"),
                                           ("in-progress", "in-progress"), (None, "not stated")])
def test_a_transfusion_stopped_or_of_unknown_status_counts_and_says_so(status, shown):
    req = _with_procedure(status=status)
    if status is None:
        (entry,) = [e for e in req["prefetch"]["conditions"]["entry"] if e["resource"]["resourceType"] == "Procedure"]
        del entry["resource"]["status"]
    (card,) = _cards(req)
    assert card["summary"] == f"Azathioprine: {UNRELIABLE}"
    assert f"Percutaneous Approach, 2026-11-20, status {shown})" in card["detail"]


def test_a_transplant_procedure_counts_only_when_done():
    """The round-11 transplant Procedure: read only when completed or in-progress (fhir_mappers now reads a stopped
    or on-hold Procedure too, with its status; rules.common decides)."""
    base = {"resourceType": "Procedure", "id": "p1",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "70536003"}]},
            "performedDateTime": "2026-12-01"}
    procs = procedure_facts([{**base, "status": s, "id": s} for s in
                             ("completed", "stopped", "on-hold", "unknown", "not-done", "entered-in-error")])
    assert [p.status for p in procs] == ["completed", "stopped", "on-hold", "unknown"]
    facts = ClinicalFacts(today=DAY, procedures=procs)
    assert [p.source_ref for p in indication_records(facts)] == ["Procedure/completed"]
