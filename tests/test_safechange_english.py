"""Issue 20 (b), one home for wording: the English of the data gaps rules/monitoring.py names (no absolute neutrophil
count, a blood count sent without a result) is in the catalogue (catalogue.toml [meta] macros ``gap_why``); the rules
give a problem code and values. The sentences are the ones the Python wrote before (``old_*`` below, kept as the
reference), in every branch, so the cards are unchanged."""
from __future__ import annotations

import itertools
from datetime import date, datetime
from types import SimpleNamespace

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
    from pathlib import Path

    text = (Path(monitoring.__file__)).read_text(encoding="utf-8")
    for words in ("the differential gives neutrophils only", "has a low white cell count but no",
                  "was sent without a value, dataAbsentReason", "the count was not done"):
        assert words not in text
