"""Issue 20 (b), one home for wording: the English of the data gaps rules/monitoring.py names (no absolute neutrophil
count, a blood count sent without a result) is in the catalogue (catalogue.toml [meta] macros ``gap_why``); the rules
give a problem code and values. The sentences are the ones the Python wrote before (``old_*`` below, kept as the
reference), in every branch, so the cards are unchanged."""
from __future__ import annotations

import itertools
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fhir_mappers.facts import AbsentResult
from hooks.wording import wording
from rules import monitoring


def gap_why(g: dict) -> str:
    return str(wording().macros.gap_why(g))


# ------------------------------------------------------------------------------------- the sentences as they were

def old_absent_why(r: AbsentResult) -> str:
    when = f"the result of {r.when.date().isoformat()}" if r.when else "an undated result"
    parts = []
    if r.status == "cancelled":
        parts.append("has status 'cancelled' (the count was not done"
                     + (f"; a value '{r.value_text}' was sent with it" if r.value_text else "") + ")")
    if r.reason:
        parts.append(f"was sent without a value, dataAbsentReason '{r.reason}'")
    ref = f" ({r.source_ref})" if r.source_ref else ""
    return f"{when}{ref} {' and '.join(parts)}"


def old_anc_why(p, w) -> str:
    when = w.when.date().isoformat()
    if p is not None:
        flagged = f", flagged {p.interpretation} by the laboratory" if p.interpretation not in ("", "<", ">") else ""
        return (f"the differential gives neutrophils only as {p.comparator}{p.value:g} % ({p.when.date().isoformat()}"
                f"{flagged}) and no absolute count; it could not be calculated with the white cell count of {when} "
                f"({'a limit value' if p.comparator or w.comparator else 'not the same specimen time'})")
    return f"the blood count of {when} has a low white cell count but no absolute neutrophil count"


# ------------------------------------------------------------------------------------------------------ the cases

@pytest.mark.parametrize("when, ref, status, reason, value_text", list(itertools.product(
    [datetime(2026, 12, 1, 8), None], ["Observation/cbc-1", ""], ["cancelled", "final", "entered-in-error"],
    ["error", "not-performed", ""], ["", "3.1"])))
def test_a_count_sent_without_a_result_is_worded_as_the_python_did(when, ref, status, reason, value_text):
    r = AbsentResult("neutrophils", when, ref, status, reason, value_text)
    g = monitoring._absent_gap(r)
    assert g["why"] == "" and g["problem"]["code"] == "count_absent"
    assert gap_why(g) == old_absent_why(r)


def _measurement(value: float, day: int, hour: int, comparator: str = "", interpretation: str = ""):
    return SimpleNamespace(value=value, when=datetime(2026, 12, day, hour), comparator=comparator,
                           interpretation=interpretation)


@pytest.mark.parametrize("percent", [
    _measurement(20.0, 1, 8, "", "L"), _measurement(20.0, 1, 9), _measurement(5.5, 1, 8, "<", ""),
    _measurement(5.0, 2, 8, "", "<"), _measurement(12.25, 1, 8, "<=", "LL"), None])
@pytest.mark.parametrize("wbc_comparator", ["", "<"])
def test_no_absolute_neutrophil_count_is_worded_as_the_python_did(monkeypatch, percent, wbc_comparator):
    wbc = _measurement(3.2, 1, 8, wbc_comparator)
    found = {"wbc": wbc, "neutrophils_percent": percent}
    monkeypatch.setattr(monitoring, "latest", lambda facts, analyte, age=None: found.get(analyte))
    monkeypatch.setattr(monitoring, "neutrophil_count", lambda facts, age=None: None)
    monkeypatch.setattr(monitoring, "reported", lambda facts, analyte, age, n: None)
    monkeypatch.setattr(monitoring, "_low_wbc", lambda w: True)
    g = monitoring.neutrophil_gap(SimpleNamespace(unavailable=frozenset(), today=date(2026, 12, 3)))  # type: ignore[arg-type]
    assert g is not None and g["why"] == "" and g["key"] == "neutrophils"
    assert gap_why(g) == old_anc_why(percent, wbc)


def test_a_mappers_gap_says_why_itself():
    assert gap_why({"what": "white cell count", "why": "unit 'furlongs' is not a count unit", "key": "wbc"}) \
        == "unit 'furlongs' is not a count unit"


def test_no_clinician_sentence_is_left_in_the_gap_rules():
    """The moved sentences are not in rules/ any more (one home: the catalogue)."""
    text = (Path(monitoring.__file__)).read_text(encoding="utf-8")
    for words in ("the differential gives neutrophils only", "has a low white cell count but no",
                  "was sent without a value, dataAbsentReason", "the count was not done"):
        assert words not in text


# ----------------------------------------------------------- rules/pgx.py: why the ordered dose could not be checked

def old_pgx_dose_problem(order_problem: str, kind: str, weight: float | None, ordered_basis: bool) -> str:
    if ordered_basis:
        return ("no normal dose is set for this drug for this indication (the thioguanine label gives one for acute "
                "myeloid leukaemia only), and the ordered dose may already be reduced; apply the band to the usual dose "
                "for the indication")
    no_size = "no height on record, so no body surface area or mg/m² normal dose could be computed (record " \
              "a current height" + ("" if weight else " and weight") + ")" if kind == "no_size" else ""
    return order_problem or no_size


@pytest.mark.parametrize("order_problem", ["", "the dose has no unit"])
@pytest.mark.parametrize("kind", ["no_size", "kg", "ordered"])
@pytest.mark.parametrize("weight", [None, 62.0])
def test_why_the_ordered_dose_could_not_be_checked_is_worded_as_the_python_did(order_problem, kind, weight):
    """The values rules/pgx.py gives pgx-reduce-dose when it has no reference dose (its two branches, as written
    there), worded by the catalogue's pgx_dose_problem, and the card line around it."""
    values: dict[str, Any]
    if kind == "ordered":
        values = {"dose_problem": "", "dose_problem_code": "no_normal_dose"}
    else:
        no_size = not order_problem and kind == "no_size"
        values = {"dose_problem": order_problem, "dose_problem_code": "no_size" if no_size else "",
                  "no_weight": no_size and not weight}
    old = old_pgx_dose_problem(order_problem, kind, weight, kind == "ordered")
    assert str(wording().macros.pgx_dose_problem(values)) == old


@pytest.mark.parametrize("weight", [True, False])
def test_an_all_thiopurine_order_without_a_height_says_so_on_its_pgx_card(monkeypatch, capsys, tmp_path, weight):
    """End to end: thioguanine in ALL, TPMT intermediate, no height (and no weight): no normal dose (no_size)."""
    from tests.test_clinfix_thioguanine import card, load, run

    request = load("p24-thioguanine-aml-tpmt-im")
    request["prefetch"]["conditions"]["entry"][0]["resource"]["code"] = {"coding": [
        {"system": "http://snomed.info/sct", "code": "91857003", "display": "Acute lymphoblastic leukemia"}]}
    request["prefetch"]["height"]["entry"] = []
    if not weight:
        request["prefetch"]["weight"]["entry"] = []
    c = card(run(request, monkeypatch, capsys, tmp_path), "pgx-reduce-dose")
    assert ("The ordered dose could not be checked: no height on record, so no body surface area or mg/m² normal dose "
            f"could be computed (record a current height{'' if weight else ' and weight'}). Check it by hand.") in c["detail"]


def test_the_pgx_card_says_why_the_dose_could_not_be_checked():
    from hooks.wording import render
    from rules.findings import Finding

    sample = dict(wording()["pgx-reduce-dose"].sample)
    sample.pop("with_plan")
    cases: list[tuple[dict[str, Any], str]] = [({"dose_problem": "", "dose_problem_code": "no_size", "no_weight": True},
                          "The ordered dose could not be checked: no height on record, so no body surface area or "
                          "mg/m² normal dose could be computed (record a current height and weight). Check it by hand"),
                         ({"dose_problem": "", "dose_problem_code": ""}, "The ordered dose could not be checked. Check it by hand")]
    for values, said in cases:
        f = Finding("pgx-reduce-dose", "MedicationRequest/x", {**sample, "reference": None, **values}, drug="azathioprine")
        assert said in render(f).detail
