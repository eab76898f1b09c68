"""TPMT enzyme activity: one reading from the unit's cut-offs, the laboratory's
range and the laboratory's interpretation, the most severe of them. The unit's
cut-offs are one cited laboratory's (ARUP for U/mL RBC): they are applied only
when no range, or that laboratory's own range, was sent; a result with another
laboratory's range is another assay, judged by its own range and interpretation
(round-11 m5; CPIC: the laboratory's reference ranges).

A value of 2 U/mL RBC with a laboratory range of 24-44 is deficient (the
unit's cut-off), never "intermediate" because a range is present. A result
that none of the three can judge is returned as unjudgeable, with why, so
that no card says "no result on record" about it.

Readings carry values and reason codes, no English: the catalogue's
``tpmt_activity`` / ``tpmt_unjudged`` macros word them (``hooks.wording.activity_text``).
"""
from __future__ import annotations

import msgspec

import re
from dataclasses import dataclass, field
from functools import cache


from fhir_mappers.facts import ClinicalFacts, Measurement, ResultText
from fhir_mappers.terminology import norm_unit

from .common import above, below
from .knowledge_base import load
from .knowledge_schema import ActivityUnit

# Severity for thiopurine toxicity; "High" (fast inactivation) is the least severe.
_RANK = {"Poor Metabolizer": 4, "Intermediate Metabolizer": 3, "Normal Metabolizer": 1, "High": 0}
_UNIT_LABEL = {"U/mL{RBC}": "U/mL RBC", "mU/L": "mU/L", "nmol/h/g{Hb}": "nmol/h/g Hb", "U/g{Hb}": "U/g Hb"}


@dataclass
class ActivityReading:
    """``reading``: "Poor Metabolizer" | "Intermediate Metabolizer" | "Normal Metabolizer" | "High",
    or "" when the result cannot be judged (``unjudgeable`` says why, as a code and values).
    ``reasons``: what decided it, as dicts with a ``code`` (band, band_high, below_lab_range,
    above_lab_range, within_lab_range, flag, lab_words, lab_words_text, low_without_value,
    no_unit_cutoffs, most_severe)."""

    reading: str
    value: float | None = None  # the number, when the result gave one
    comparator: str = ""
    unit: str = ""  # display label of the unit ("U/mL RBC"), or the laboratory's own text
    text: str = ""  # the laboratory's words, for a result sent as words
    date: str = ""
    reasons: list[dict] = field(default_factory=list)
    unjudgeable: dict | None = None
    preliminary: bool = False
    source_ref: str = ""
    # below the laboratory's range of an assay whose bands are not known here: intermediate OR poor (round-4 H7);
    # ``reading`` is then "Poor Metabolizer" (the more severe) until a genotype places it
    possible: bool = False

    def values(self) -> dict:
        out = {"reading": self.reading, "value": self.value, "comparator": self.comparator, "unit": self.unit,
               "text": self.text, "date": self.date, "reasons": [dict(r) for r in self.reasons], "preliminary": self.preliminary}
        if self.possible:
            out["possible"] = True
        return out


_NEGATED = re.compile(r"\b(not|no|without|non)[- ]\w+(\s+\w+)?")


@cache
def _word_patterns() -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """(reading, word, its pattern) for monitoring.toml's interpretation words, most severe reading first."""
    spec = load().monitoring.tpmt_activity.interpretation
    return tuple((reading, w, re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])"))
                 for key, reading in (("poor_words", "Poor Metabolizer"),
                                      ("intermediate_words", "Intermediate Metabolizer"),
                                      ("high_words", "High"), ("normal_words", "Normal Metabolizer"))
                 for w in getattr(spec, key))


def _words(text: str) -> tuple[str, str]:
    """(reading, word) from the laboratory's words; negated phrases ("not
    deficient", "no deficiency detected") do not count."""
    text = _NEGATED.sub(" ", (text or "").lower())
    for reading, w, pattern in _word_patterns():
        if pattern.search(text):
            return reading, w
    return "", ""


def _explicit_intermediate(text: str) -> bool:
    """The laboratory's words say intermediate / heterozygous / carrier in so many words (not merely "low")."""
    text = _NEGATED.sub(" ", (text or "").lower())
    words = load().monitoring.tpmt_activity.interpretation.explicit_intermediate_words
    return any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text) for w in words)


def _worst(readings: list[tuple[str, dict]]) -> tuple[str, list[dict]]:
    readings = [(r, why) for r, why in readings if r]
    if not readings:
        return "", []
    worst = max(readings, key=lambda rw: _RANK[rw[0]])[0]
    return worst, [why for r, why in readings]


def _same_reference(m: Measurement, unit_spec: ActivityUnit) -> bool:
    """No laboratory range sent, or the one sent is the cited laboratory's normal band (to 0.1)."""
    if m.ref_low is None and m.ref_high is None:
        return True
    low, high = unit_spec.normal or (None, None)
    return (m.ref_low is None or low is None or round(m.ref_low, 1) == round(low, 1)) and \
        (m.ref_high is None or high is None or round(m.ref_high, 1) == round(high, 1))


# Round-14 M1: a laboratory range sent only as text. The simple forms are read: ">= x", "≥ x", "> x" (a lower
# limit), "x-y", "x - y", "x – y", "x to y" (a range), each optionally followed by the value's own unit (as the
# laboratory wrote it) and by the word "normal" (or "(normal)", "normal range", "reference range"). Anything else
# (another unit, other words, an upper limit only, two ranges) is not read: it is quoted, never taken as normal.
_NUM = r"(\d+(?:[.,]\d+)?)"
_TEXT_TAIL = r"\s*(?P<unit>[^\d\s()][^()]*?)?\s*(?:\(?\s*(?:normal|reference)(?:\s+range)?\s*\)?)?\s*"
_TEXT_LOW = re.compile(rf"^\s*(?P<op>>=|≥|=>|>)\s*{_NUM}{_TEXT_TAIL}$", re.IGNORECASE)
_TEXT_RANGE = re.compile(rf"^\s*{_NUM}\s*(?:-|–|—|to)\s*{_NUM}{_TEXT_TAIL}$", re.IGNORECASE)


def range_from_text(m: Measurement) -> tuple[float | None, float | None, bool] | None:
    """(low, high, strict) in the value's unit as read (``m.value``'s) from a reference range sent only as text
    (``m.ref_text``), when it is one of the simple forms above and names no unit or the value's own; else None.
    ``strict``: the text was "> x" (x itself is not in the range)."""
    text = m.ref_text.strip()
    if not text or m.ref_low is not None or m.ref_high is not None:
        return None
    hit = _TEXT_LOW.match(text) or _TEXT_RANGE.match(text)
    if hit is None:
        return None
    unit = (hit.group("unit") or "").strip()
    if unit and norm_unit(unit) != norm_unit(m.unit_text or m.unit):
        return None  # another unit than the value's: not converted here
    # the bounds are in the unit as sent; the value may have been converted to a canonical unit
    factor = 1.0
    if m.sent_value not in (None, 0):
        factor = m.value / float(m.sent_value or 1)
    elif m.unit and m.unit_text and norm_unit(m.unit) != norm_unit(m.unit_text):
        return None
    numbers = [float(g.replace(",", ".")) * factor for g in hit.groups()[:2] if g is not None and _is_number(g)]
    if hit.re is _TEXT_LOW:
        return numbers[0], None, hit.group("op") == ">"
    low, high = numbers[0], numbers[1]
    return (low, high, False) if low <= high else None


def _is_number(g: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:[.,]\d+)?", g))


def judge_measurement(m: Measurement) -> ActivityReading:
    text_range = range_from_text(m) if m.ref_text else None
    if text_range is not None:
        low, high, strict = text_range
        m = msgspec.structs.replace(m, ref_low=low, ref_high=high)
        if strict and not m.comparator and m.value == low:
            m = msgspec.structs.replace(m, ref_low=low * (1 + 1e-9) if low else 1e-9)  # "> x": x itself is below the range
    judged = _judge_measurement(m)
    if text_range is not None:
        for q in judged.reasons:
            if q.get("code") in ("below_lab_range", "above_lab_range", "within_lab_range", "possible_deficiency"):
                q["text"] = m.ref_text[:60]  # the card says the range was sent as text, and quotes it
    elif m.ref_text and judged.unjudgeable is not None:
        judged.unjudgeable["ref_text"] = m.ref_text[:60]  # sent, not read: quoted, never "no range"
    return judged


def _judge_measurement(m: Measurement) -> ActivityReading:
    spec = load().monitoring.tpmt_activity
    unit = _UNIT_LABEL.get(m.unit, m.unit) if m.unit else (m.unit_text or "")
    out = ActivityReading("", value=m.value, comparator=m.comparator, unit=unit,
                          date=m.when.date().isoformat() if m.when else "", preliminary=m.preliminary,
                          source_ref=m.source_ref)
    readings: list[tuple[str, dict]] = []
    unit_spec = spec.units.get(m.unit) if m.unit else None
    other_assay = unit_spec is not None and bool(unit_spec.bands) and not _same_reference(m, unit_spec)
    if other_assay and unit_spec is not None:
        # the reporting laboratory's range is not the cited laboratory's: another assay, whose cut-offs
        # are its own; the cited bands are not applied (the card says so)
        normal = unit_spec.normal or (None, None)
        readings.append(("", {"code": "other_lab_cutoffs", "lab": unit_spec.lab,
                              "normal_low": normal[0], "normal_high": normal[1],
                              "unit": unit}))
        unit_spec = None
    if unit_spec and unit_spec.bands:
        for upper, reading, label in unit_spec.bands:
            if below(m, upper):  # "< 17" is below 17 whatever the figure
                readings.append((reading, {"code": "band", "label": label}))
                break
        else:
            readings.append(("High", {"code": "band_high", "high_above": unit_spec.high_above, "unit": unit}))
    lab_range = {"low": m.ref_low, "high": m.ref_high}
    if m.ref_low is not None and below(m, m.ref_low):
        readings.append(("Intermediate Metabolizer", {"code": "below_lab_range", **lab_range}))
    elif m.ref_high is not None and above(m, m.ref_high):
        readings.append(("High", {"code": "above_lab_range", **lab_range}))
    elif m.ref_low is not None or m.ref_high is not None:
        readings.append(("Normal Metabolizer", {"code": "within_lab_range", **lab_range}))
    code = spec.interpretation.codes.get(m.interpretation, "")
    if code:
        readings.append((code, {"code": "flag", "interpretation": m.interpretation}))
    words = _words(m.interpretation_text)[0]
    if words:
        readings.append((words, {"code": "lab_words", "text": m.interpretation_text[:60]}))
    reading, reasons = _worst(readings)
    if not reading:
        out.unjudgeable = {"code": "no_cutoffs", "unit_text": m.unit_text}
        return out
    if reading == "Intermediate Metabolizer" and not (unit_spec and unit_spec.bands) \
            and not _explicit_intermediate(m.interpretation_text):
        # below the range (or flagged L) of an assay whose bands are not known here: a laboratory's deficient band
        # lies anywhere from 15 % to 71 % of its lower limit (monitoring.toml), so the value cannot be placed:
        # intermediate OR poor, counted as poor until a genotype places it (round-4 H7)
        reading, out.possible = "Poor Metabolizer", True
        reasons.append({"code": "possible_deficiency", "low": m.ref_low})
    if other_assay:
        reasons.insert(0, {**readings[0][1], "below": reading in ("Intermediate Metabolizer", "Poor Metabolizer")})
        if m.unit_text:
            out.unit = m.unit_text  # as the laboratory wrote it: its number is its assay's
    elif unit_spec is None or not unit_spec.bands:
        reasons.append({"code": "no_unit_cutoffs", "below": reading == "Intermediate Metabolizer"})
    if len({r for r, _ in readings if r}) > 1:
        reasons.append({"code": "most_severe"})
    out.reading, out.reasons = reading, reasons
    return out


def judge_text(r: ResultText) -> ActivityReading:
    spec = load().monitoring.tpmt_activity.interpretation
    out = ActivityReading("", text=r.text[:60], date=r.when.date().isoformat() if r.when else "",
                          preliminary=r.preliminary, source_ref=r.source_ref)
    word_reading, word = _words(r.text)
    why_words = {"code": "lab_words_text"}
    if word == "low":
        # "low" is deficient at ARUP (< 17 U/mL) and carrier at UK laboratories: without a number the worse counts
        word_reading, why_words = "Poor Metabolizer", {"code": "low_without_value"}
    readings = [(spec.codes.get(r.interpretation, ""), {"code": "flag", "interpretation": r.interpretation}),
                (word_reading, why_words)]
    reading, reasons = _worst(readings)
    if not reading:
        out.unjudgeable = {"code": "text_unreadable", "why": r.why}
        return out
    out.reading, out.reasons = reading, reasons
    return out


def activity_readings(facts: ClinicalFacts) -> list[ActivityReading]:
    """Every TPMT activity result on record, newest first; of one date and time the most severe first (a normal
    result never hides a deficient one of the same time), numbers before words of the same reading."""
    items: list[tuple] = [(m.when, judge_measurement(m)) for m in facts.labs.get("tpmt_activity", [])]
    items += [(r.when, judge_text(r)) for r in facts.result_texts.get("tpmt_activity", [])]
    items.sort(key=lambda it: (it[0] is not None, it[0], _RANK.get(it[1].reading, -1)), reverse=True)
    return [r for _, r in items]


def latest_activity(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result (judged or not)."""
    readings = activity_readings(facts)
    return readings[0] if readings else None


def latest_judged(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result that could be judged (an unjudgeable newer one is reported separately)."""
    return next((r for r in activity_readings(facts) if r.reading), None)


__all__ = ["ActivityReading", "activity_readings", "judge_measurement", "judge_text", "latest_activity", "latest_judged"]
