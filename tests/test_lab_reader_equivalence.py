"""Equivalence of the restructured lab-value reader (session 11): ``_measure``, ``classified_measurements`` and
``build._classify`` as they were before (kept here verbatim as the reference) and as they are now give the same
facts, gaps, result texts and absent results for real laboratory shapes from tests/data and random mutations of
them (units, systems, comparators, reference ranges, interpretations, status, dates, components)."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Iterable

import pytest

from fhir_mappers.build import _classify
from fhir_mappers.facts import AbsentResult, DataGap, Measurement, ResultText
from fhir_mappers.fhirjson import SENT_LIMIT, clip, code_keys, concept_text, effective_time, number, ref_of
from fhir_mappers.observations import (LOINC, ObservationKind, _code_table, codings, _measure, ANALYTE_LABELS, PANEL, UCUM, UnitReader, _analyte_named, _as_sent, _as_sent_value,
                                       _COMPARATOR, _interpretations, _quantity, _range, _result_text, _unit_of,
                                       _unrecognised_code, _usable, absent_result, analyte_named, classified_measurements,
                                       classify, component_results, genes_of_uncoded_result, is_preliminary, norm_unit,
                                       terminology)
from msgspec.structs import replace

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------ the reference: the code before session 11
# (one deliberate change since, made in both: round-19 m12 quotes a value as sent whole, up to 60 characters, and
# marks a shortened one with "…" (``clip``) instead of cutting it at 40 characters mid-word; round-20 m4 raises the
# bound to ``fhirjson.SENT_LIMIT``, 200 characters, so a laboratory's long comment keeps its actionable end)

def _measure_before(obs: dict, analyte_name: str, gaps: list[DataGap], label: str,
             texts: list[ResultText] | None = None, units: UnitReader | None = None,
             absent: list[AbsentResult] | None = None) -> Measurement | None:
    """The one reader of a laboratory value. A number in a unit the analyte converts becomes a Measurement
    (comparator, flags, reference range and the unit as printed kept). Anything else is never dropped: a
    DataGap quoting the value and unit as sent, and a ResultText (with the laboratory's flags) that the
    rules read, so that a critical flag on a value that cannot be converted still counts. A result sent with
    ``dataAbsentReason`` and no value goes to ``absent`` (an ``AbsentResult`` quoting the reason; round-8 H2)."""
    analyte = terminology().analytes[analyte_name]
    units = units or UnitReader()
    texts = [] if texts is None else texts
    q = _quantity(obs)
    if q is None:
        if analyte.keep_unconverted:
            # words instead of a number ("Deficient"), or only an interpretation: the rules read the words
            texts.append(_result_text(obs, analyte_name, "the result has no numeric value"))
            return None
        if obs.get("dataAbsentReason") is not None:
            if absent is not None:
                absent.append(absent_result(obs, analyte_name))  # the rules decide whether it is a gap
            return None
        if obs.get("dataAbsentReason") is None and (obs.get("valueString") is not None or obs.get("interpretation")):
            sent = _as_sent(obs, None, "")
            texts.append(_result_text(obs, analyte_name, "no numeric value"))
            gaps.append(DataGap(label, f"a result reads '{sent}' and has no numeric value" if sent
                                else "a result has only the laboratory's flag, no value", analyte_name, sent=sent))
        elif isinstance(panel := obs.get(PANEL), str):
            # a panel that lists this analyte with no value it could be read from (round-11 H1): quoted, never silent
            sent = clip(_as_sent_value(obs), SENT_LIMIT)
            texts.append(_result_text(obs, analyte_name, "no numeric value"))
            gaps.append(DataGap(label, f"the panel {panel} lists it " + (f"as '{sent}', not a number" if sent
                                                                         else "with no value"), analyte_name, sent=sent))
        return None
    value = number(q.get("value"))
    if value is None:
        if analyte.keep_unconverted:
            texts.append(_result_text(obs, analyte_name, "the result has no readable number"))
            return None
        texts.append(_result_text(obs, analyte_name, "no readable number", q, _unit_of(q)))
        if q.get("ambiguous_comma"):
            sent = _as_sent(obs, q, "")
            gaps.append(DataGap(label, f"a result reads '{sent}': the comma could be a decimal comma or a "
                                "thousands separator, so the number is not guessed", analyte_name, sent=sent))
        else:
            gaps.append(DataGap(label, "a result has no readable number", analyte_name))
        return None
    comparator = c if isinstance(c := q.get("comparator"), str) else ""
    comparator = _COMPARATOR.get(comparator, comparator)
    unit = _unit_of(q)
    low_q, high_q, ref_text = _range(obs)
    if not unit:  # a number sent as text: the range's unit says what it is
        unit = next((_unit_of(b) for b in (low_q, high_q) if b is not None and _unit_of(b)), "")
    sent_unit = unit
    if not unit and analyte.unit_by_code and analyte.unit_by_code & code_keys(obs.get("code")):
        unit = analyte.unit  # no unit sent, but the LOINC code is defined in one unit (eGFR: mL/min/{1.73_m2})
    factor, canonical = units(analyte, unit)
    if factor is None:
        if not analyte.keep_unconverted:
            sent = _as_sent(obs, q, unit)
            flags = _interpretations(obs)[0]
            flagged = f" (flagged {', '.join(flags)} by the laboratory)" if flags else ""
            why = (f"a result of '{sent}'{flagged} is in the unit '{unit}', which this service does not convert" if unit
                   else f"a result of '{sent}'{flagged} has no unit")
            text = _result_text(obs, analyte_name, "unit not converted" if unit else "no unit", q, unit)
            bound_only = False
            if not unit and comparator in ("", "<", "<=") and analyte.factors:
                # every unit this analyte is read in converts by a factor up to the largest: a bound, not a value
                text = replace(text, upper_bound=round(value * max(analyte.factors.values()), 6))
                bound_only = True
            texts.append(text)
            gaps.append(DataGap(label, why, analyte_name, sent=sent, bound_only=bound_only))
            return None
        factor, canonical = 1.0, ""  # kept as written: judged by the laboratory's own range only
    low = high = None
    for key, bound in (("low", low_q), ("high", high_q)):
        if bound is None:
            continue
        bound_value = number(bound.get("value"))
        if bound_value is None:
            continue
        bound_unit = _unit_of(bound) or unit
        if canonical:
            # a range in the value's own unit (the usual case) converts as the value did: looked up once
            bf, bound_canonical = (factor, canonical) if bound_unit == unit else units(analyte, bound_unit)
            same = bound_canonical == canonical
        else:
            bf, same = 1.0, norm_unit(bound_unit) == norm_unit(unit)
        if bf is not None and same:
            if key == "low":
                low = bound_value * bf
            else:
                high = bound_value * bf
    flags, interpretation_text = _interpretations(obs)
    interpretation = flags[0] if flags else ""
    if comparator in ("<", "<=") and not interpretation:
        interpretation = "<"
    elif comparator in (">", ">=") and not interpretation:
        interpretation = ">"
    # analyte, value, unit, when, source_ref, ref_low, ref_high, interpretation, preliminary, unit_text, comparator,
    # interpretation_text, ref_text, flags, sent_value (positional: facts are built by the thousand per call)
    # unit_text: the unit as the laboratory sent it ("" when none was: read by the code's unit, unit_by_code)
    return Measurement(analyte_name, round(value * factor, 6), canonical, effective_time(obs), ref_of(obs), low, high,
                       interpretation, is_preliminary(obs), sent_unit, comparator, interpretation_text, ref_text, flags,
                       value)


def _classified_measurements_before(observations: Iterable[tuple[dict, str | None]], gaps: list[DataGap],
                            texts: dict[str, list[ResultText]] | None = None,
                            absent: dict[str, list[AbsentResult]] | None = None) -> dict[str, list[Measurement]]:
    """``measurements`` of Observations already classified: (Observation, analyte of its LOINC code or None)."""
    out: dict[str, list[Measurement]] = {}
    texts = {} if texts is None else texts
    absent = {} if absent is None else absent
    units = UnitReader()  # this call's unit look-ups (kept for this call only)
    names: dict[str, str | None] = {}  # this call's result names -> analyte
    for obs, analyte in observations:
        if not _usable(obs):
            if obs.get("status") == "cancelled":
                # ordered and not done: a fact (AbsentResult), never a value; entered-in-error stays silent
                name = analyte if analyte is not None else _analyte_named(concept_text(obs.get("code")), names)
                if name:
                    absent.setdefault(name, []).append(absent_result(obs, name))
            continue
        if analyte is None:
            analyte = _analyte_named(concept_text(obs.get("code")), names)
            if analyte is None:
                _unrecognised_code(obs, gaps)
                continue
        if analyte:
            bucket: list[ResultText] = texts.setdefault(analyte, [])
            m = _measure_before(obs, analyte, gaps, ANALYTE_LABELS.get(analyte, analyte), bucket, units,
                                absent.setdefault(analyte, []) if "dataAbsentReason" in obs else None)
            if m is not None:
                out.setdefault(analyte, []).append(m)
    for kept in (texts, absent):
        for key in [k for k, v in kept.items() if not v]:
            del kept[key]
    newest_first: list[list[Measurement] | list[ResultText] | list[AbsentResult]] = [
        *out.values(), *texts.values(), *absent.values()]
    for values in newest_first:
        values.sort(key=lambda m: (m.when is not None, m.when), reverse=True)
    return out


def _classify_one_before(obs: dict) -> tuple[ObservationKind, str | None]:
    table = _code_table()
    kind: ObservationKind = "numeric"
    analyte = None
    for c in codings(obs.get("code")):
        code = c.get("code")
        if not isinstance(code, (str, int)):
            if code is not None and analyte is None and c.get("system") == LOINC:  # as codes_in reads it
                analyte = terminology().loinc_to_analyte.get(str(code))
            continue
        entry = table.get(f"{c.get('system') or ''}|{code}")
        if entry is not None:
            if entry[0] == "genomic" or (entry[0] == "status" and kind == "numeric"):
                kind = entry[0]
            if analyte is None:
                analyte = entry[1]
    return kind, analyte


def _classify_before(observations: list[dict]) -> tuple[list[tuple[dict, str | None]], list[dict], list[dict]]:
    """Read each Observation's code once and send it to the one mapper that uses it:
    (numeric results with the analyte of their LOINC code, TPMT/NUDT15 genotype or phenotype,
    pregnancy/breastfeeding status). The same Observation arriving under two keys is read once."""
    numeric, genomic, status = [], [], []
    seen: set = set()
    for obs in observations:
        rid = obs.get("id")
        key = rid if isinstance(rid, str) and rid else id(obs)  # an id that is a list or object must not raise
        if key in seen:
            continue
        seen.add(key)
        kind, analyte = _classify_one_before(obs)
        # its components are results of their own (round-11 H1: a CBC panel's WBC, neutrophils, platelets)
        parts = [(c, _classify_one_before(c)) for c in component_results(obs, kind)] if "component" in obs else []
        # a panel whose genotype / phenotype is a component of its own: the component is the result, not the panel
        panel_of_genes = any(k == "genomic" for _, (k, _a) in parts)
        for o, (k, a) in ((obs, (kind, analyte)), *parts):
            if k == "numeric" and a is None and not (o is obs and panel_of_genes) and genes_of_uncoded_result(o) \
                    and analyte_named(concept_text(o.get("code"))) is None:
                # names TPMT / NUDT15 but no code or name this service reads (round-5 M2): gene_results reads it
                # from its words or reports it found but unreadable, never absent
                genomic.append(o)
            elif k == "numeric":
                numeric.append((o, a))
            elif k == "genomic":
                genomic.append(o)
            else:
                status.append(o)
    return numeric, genomic, status


# ------------------------------------------------------------------ real shapes and their mutations


def _observations(value: object) -> list[dict]:
    """Every Observation in a JSON document (bundles, hook requests, contained resources)."""
    out: list[dict] = []
    if isinstance(value, dict):
        if value.get("resourceType") == "Observation":
            out.append(value)
        for v in value.values():
            out += _observations(v)
    elif isinstance(value, list):
        for v in value:
            out += _observations(v)
    return out


def _lab_shapes() -> list[dict]:
    found: dict[str, dict] = {}
    for path in sorted(DATA.rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        for obs in _observations(doc):
            if classify(obs)[0] == "numeric":
                found.setdefault(json.dumps(obs, sort_keys=True), obs)
    return list(found.values())


SHAPES = _lab_shapes()
_UNITS = ["10*9/L", "10*3/uL", "g/dL", "g/L", "mg/dL", "umol/L", "U/L", "fL", "kg", "[lb_av]", "%", "mL/min/{1.73_m2}",
          "10³/µL", "x10^9/L", "", "  ", "nonsense", "mmol/L", "10*12/L", "µmol/L", "mL/min", "IU/L"]
_SYSTEMS = [None, UCUM, "http://example.org/units", "", 3]
_VALUES = [5.9, 4, 0, -1.5, 0.1234567, 1e12, 250.0, 70.0, "4.2", "n/a", True, None, float("nan"), [1]]
_TIMES = ["2026-11-30T08:06:00+01:00", "2026-11-30T07:06:00Z", "2026-11-29", "2026-11", "2026", "not a date", None,
          "2026-11-30T08:06:00.000001+01:00", "2026-11-30T08:06:00-05:00"]
_FLAGS = [None, [], [{"coding": [{"code": "L"}]}], [{"coding": [{"code": "HH", "display": "Critical high"}], "text": "High"}],
          [{"text": "Deficient"}], ["abnormal"], [{"coding": [{"code": "A"}, {"code": "H"}]}], {"coding": [{"code": "N"}]}]


def _quantity_like(rng: random.Random, unit: str | None = None) -> dict:
    q: dict = {"value": rng.choice(_VALUES[:9])}
    u = unit if unit is not None else rng.choice(_UNITS)
    pick = rng.random()
    if pick < 0.4:
        q.update(code=u, system=UCUM, unit=u)
    elif pick < 0.55:
        q.update(code=u)
    elif pick < 0.7:
        q.update(unit=u)
    elif pick < 0.85:
        q.update(code=u, system=rng.choice(_SYSTEMS), unit=rng.choice(_UNITS))
    if rng.random() < 0.15:
        q["comparator"] = rng.choice(["<", "<=", ">", ">=", "≤", "≥", "", 5, None])
    return q


def _mutate(obs: dict, rng: random.Random) -> dict:
    o = copy.deepcopy(obs)
    for _ in range(rng.randint(0, 4)):
        what = rng.randrange(12)
        if what == 0:
            o["valueQuantity"] = _quantity_like(rng)
            o.pop("valueString", None)
        elif what == 1 and isinstance(o.get("valueQuantity"), dict):
            o["valueQuantity"]["value"] = rng.choice(_VALUES)
        elif what == 2:
            o.pop("valueQuantity", None)
            o["valueString"] = rng.choice(["< 1.0 U/mL", "2.1", ">= 50 mU/L", "<10", "0,8", "1,234", "Deficient", "4.0 mg/dL"])
        elif what == 3:
            unit = o["valueQuantity"].get("code") if isinstance(o.get("valueQuantity"), dict) and rng.random() < 0.6 else None
            rr: dict = {}
            if rng.random() < 0.8:
                rr["low"] = _quantity_like(rng, unit if isinstance(unit, str) else None)
            if rng.random() < 0.8:
                rr["high"] = _quantity_like(rng, unit if isinstance(unit, str) else None)
            if rng.random() < 0.3:
                rr["text"] = rng.choice(["4-11", 3, ""])
            o["referenceRange"] = rng.choice([[rr], [rr, {"text": "second"}], rr, [], ["x", rr], None, [{"low": 3}]])
        elif what == 4:
            o["interpretation"] = rng.choice(_FLAGS)
        elif what == 5:
            o["status"] = rng.choice(["final", "preliminary", "partial", "cancelled", "entered-in-error", "registered",
                                      "amended", ["final"], None])
        elif what == 6:
            o["effectiveDateTime"] = rng.choice(_TIMES)
            if rng.random() < 0.3:
                o.pop("issued", None)
        elif what == 7:
            o["dataAbsentReason"] = rng.choice([{"coding": [{"code": "error"}]}, {"text": "not done"}, "x"])
            if rng.random() < 0.5:
                o.pop("valueQuantity", None)
        elif what == 8:
            o["id"] = rng.choice(["dup-1", "dup-2", o.get("id"), 5, None])
        elif what == 9 and isinstance(o.get("valueQuantity"), dict):
            q = o["valueQuantity"]
            q.pop(rng.choice(["code", "system", "unit", "value", "comparator"]), None)
        elif what == 10:
            o["valueInteger"] = rng.choice([3, True, "3"])
            if rng.random() < 0.5:
                o.pop("valueQuantity", None)
        elif what == 11 and rng.random() < 0.5:
            o["component"] = [{"code": o.get("code"), "valueQuantity": _quantity_like(rng)}]
    return o


def _same(a: object, b: object) -> bool:
    """Equal, NaN-safe (a value that is NaN equals NaN here), compared through repr of the facts."""
    return repr(a) == repr(b)


def _both(observations: list[dict]) -> tuple[tuple, tuple]:
    def run(classify_fn, measure_fn) -> tuple:
        obs = copy.deepcopy(observations)
        numeric, genomic, status = classify_fn(obs)
        gaps: list[DataGap] = []
        texts: dict = {}
        absent: dict = {}
        labs = measure_fn(numeric, gaps, texts, absent)
        return ([(o.get("id"), a) for o, a in numeric], [o.get("id") for o in genomic], [o.get("id") for o in status],
                labs, gaps, texts, absent)
    return run(_classify_before, _classified_measurements_before), run(_classify, classified_measurements)


@pytest.mark.skipif(not SHAPES, reason="no laboratory shapes in tests/data")
def test_real_shapes_read_as_before() -> None:
    before, after = _both(SHAPES)
    assert _same(before, after)


@pytest.mark.parametrize("seed", range(40))
def test_mutated_shapes_read_as_before(seed: int) -> None:
    rng = random.Random(seed)
    batch = [_mutate(rng.choice(SHAPES), rng) for _ in range(60)]
    before, after = _both(batch)
    assert _same(before, after)


def test_measure_one_by_one_as_before() -> None:
    rng = random.Random(11)
    for _ in range(1500):
        obs = _mutate(rng.choice(SHAPES), rng)
        analyte = classify(obs)[1] or rng.choice(["wbc", "neutrophils", "platelets", "alt", "creatinine", "egfr", "weight",
                                                  "tpmt_activity", "hemoglobin", "bilirubin"])
        results = []
        for fn in (_measure_before, _measure):
            gaps: list[DataGap] = []
            texts: list = []
            absent: list = []
            results.append((fn(copy.deepcopy(obs), analyte, gaps, "label", texts, UnitReader(), absent), gaps, texts, absent))
        assert _same(results[0], results[1]), obs


_CODES = [("http://loinc.org", "6690-2"), ("http://loinc.org", "751-8"), ("http://loinc.org", "79713-4"),
          ("http://loinc.org", "82810-3"), ("http://loinc.org", "11526-1"), ("http://loinc.org", 6690), (None, "6690-2"),
          ("http://example.org", "6690-2"), ("http://loinc.org", ["x"]), ("", "1"), ("http://loinc.org", None)]


@pytest.mark.parametrize("seed", range(10))
def test_classify_as_before(seed: int) -> None:
    rng = random.Random(seed)
    concepts: list[object] = [shape.get("code") for shape in SHAPES]
    for _ in range(300):
        codings_ = [{"system": s, "code": c} if s is not None else {"code": c}
                    for s, c in rng.sample(_CODES, rng.randint(1, 3))]
        concepts.append(rng.choice([{"coding": codings_}, {"coding": codings_[:1]}, {"coding": codings_[0]}, codings_,
                                    codings_[0], {"text": "x"}, None, "6690-2", {"coding": ["x", codings_[0]]}]))
    for concept in concepts:
        obs = {"resourceType": "Observation", "code": copy.deepcopy(concept)}
        assert classify(obs) == _classify_one_before(obs), concept
