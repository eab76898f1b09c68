"""TPMT enzyme activity: one reading from the unit's cut-offs, the laboratory's
range and the laboratory's interpretation, the most severe of them.

A value of 2 U/mL RBC with a laboratory range of 24-44 is deficient (the
unit's cut-off), never "intermediate" because a range is present. A result
that none of the three can judge is returned as unjudgeable, with why and what
to check, so that no card says "no result on record" about it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhir_mappers.facts import ClinicalFacts, Measurement, ResultText

from .knowledge_base import load

# Severity for thiopurine toxicity; "High" (fast inactivation) is the least severe.
_RANK = {"Poor Metabolizer": 4, "Intermediate Metabolizer": 3, "Normal Metabolizer": 1, "High": 0}
_UNIT_LABEL = {"U/mL{RBC}": "U/mL RBC", "mU/L": "mU/L", "nmol/h/g{Hb}": "nmol/h/g Hb", "U/g{Hb}": "U/g Hb"}


@dataclass
class ActivityReading:
    """``reading``: "Poor Metabolizer" | "Intermediate Metabolizer" | "Normal Metabolizer" | "High",
    or "" when the result cannot be judged (``unjudgeable`` says why and what to check)."""

    reading: str
    evidence: str  # "TPMT activity 2 U/mL RBC (2025-03-01): low, < 17.0 ..."
    reasons: list[str] = field(default_factory=list)
    unjudgeable: str = ""
    preliminary: bool = False
    source_ref: str = ""
    value: float | None = None  # the number, when the result gave one (unit: ``unit``)
    unit: str = ""


def _fmt(x: float) -> str:
    return f"{x:g}"


def _words(text: str) -> tuple[str, str]:
    """(reading, word) from the laboratory's words; negated phrases ("not
    deficient", "no deficiency detected") do not count."""
    spec = load()["monitoring"]["tpmt_activity"]["interpretation"]
    text = re.sub(r"\b(not|no|without|non)[- ]\w+(\s+\w+)?", " ", (text or "").lower())
    for key, reading in (("poor_words", "Poor Metabolizer"), ("intermediate_words", "Intermediate Metabolizer"),
                         ("high_words", "High"), ("normal_words", "Normal Metabolizer")):
        for w in spec[key]:
            if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text):
                return reading, w
    return "", ""


def _words_reading(text: str) -> str:
    return _words(text)[0]


def _worst(readings: list[tuple[str, str]]) -> tuple[str, list[str]]:
    readings = [(r, why) for r, why in readings if r]
    if not readings:
        return "", []
    worst = max(readings, key=lambda rw: _RANK[rw[0]])[0]
    return worst, [why for r, why in readings]


def judge_measurement(m: Measurement) -> ActivityReading:
    spec = load()["monitoring"]["tpmt_activity"]
    date = m.when.date().isoformat() if m.when else "undated"
    unit = _UNIT_LABEL.get(m.unit, m.unit) if m.unit else (m.unit_text or "no unit")
    value = f"{m.comparator}{_fmt(m.value)}" if m.comparator else _fmt(m.value)
    evidence = f"TPMT activity {value} {unit} ({date}{', PRELIMINARY' if m.preliminary else ''})"
    readings: list[tuple[str, str]] = []
    unit_spec = spec.get("units", {}).get(m.unit) if m.unit else None
    if unit_spec and unit_spec["bands"]:
        for upper, reading, label in unit_spec["bands"]:
            if m.value < upper:
                readings.append((reading, label))
                break
        else:
            readings.append(("High", f"high, > {_fmt(unit_spec['high_above'])} {unit}"))
    if m.ref_low is not None and m.value < m.ref_low:
        readings.append(("Intermediate Metabolizer", f"below the laboratory's range ({m.ref_low:g}-{'' if m.ref_high is None else f'{m.ref_high:g}'})"))
    elif m.ref_high is not None and m.value > m.ref_high:
        readings.append(("High", f"above the laboratory's range ({'' if m.ref_low is None else f'{m.ref_low:g}'}-{m.ref_high:g})"))
    elif m.ref_low is not None or m.ref_high is not None:
        readings.append(("Normal Metabolizer", "within the laboratory's range"))
    code = spec["interpretation"]["codes"].get(m.interpretation, "")
    if code:
        readings.append((code, f"flagged {m.interpretation} by the laboratory"))
    words = _words_reading(m.interpretation_text)
    if words:
        readings.append((words, f"the laboratory's interpretation: '{m.interpretation_text[:60]}'"))
    reading, reasons = _worst(readings)
    if not reading:
        why = (f"the unit '{m.unit_text}' has no published cut-offs here" if m.unit_text else "it has no unit") + \
              " and the laboratory gave no reference range or interpretation"
        return ActivityReading("", evidence, [], why + "; read the laboratory's report by hand or measure TPMT "
                               "activity in U/mL RBC, or genotype TPMT", m.preliminary, m.source_ref)
    if unit_spec is None or not unit_spec["bands"]:
        reasons.append("no cut-offs for this unit: the laboratory's range/interpretation decides; deficiency cannot "
                       "be excluded by a below-range value alone" if reading == "Intermediate Metabolizer" else
                       "no cut-offs for this unit: the laboratory's range/interpretation decides")
    if len({r for r, _ in readings}) > 1:
        reasons.append("the most severe reading counts")
    return ActivityReading(reading, f"{evidence}: {'; '.join(reasons)}", reasons, "", m.preliminary, m.source_ref,
                           m.value, unit)


def judge_text(r: ResultText) -> ActivityReading:
    spec = load()["monitoring"]["tpmt_activity"]["interpretation"]
    date = r.when.date().isoformat() if r.when else "undated"
    evidence = f"TPMT activity reported as '{r.text[:60] or 'no value'}' ({date}{', PRELIMINARY' if r.preliminary else ''})"
    word_reading, word = _words(r.text)
    why_words = "the laboratory's words"
    if word == "low":
        # "low" is deficient at ARUP (< 17 U/mL) and carrier at UK laboratories: without a number the worse counts
        word_reading, why_words = "Poor Metabolizer", ("'low' without a value: deficient at some laboratories (ARUP), "
                                                       "carrier at others; the more severe counts, check the value")
    readings = [(spec["codes"].get(r.interpretation, ""), f"flagged {r.interpretation}"), (word_reading, why_words)]
    reading, reasons = _worst(readings)
    if not reading:
        return ActivityReading("", evidence, [], f"{r.why} and no interpretation this service can read; read the "
                               "laboratory's report by hand or repeat the test", r.preliminary, r.source_ref)
    return ActivityReading(reading, f"{evidence}: {'; '.join(reasons)}", reasons, "", r.preliminary, r.source_ref)


def activity_readings(facts: ClinicalFacts) -> list[ActivityReading]:
    """Every TPMT activity result on record, newest first (numbers, then words of the same date)."""
    items: list[tuple] = [(m.when, judge_measurement(m)) for m in facts.labs.get("tpmt_activity", [])]
    items += [(r.when, judge_text(r)) for r in facts.result_texts.get("tpmt_activity", [])]
    items.sort(key=lambda it: (it[0] is not None, it[0]), reverse=True)
    return [r for _, r in items]


def latest_activity(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result (judged or not)."""
    readings = activity_readings(facts)
    return readings[0] if readings else None


def latest_judged(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result that could be judged (an unjudgeable newer one is reported separately)."""
    return next((r for r in activity_readings(facts) if r.reading), None)


__all__ = ["ActivityReading", "activity_readings", "judge_measurement", "judge_text", "latest_activity", "latest_judged"]
