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
from itertools import pairwise
from datetime import date, datetime


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


# Round-14 M1, round-15 H2: a laboratory range sent only as text. Read, each optionally preceded by a label
# naming the normal range ("Normal", "Normal range", "Reference range", "Ref", "Expected", with ":" or not) and
# followed by the value's own unit (as the laboratory wrote it) and by "(normal)": ">= x", "≥ x", "> x" (a lower
# limit), "x-y", "x - y", "x – y", "x to y" (a range). A text of several bands separated by ";" (or a new line,
# "|", ", "), each naming normal / intermediate / low / poor / deficient / high before or after its limits
# ("<5.0 Low; 5.0-13.7 Intermediate; >=13.8 Normal", "Normal 15.1-26.4; Intermediate 6.3-15.0; Low <6.3"), is the
# laboratory's own bands: the value is placed in them. Anything else (another unit, other words, an upper limit
# only, bands out of order) is not read: it is quoted, the result is not interpreted (never normal), and no other
# laboratory's cut-offs are applied in its place (CPIC: the reporting laboratory's reference ranges).
_NUM = r"(\d+(?:[.,]\d+)?)"
_SEGMENT = re.compile(
    rf"^(?P<pre>[^\d<>≤≥=]*?)[\s:=]*(?:(?P<op>>=|≥|=>|>|<=|≤|=<|<)\s*(?P<x>{_NUM})"
    rf"|(?P<lo>{_NUM})\s*(?:-|–|—|to)\s*(?P<hi>{_NUM}))(?P<post>.*)$", re.IGNORECASE)
_SPLIT = re.compile(r"\s*(?:;|\n|\||,\s)\s*")
# the longest reference-range text read (a multi-band text of five bands fits in about 120 characters)
_MAX_RANGE_TEXT = 200
_OPS = {">=": ">=", "≥": ">=", "=>": ">=", ">": ">", "<=": "<=", "≤": "<=", "=<": "<=", "<": "<"}


class _Band(msgspec.Struct, frozen=True):
    """One of the laboratory's bands read from text, in the value's unit as read: ``low``/``high`` None = open."""

    label: str  # "normal" | "intermediate" | "poor" | "low" | "high"
    low: float | None
    high: float | None
    low_strict: bool = False  # "> x": x itself is not in the band
    high_strict: bool = False  # "< y": y itself is not in the band
    text: str = ""  # the segment as sent


def _label_kind(words: str) -> str | None:
    """The kind of band a label names ("" for no label), or None for words that are not a band label."""
    w = re.sub(r"[():=\-]", " ", words.lower())
    w = " ".join(w.split())
    if not w:
        return ""
    spec = load().monitoring.tpmt_activity.interpretation
    if w in spec.range_labels:
        return "normal"
    w = re.sub(r"\s+(range|activity|interval|band|metaboli[sz]er|tpmt activity)$", "", w)
    if w in spec.range_labels or w in spec.normal_words:
        return "normal"
    if w == "low":
        return "low"  # deficient at ARUP, carrier at UK laboratories: placed by the other bands named
    if w in spec.poor_words:
        return "poor"
    if w in spec.intermediate_words:
        return "intermediate"
    if w in spec.high_words:
        return "high"
    return None


def _unit_matches(unit: str, m: Measurement) -> bool:
    return not unit or norm_unit(unit) == norm_unit(m.unit_text or m.unit)


def _segment(seg: str, m: Measurement, factor: float) -> _Band | None:
    hit = _SEGMENT.match(seg.strip())
    if hit is None:
        return None
    kinds = [_label_kind(hit.group("pre"))]
    post = hit.group("post").strip()
    unit = post
    words = post.split()
    for k in range(min(3, len(words)), 0, -1):  # a band word (or two, three) at the end; before it, the unit
        kind = _label_kind(" ".join(words[-k:]))
        if kind and re.fullmatch(r"[\sA-Za-z():\-]+", " ".join(words[-k:])):
            kinds.append(kind)
            unit = " ".join(words[:-k]).strip()
            break
    named = [k for k in kinds if k]
    if None in kinds or len(named) > 1 or not _unit_matches(unit, m):
        return None
    label = named[0] if named else ""

    def num(g: str) -> float:
        return float(g.replace(",", ".")) * factor

    if hit.group("op"):
        op, x = _OPS[hit.group("op")], num(hit.group("x"))
        if op.startswith(">"):
            return _Band(label, x, None, low_strict=op == ">", text=seg.strip())
        return _Band(label, None, x, high_strict=op == "<", text=seg.strip())
    low, high = num(hit.group("lo")), num(hit.group("hi"))
    return _Band(label, low, high, text=seg.strip()) if low <= high else None


def _factor(m: Measurement) -> float | None:
    """The factor from the unit the laboratory sent (its range's) to the value's, or None when it is not known."""
    if m.sent_value not in (None, 0):
        return m.value / float(m.sent_value or 1)
    if m.unit and m.unit_text and norm_unit(m.unit) != norm_unit(m.unit_text):
        return None
    return 1.0


def bands_from_text(m: Measurement) -> list[_Band] | None:
    """The laboratory's range sent only as text, read: one band (its normal range) or several named bands, ordered
    from the lowest; None when the text is not one of the forms above (it is then quoted, never read)."""
    text = m.ref_text.strip()
    factor = _factor(m)
    if not text or m.ref_low is not None or m.ref_high is not None or factor is None:
        return None
    if len(text) > _MAX_RANGE_TEXT:  # not a range a laboratory prints: quoted, not read (and the patterns below,
        return None                  # whose cost grows with the square of a run of blanks, never see a long text)
    segments = [s for s in _SPLIT.split(text) if s.strip()]
    bands = [_segment(s, m, factor) for s in segments]
    if not bands or any(b is None for b in bands):
        return None
    read = [b for b in bands if b is not None]
    if len(read) == 1:
        b = read[0]
        # one range: the normal range (an upper limit only, or a band other than normal, is not a normal range)
        return [msgspec.structs.replace(b, label="normal")] if b.label in ("", "normal") and b.low is not None \
            else None
    if any(not b.label for b in read) or [b.label for b in read].count("normal") != 1:
        return None
    kinds = {b.label for b in read}
    low_as = "poor" if "intermediate" in kinds else "intermediate" if "poor" in kinds else "low"
    read = [msgspec.structs.replace(b, label=low_as) if b.label == "low" else b for b in read]
    if len({b.label for b in read}) != len(read):
        return None  # two bands of one kind: not read
    read.sort(key=lambda b: (b.low if b.low is not None else float("-inf")))
    order = {"poor": 0, "low": 1, "intermediate": 1, "normal": 2, "high": 3}
    for a, b in pairwise(read):
        if order[a.label] >= order[b.label] or a.high is None or b.low is None or a.high > b.low \
                or (a.high == b.low and not (a.high_strict or b.low_strict)):
            return None  # out of order or overlapping: not read
    return read


def range_from_text(m: Measurement) -> tuple[float | None, float | None, bool] | None:
    """(low, high, strict) of the laboratory's normal range sent as one range in text (``m.ref_text``), in the
    value's unit as read; None when it is not one simple range. ``strict``: the text was "> x"."""
    bands = bands_from_text(m)
    if bands is None or len(bands) != 1:
        return None
    return bands[0].low, bands[0].high, bands[0].low_strict


def _quote(text: str, n: int = 120) -> str:
    """The laboratory's text as sent, shortened (with "…") only when it is very long."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _in_band(v: float, b: _Band) -> bool:
    return (b.low is None or v > b.low or (v == b.low and not b.low_strict)) and \
        (b.high is None or v < b.high or (v == b.high and not b.high_strict))


_KIND_READING = {"poor": "Poor Metabolizer", "intermediate": "Intermediate Metabolizer", "low": "low",
                 "normal": "Normal Metabolizer", "high": "High"}


def _place(m: Measurement, bands: list[_Band]) -> tuple[str, dict]:
    """The value placed in the laboratory's own bands: (reading, reason). A value between two bands counts in the
    more severe of them; below the lowest, in the lowest; above the normal band (and no high band), high."""
    v = m.value
    if m.comparator in ("<", "<="):
        v = v - 1e-9 if m.comparator == "<" else v  # "< 5": below 5
    elif m.comparator == ">":
        v = v + 1e-9
    why = {"code": "lab_band", "text": _quote(m.ref_text)}
    for b in bands:
        if _in_band(v, b):
            return _KIND_READING[b.label], {**why, "band": b.label, "segment": b.text}
    below_all = bands[0].low is not None and (v < bands[0].low or (v == bands[0].low and bands[0].low_strict))
    if below_all:
        b = bands[0]
        kind = "poor" if b.label in ("intermediate", "poor") else "low" if b.label in ("low", "normal") else b.label
        return _KIND_READING[kind], {**why, "band": kind, "segment": b.text, "where": "below"}
    for a, b in pairwise(bands):
        if a.high is not None and v >= a.high and b.low is not None and v <= b.low:
            # between two bands: the more severe, but between a deficient band and the normal band no band
            # tells intermediate from deficient: a possible deficiency (round-4 H7)
            kind = "low" if (a.label, b.label) == ("poor", "normal") else a.label
            return _KIND_READING[kind], {**why, "band": kind, "segment": a.text, "where": "between"}
    return "High", {**why, "band": "high", "segment": bands[-1].text, "where": "above"}


def judge_measurement(m: Measurement) -> ActivityReading:
    bands = bands_from_text(m) if m.ref_text else None
    if bands is not None and len(bands) > 1:
        return _judge_bands(m, bands)
    text_range = (bands[0].low, bands[0].high, bands[0].low_strict) if bands else None
    unread = bool(m.ref_text.strip()) and text_range is None and m.ref_low is None and m.ref_high is None
    if text_range is not None:
        low, high, strict = text_range
        m = msgspec.structs.replace(m, ref_low=low, ref_high=high)
        if strict and not m.comparator and m.value == low:
            m = msgspec.structs.replace(m, ref_low=low * (1 + 1e-9) if low else 1e-9)  # "> x": x itself is below the range
    judged = _judge_measurement(m, range_unread=unread)
    if unread and judged.reading in ("Normal Metabolizer", "High"):
        # the laboratory's range was sent but not read: its flag alone does not make the result normal (round-15 H2)
        flag = m.interpretation or (m.interpretation_text[:40] if m.interpretation_text else "")
        judged.reading, judged.reasons = "", []
        judged.unjudgeable = {"code": "range_text_unread", "unit_text": m.unit_text, "flag": flag}
    if text_range is not None:
        for q in judged.reasons:
            if q.get("code") in ("below_lab_range", "above_lab_range", "within_lab_range", "possible_deficiency"):
                q["text"] = _quote(m.ref_text)  # the card says the range was sent as text, and quotes it
                if text_range[2] and "low" in q:
                    q["low"], q["strict"] = text_range[0], True  # "> x" as sent
    elif m.ref_text and judged.unjudgeable is not None:
        judged.unjudgeable["ref_text"] = _quote(m.ref_text)  # sent, not read: quoted, never "no range"
    return judged


def _judge_bands(m: Measurement, bands: list[_Band]) -> ActivityReading:
    """A result with the laboratory's own bands sent as text: the bands and the laboratory's flag/words decide
    (the most severe of them); no other laboratory's cut-offs."""
    spec = load().monitoring.tpmt_activity
    unit = _UNIT_LABEL.get(m.unit, m.unit) if m.unit else (m.unit_text or "")
    out = ActivityReading("", value=m.value, comparator=m.comparator, unit=m.unit_text or unit,
                          date=m.when.date().isoformat() if m.when else "", preliminary=m.preliminary,
                          source_ref=m.source_ref)
    reading, why = _place(m, bands)
    possible = reading == "low"
    readings: list[tuple[str, dict]] = [("Intermediate Metabolizer" if possible else reading, why)]
    unit_spec = spec.units.get(m.unit) if m.unit else None
    if unit_spec is not None and unit_spec.bands:
        normal = unit_spec.normal or (None, None)
        readings.insert(0, ("", {"code": "other_lab_cutoffs", "lab": unit_spec.lab, "normal_low": normal[0],
                                 "normal_high": normal[1], "unit": unit, "own_bands": True}))
    readings += _lab_statements(m, spec)
    out.reading, out.reasons = _worst(readings)
    if readings[0][0] == "":
        out.reasons.insert(0, readings[0][1])  # the cited laboratory's cut-offs, named as not applied
    if possible and out.reading == "Intermediate Metabolizer" and not _explicit_intermediate(m.interpretation_text):
        # the laboratory's "low" band, with no band telling intermediate from deficient (round-4 H7)
        out.reading, out.possible = "Poor Metabolizer", True
        out.reasons.append({"code": "possible_deficiency", "low": None})
    if len({r for r, _ in readings if r}) > 1:
        out.reasons.append({"code": "most_severe"})
    return out


def _judge_measurement(m: Measurement, range_unread: bool = False) -> ActivityReading:
    spec = load().monitoring.tpmt_activity
    unit = _UNIT_LABEL.get(m.unit, m.unit) if m.unit else (m.unit_text or "")
    out = ActivityReading("", value=m.value, comparator=m.comparator, unit=unit,
                          date=m.when.date().isoformat() if m.when else "", preliminary=m.preliminary,
                          source_ref=m.source_ref)
    readings: list[tuple[str, dict]] = []
    unit_spec = spec.units.get(m.unit) if m.unit else None
    # a range sent as text that is not read is the laboratory's own range all the same: never replaced by the
    # cited laboratory's cut-offs (round-15 H2)
    other_assay = unit_spec is not None and bool(unit_spec.bands) and (range_unread or not _same_reference(m, unit_spec))
    if other_assay and unit_spec is not None:
        # the reporting laboratory's range is not the cited laboratory's: another assay, whose cut-offs
        # are its own; the cited bands are not applied (the card says so)
        normal = unit_spec.normal or (None, None)
        readings.append(("", {"code": "other_lab_cutoffs", "lab": unit_spec.lab,
                              "normal_low": normal[0], "normal_high": normal[1],
                              "unit": unit, **({"unread": _quote(m.ref_text)} if range_unread else {})}))
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
    readings += _lab_statements(m, spec)
    reading, reasons = _worst(readings)
    if not reading:
        out.unjudgeable = {"code": "range_text_unread" if range_unread else "no_cutoffs", "unit_text": m.unit_text}
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
    transfusions = _transfusions(facts)
    if transfusions:
        return [_after_transfusion(r, when, transfusions) for when, r in items]
    return [r for _, r in items]


_CPT = "http://www.ama-assn.org/go/cpt"
_SNOMED = "http://snomed.info/sct"


def _transfusions(facts: ClinicalFacts) -> list[tuple[date | None, str, str]]:
    """Round-17 M7: red-cell transfusions recorded as Procedures (monitoring.toml [tpmt_activity.transfusion]), as
    (date performed or None, text, status as sent, "" when none). Round 19 H2: by SNOMED CT, CPT or ICD-10-PCS
    code, else by words; of any status fhir_mappers reads (not one that did not happen: preparation, not-done,
    entered-in-error), so a transfusion stopped part way or of unknown status counts (donor cells may have been
    given: the safe side), and the card names a status other than completed."""
    spec = load().monitoring.tpmt_activity.transfusion
    if spec is None or not facts.procedures:
        return []
    return [(p.onset, p.display or p.words, p.status) for p in facts.procedures if _is_transfusion(p, spec)]


def _is_transfusion(p, spec) -> bool:
    """A listed code; else, when no ICD-10-PCS code decides (it names the substance and whether it is autologous),
    words that name a transfusion and not only another component (round-19 H2), or a red-cell product, or red cells
    given (round-20 H2)."""
    keys = {f"{_SNOMED}|{c}" for c in spec.snomed} | {f"{_CPT}|{c}" for c in spec.cpt}
    keys |= {f"{system}|{c}" for system in spec.icd10pcs_systems for c in spec.icd10pcs}
    if keys & p.codes:
        return True
    pcs = [k.partition("|")[2].strip().upper() for k in p.codes if k.partition("|")[0] in spec.icd10pcs_systems]
    if pcs:
        return bool(set(pcs) & set(spec.icd10pcs))  # a code sent in lower case, or with spaces
    text = _normal_words(p.words or p.display)
    if {f"{_SNOMED}|{c}" for c in spec.snomed_generic} & p.codes:
        # round-20 H2: "Transfusion" (5447007) may be red cells: counted unless its words name only another component
        return _names_any(text, spec.red_cell_words) or not _names_any(text, spec.other_component_words)
    if not text.strip():
        return False
    # round-20 H2: "Packed red blood cells 2 units given", "PRBC x2 units": a red-cell product, or red cells given,
    # is a red-cell transfusion without the word "transfusion"
    if _names_any(text, spec.red_cell_product_words):
        return True
    if _names_any(text, spec.red_cell_words) and _names_any(text, spec.given_words):
        return True
    if not _names_any(text, spec.words):
        return False
    return _names_any(text, spec.red_cell_words) or not _names_any(text, spec.other_component_words)


def _normal_words(text: str) -> str:
    """Lower case, every run of other characters one space ("Packed-RBCs (2 u)" -> " packed rbcs 2 u ")."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def _names_any(text: str, words) -> bool:
    """A word or phrase at the start of a word of ``text`` (``_normal_words``): "transfusion" in "transfusions",
    not in "autotransfusion"."""
    return any(" " + " ".join(re.findall(r"[a-z0-9]+", w.lower())) in text for w in words if w.strip())


def _after_transfusion(r: ActivityReading, when, transfusions: list[tuple[date | None, str, str]]) -> ActivityReading:
    """Round-17 M7: a normal or high TPMT red-cell activity measured within the window after a red-cell transfusion
    (on or after its date), or beside a transfusion with no date, is not read as normal (donor cells: a falsely
    normal result): it becomes unjudgeable (``after_transfusion``: the transfusion's date, the days between, the
    reading it would have had), so the pgx rules name it and advise genotyping. A low result stays (donor cells
    can only raise it); an undated result beside a dated transfusion is judged unreliable too (its time unknown).
    Round-18 H3: an intermediate result so measured keeps its reading (the minimum precaution) with an
    ``after_transfusion`` reason: it may hide a poor metabolizer, and rules.pgx says so and advises genotyping."""
    if r.reading not in ("Normal Metabolizer", "High", "Intermediate Metabolizer"):
        return r
    spec = load().monitoring.tpmt_activity.transfusion
    assert spec is not None
    taken = when.date() if isinstance(when, datetime) else when
    for done, text, status in sorted(transfusions, key=lambda t: (t[0] is not None, t[0]), reverse=True):
        if done is not None and taken is not None:
            days = (taken - done).days
            if not 0 <= days <= spec.window_days:
                continue
        out = _copy(r)  # a new reading: the judged one is not changed in place
        why = {"code": "after_transfusion", "transfused": done.isoformat() if done else "",
               "transfusion": text, "status": status, "days": (taken - done).days if done and taken else None,
               "window": spec.window_days, "would_be": r.reading, "why": "measured after a red-cell transfusion"}
        if r.reading == "Intermediate Metabolizer":
            # round-18 H3: donor cells can only RAISE the activity, so an intermediate reading may hide a poor
            # metabolizer: it is kept as the minimum (the intermediate reduction is safer than a normal dose) and
            # marked, so the card names the transfusion, says the true activity may be lower and advises genotyping
            out.reasons.append(why)
            return out
        out.unjudgeable = why
        out.reading = ""
        return out
    return r


def _copy(r: ActivityReading) -> ActivityReading:
    return ActivityReading(r.reading, r.value, r.comparator, r.unit, r.text, r.date, [dict(x) for x in r.reasons],
                           r.unjudgeable, r.preliminary, r.source_ref, r.possible)


def latest_activity(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result (judged or not)."""
    readings = activity_readings(facts)
    return readings[0] if readings else None


def latest_judged(facts: ClinicalFacts) -> ActivityReading | None:
    """The newest TPMT activity result that could be judged (an unjudgeable newer one is reported separately)."""
    return next((r for r in activity_readings(facts) if r.reading), None)


__all__ = ["ActivityReading", "activity_readings", "judge_measurement", "judge_text", "latest_activity", "latest_judged"]


def _lab_statements(m: Measurement, spec) -> list[tuple[str, dict]]:
    """What the laboratory itself said of a TPMT activity: its interpretation code, and its words ("Deficient")."""
    out: list[tuple[str, dict]] = []
    code = spec.interpretation.codes.get(m.interpretation, "")
    if code:
        out.append((code, {"code": "flag", "interpretation": m.interpretation}))
    words = _words(m.interpretation_text)[0]
    if words:
        out.append((words, {"code": "lab_words", "text": m.interpretation_text[:60]}))
    return out
