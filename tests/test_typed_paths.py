"""The mapping's one-pass shortcuts give the lenient readers' answers, and the one lab reader keeps its record.

- ``classify`` (one pass over an Observation's codings, against a table built once) sends each
  Observation where the code-set readers (``code_keys`` / ``codes_in``) would, with the analyte of
  its LOINC code;
- the lab reader ``_measure`` is the only reader of a laboratory value (its one-pass twin
  ``_measure_usual`` was folded into it, issue 20). It is held against the answers the lenient reader gave
  before (``tests/data/recorded/lab_reader_before_one_reader.json``, recorded on main @ 8267d23 by
  ``_measure`` for every Observation of the test data, the examples, the builders and the benchmark
  patients): every Measurement is read again exactly; a result that was a data gap is still one, unless
  its unit is now read through the cited laboratory-unit table (``fhir_mappers/lab_units.toml``), the
  one intended widening. On random mutations of them (wrong types, lists for objects and objects for
  lists, missing or null fields, numbers as text, NaN) it never raises and never drops a value silently.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import sys
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest

from fhir_mappers.facts import (AllergyFact, CodedObservation, ConditionFact, DailyDose, DataGap, GeneResult, Measurement,
                                MedicationFact, PatientFact, PriorTherapy, ResultText)
from fhir_mappers.fhirjson import as_list, code_keys, codes_in, resources_of
from fhir_mappers.medications import _strengths_named
from fhir_mappers.observations import ANALYTE_LABELS, _measure, _quantity, _usable, classify, measurements
from fhir_mappers.terminology import LOINC, norm_unit, terminology
from tests import builders

ROOT = Path(__file__).resolve().parent.parent


def _walk(value: Any) -> Iterator[dict]:
    """Every Observation anywhere in a JSON document (Bundles, prefetch, contained, lists)."""
    if isinstance(value, dict):
        if value.get("resourceType") == "Observation":
            yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


RECORDED_ON = date(2026, 12, 7)  # tests/data/recorded/lab_reader_before_one_reader.json was written on this day


def _documents() -> Iterator[Any]:
    for folder in ("tests/fixtures", "tests/fixtures_fhir", "tests/data", "examples"):
        for path in sorted((ROOT / folder).rglob("*.json")):
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
    # the builders' and the benchmark patient's dates count back from a day: the day the answers were recorded, so
    # that the same Observations (compared by their hash, dates included) are read again on any later day
    saved = builders.TODAY
    builders.TODAY = RECORDED_ON
    try:
        yield builders.normal_labs()
        yield builders.normal_pgx()
        yield [builders.weight(70), builders.weight(154, unit="lb", code="[lb_av]"),
               builders.weight(70, unit="stone", code="stone"), builders.lab("731-0", 40, "%"),
               builders.lab("1742-6", 30, "U/L"), builders.phenotype_tpmt("Poor"),
               builders.genotype_ig("TPMT", "*1/*3A"), builders.genotype_core("NUDT15", "*1/*3")]
    finally:
        builders.TODAY = saved
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import patient as bench_patient
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    yield bench_patient.realistic(today=RECORDED_ON)
    yield bench_patient.large(today=RECORDED_ON)


def _observations() -> list[dict]:
    out, seen = [], set()
    for doc in _documents():
        for obs in _walk(doc):
            key = json.dumps(obs, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(obs)
    return out


OBSERVATIONS = _observations()


def _reference_kind(obs: dict) -> tuple[str, set[str]]:
    """Where the code-set readers send an Observation, and the analytes its LOINC codes name."""
    t = terminology()
    keys = code_keys(obs.get("code"))
    kind = ("genomic" if keys & (t.genotype_codes | t.phenotype_codes | t.variant_codes)
            else "status" if keys & {f"{LOINC}|{c}" for c in t.status_loinc} else "numeric")
    return kind, {t.loinc_to_analyte[c] for c in codes_in(obs.get("code"), LOINC) if c in t.loinc_to_analyte}


RECORDED = json.loads((ROOT / "tests/data/recorded/lab_reader_before_one_reader.json").read_text(encoding="utf-8"))


def _key(obs: dict) -> str:
    return hashlib.sha256(json.dumps(obs, sort_keys=True).encode()).hexdigest()[:20]


def _encoded(fact: Any) -> dict:
    return {f.name: (v.isoformat() if hasattr(v := getattr(fact, f.name), "isoformat") else v) for f in msgspec.structs.fields(fact)}


def _names(obs: dict) -> list[str]:
    kind, analytes = _reference_kind(obs)
    analyte = classify(obs)[1]
    return sorted(analytes | {"wbc", "tpmt_activity", "weight"} | ({analyte} if analyte else set()))


def _newly_readable(obs: dict, name: str) -> bool:
    """A result whose unit the laboratory-unit table now reads (it was a data gap before the table)."""
    q = _quantity(obs) or {}
    units = {u for u in (q.get("code"), q.get("unit")) if isinstance(u, str)}
    return any(norm_unit(u) in terminology().lab_units for u in units)


def _check_recorded(obs: dict) -> bool:
    """The one reader gives the recorded answer on ``obs``; True when a recorded Measurement was read again."""
    kind, analytes = _reference_kind(obs)
    got_kind, analyte = classify(obs)
    assert got_kind == kind
    assert (analyte in analytes) if analytes else analyte is None
    recorded = RECORDED.get(_key(obs))
    if recorded is None:
        return False
    read_again = False
    for name in _names(obs):
        before = recorded.get(name, {"measurement": None, "gaps": [], "texts": []})
        gaps: list = []
        texts: list = []
        m = _measure(copy.deepcopy(obs), name, gaps, ANALYTE_LABELS.get(name, name), texts)
        if before["measurement"] is not None:
            assert m is not None, (obs, name)
            now = _encoded(m)
            assert {k: now[k] for k in before["measurement"]} == before["measurement"], (obs, name)
            assert not gaps
            read_again = True
        elif before["gaps"]:
            assert gaps or (m is not None and _newly_readable(obs, name)), (obs, name)
        else:
            assert m is None and not gaps, (obs, name)
        # words of analytes that keep them (TPMT activity "Deficient") are kept as before
        kept = [(t["analyte"], t["text"], t["interpretation"], t["why"]) for t in before["texts"]]
        assert [(t.analyte, t.text, t.interpretation, t.why) for t in texts][:len(kept)] == kept or \
            not terminology().analytes[name].keep_unconverted, (obs, name)
    return read_again


def test_the_data_has_what_the_check_needs() -> None:
    kinds = {classify(o)[0] for o in OBSERVATIONS}
    assert len(OBSERVATIONS) > 300 and kinds == {"numeric", "genomic", "status"}


def test_the_one_reader_gives_the_recorded_answers_on_every_observation_of_the_test_data() -> None:
    covered = [o for o in OBSERVATIONS if _key(o) in RECORDED]
    assert len(covered) > 300  # the record still describes the test data
    assert sum(_check_recorded(obs) for obs in covered) > 100


def _mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """One random change somewhere in ``value``: a wrong type, a list for an object or the other way
    round, a missing or null field, a number as text, NaN, a bool, an empty string."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        out = dict(value)
        out[key] = _mutate(value[key], rng, depth + 1)
        if rng.random() < 0.1:
            del out[key]
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        return [*value[:i], _mutate(value[i], rng, depth + 1), *value[i + 1:]]
    choices: list[Any] = [None, "", "x", "4.5", "< 1.0", True, 0, 7, 2.5, float("nan"), math.inf, [], {}, [value], {"value": value}]
    if isinstance(value, list) and value:
        choices.append(value[0])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        choices += [str(value), -value, value * 1000, 2 ** 60]
    if isinstance(value, str):
        choices += [value.upper(), f" {value} ", "http://unitsofmeasure.org", "mmol/L", "10*9/L", "g/dL", "%", "Thousand/uL"]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", range(4))
def test_the_one_reader_never_raises_nor_drops_a_value_on_mutated_observations(seed: int) -> None:
    rng = random.Random(seed)
    numeric = [o for o in OBSERVATIONS if classify(o)[0] == "numeric"]
    read = unread = 0
    for _ in range(1500):
        obs = _mutate(rng.choice(numeric), rng)
        for _ in range(rng.randrange(3)):
            obs = _mutate(obs, rng)
        if not isinstance(obs, dict):
            continue
        for name in _names(obs):
            gaps: list = []
            texts: list = []
            m = _measure(obs, name, gaps, ANALYTE_LABELS.get(name, name), texts)
            if m is not None:
                read += 1
                assert math.isfinite(m.value) and not gaps
            elif _quantity(obs) is not None:
                unread += 1
                assert gaps or texts, (obs, name)  # a value that was sent is never dropped without a word
    assert read > 100 and unread > 100  # both sides were exercised


def test_measurements_reads_what_the_lenient_reader_reads() -> None:
    """``measurements`` (the public reader) against ``_measure`` for every usable numeric result."""
    numeric = [o for o in OBSERVATIONS if classify(o)[0] == "numeric" and _usable(o) and classify(o)[1]]
    gaps: list = []
    by_analyte = measurements(numeric, gaps)
    expected: dict[str, list] = {}
    for obs in numeric:
        name = classify(obs)[1] or ""
        m = _measure(obs, name, [], ANALYTE_LABELS.get(name, name), [])
        if m is not None:
            expected.setdefault(name, []).append(m)
    for values in expected.values():
        values.sort(key=lambda m: (m.when is not None, m.when), reverse=True)
    assert by_analyte == expected and by_analyte


def _reference_resources_of(value: Any, resource_type: str | None = None) -> Iterator[dict]:
    """``resources_of`` as it was written before it became one list comprehension (the reference)."""
    items: list = []
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        items = [e.get("resource") for e in as_list(value.get("entry")) if isinstance(e, dict)]
    elif isinstance(value, dict):
        items = [value]
    elif isinstance(value, list):
        items = value
    for r in items:
        if not isinstance(r, dict) or r.get("resourceType") == "OperationOutcome":
            continue
        if resource_type is None or r.get("resourceType") == resource_type:
            yield r


def _values(doc: Any) -> list[Any]:
    """Every object and array of a JSON document, the document first."""
    out, todo = [], [doc]
    while todo:
        value = todo.pop()
        if isinstance(value, (dict, list)):
            out.append(value)
            todo.extend(reversed(list(value.values()) if isinstance(value, dict) else value))
    return out


ODD_VALUES: list[Any] = [None, 1, "x", [], {}, [None, 2, {"resourceType": "OperationOutcome"}], {"resourceType": "Bundle"},
                         {"resourceType": "Bundle", "entry": {"resource": {"resourceType": "Medication", "id": "m"}}},
                         {"resourceType": "Bundle", "entry": [None, 3, {"resource": None}, {"resource": [1]},
                                                              {"resource": {"resourceType": "OperationOutcome"}},
                                                              {"resource": {"resourceType": "Observation", "id": "o"}}]},
                         {"resourceType": "OperationOutcome"}, {"resourceType": ["Bundle"]}]


def test_resources_of_picks_what_the_generator_picked() -> None:
    types = [None, "Observation", "Medication", "MedicationRequest", "Patient", "OperationOutcome", "Bundle"]
    checked = 0
    for doc in [*_documents(), ODD_VALUES]:
        for value in [*ODD_VALUES, *_values(doc)]:
            for rtype in types:
                expected = list(_reference_resources_of(value, rtype))
                assert next(resources_of(value, rtype), None) is (expected[0] if expected else None)  # an iterator, as before
                assert [id(r) for r in resources_of(value, rtype)] == [id(r) for r in expected]
                checked += bool(expected)
    assert checked > 1000


@pytest.mark.parametrize("text", ["azathioprine 50 MG Oral Tablet", "Tabloid 40 mg", "mercaptopurine 20 MG/ML Oral Suspension",
                                  "50 mg / 5 ml", "10 mg and 25 mg", "0 mg/0 ml", "x | Imuran 25mg | ", ""])
def test_product_name_strengths_are_read_as_before(text: str) -> None:
    import re

    per_ml = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*mg\s*/\s*(\d+(?:\.\d+)?)?\s*ml\b", re.IGNORECASE)
    per_unit = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*mg\b(?!\s*/)", re.IGNORECASE)
    ml = {float(m.group(1)) / float(m.group(2) or 1) for m in per_ml.finditer(text) if float(m.group(2) or 1) > 0}
    unit = {float(m.group(1)) for m in per_unit.finditer(per_ml.sub(" ", text))}
    assert _strengths_named(text) == (frozenset(unit), frozenset(ml))


@pytest.mark.parametrize("cls", [DataGap, DailyDose, PriorTherapy, MedicationFact, Measurement, GeneResult, ResultText,
                                 CodedObservation, AllergyFact, ConditionFact, PatientFact])
def test_fact_constructors_keep_the_struct_contract(cls: type) -> None:
    """The facts are frozen msgspec Structs (built in C: a dozen per call): positional and keyword arguments, the
    defaults, equality, frozen, and ``msgspec.structs.replace``."""
    fs = msgspec.structs.fields(cls)
    required = [f"v{i}" for i, f in enumerate(fs) if f.required]
    fact = cls(*required)
    for i, f in enumerate(fs):
        assert getattr(fact, f.name) == (f"v{i}" if f.required else f.default)
    assert cls(**{f.name: getattr(fact, f.name) for f in fs}) == fact
    with pytest.raises(AttributeError):
        setattr(fact, fs[0].name, "changed")
    assert msgspec.structs.replace(fact, **{fs[0].name: "other"}) != fact
    with pytest.raises(TypeError):
        cls(*required, *range(len(fs)))  # too many arguments
    if required:
        with pytest.raises(TypeError):
            cls()


@pytest.mark.parametrize("unit", [{"code": 5}, {"code": ["kg"]}, {"unit": 7}, {"code": {"x": 1}}])
def test_a_unit_that_is_not_text_is_no_unit_not_an_error(unit: dict) -> None:
    """A number, list or object where the unit string belongs: a data gap, never an exception (a 5xx)."""
    from fhir_mappers.observations import measurements

    obs = {"resourceType": "Observation", "id": "w", "status": "final", "effectiveDateTime": "2026-11-20",
           "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}, "valueQuantity": {"value": 70, **unit}}
    gaps: list[DataGap] = []
    assert measurements([obs], gaps) == {} and gaps and "no unit" in gaps[0].why


def test_call_memo_keeps_only_short_keys_and_only_for_one_call() -> None:
    from fhir_mappers.fhirjson import SHORT_KEY, call_memo, one_call

    seen: list[str] = []

    @call_memo
    def upper(s: str) -> str:
        seen.append(s)
        return s.upper()

    with one_call():
        assert upper("kg") == "KG" and upper("kg") == "KG" and upper("x" * (SHORT_KEY + 1)) == "X" * (SHORT_KEY + 1)
        upper("x" * (SHORT_KEY + 1))
    assert seen == ["kg", "x" * (SHORT_KEY + 1), "x" * (SHORT_KEY + 1)]  # the short key read once, the long one each time
    upper("kg")  # a new call (here: none) remembers nothing of the last
    assert seen[-1] == "kg" and len(seen) == 4
