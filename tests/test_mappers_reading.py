"""How one call reads its data (docs/reading-data.md, "One call reads each resource once"):

- each prefetch value is walked once (``Prefetch``) and gives each mapper what ``resources_of`` gave it;
- the mappers' memos (dates, units, drug and product names) live for one call only (issue 20);
- the shortcuts that skip work give the full reader's answers: a drug or vaccine name is searched with the
  pattern of only the names a text can contain, a unit in ASCII is normalised without the superscript step,
  a product name without "mg" names no strength.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_mappers import build_facts
from fhir_mappers import build as build_module
from fhir_mappers import fhirjson, terminology as terminology_module
from fhir_mappers.build import Prefetch
from fhir_mappers.fhirjson import call_memo, one_call, resources_of
from fhir_mappers.medications import _PER_ML, _PER_UNIT, _strengths_named
from fhir_mappers.terminology import _norm_unit, norm_unit, terminology

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import patient  # noqa: E402


def _full_ingredients(text: str) -> frozenset[str]:
    """The whole name pattern, on the text as sent and again with a hyphen between two letters read as a space
    (a combination's display, "lisinopril-hydrochlorothiazide": docs/reading-data.md "Drug recognition")."""
    t = terminology()
    found = {terminology_module._named(m, t.name_to_ingredient) for m in t.name_pattern.findall(text)}
    split = re.sub(r"(?<=[^\W\d_])-(?=[^\W\d_])", " ", text)
    found |= {terminology_module._named(m, t.name_to_ingredient) for m in t.name_pattern.findall(split)}
    return frozenset(found)


def _full_vaccines(text: str) -> frozenset[str]:
    t = terminology()
    if t.not_vaccine_pattern.search(text):
        return frozenset()
    return frozenset(terminology_module._named(m, t.vaccine_names) for m in t.vaccine_pattern.findall(text))


def test_a_name_with_a_dotted_capital_i_is_read_not_a_500() -> None:
    """main raised KeyError here (``re`` matches "İ" as "i", but "İ".lower() is two characters): an HTTP 500."""
    assert terminology_module._ingredients_in_text("AZATHİOPRINE 50 MG") == {"azathioprine"}


_NAMES = sorted(terminology().name_to_ingredient) + sorted(terminology().vaccine_names) + [
    "immune globulin", "VariZIG", "MMR", "6 MP", "Imuran", "Purixan", "ZOSTER", "live"]
_GLUE = st.sampled_from(["", " ", "-", "_", "/", "|", ", ", ".", "(", ")", "x", "1", " oral tablet ", "ſ", "é", "İ", "\n"])
_WORDS = st.lists(st.one_of(st.sampled_from(_NAMES), _GLUE, st.text(max_size=6)), max_size=8).map("".join)
_CASED = _WORDS.flatmap(lambda s: st.sampled_from([s, s.upper(), s.title(), s.swapcase()]))


@settings(max_examples=600, deadline=None)
@given(_CASED)
def test_drug_and_vaccine_names_are_the_full_patterns_answers(text: str) -> None:
    with one_call():
        assert terminology_module._ingredients_in_text(text) == _full_ingredients(text)
        assert terminology_module._vaccines_in_text(text) == _full_vaccines(text)
    assert terminology_module._ingredients_in_text(text) == _full_ingredients(text)  # outside a call too


@pytest.mark.parametrize("text", [
    "azathioprine 50 MG Oral Tablet", "AZATHIOPRINE", "6-mercaptopurine", "x6-mercaptopurine", "mercaptopurine-x",
    "Mercaptopurin 50mg", "co-trimoxazole / allopurinol", "sulfamethoxazole|trimethoprim", "zoster vaccine live",
    "Zoster Vaccine Recombinant, adjuvanted", "varicella zoster immune globulin (VariZIG)", "MMR II", "m-m-r ii",
    "aza", "", "allopurinol_300", "AZATHİOPRINE", "meſalamine"])
def test_names_in_known_cases(text: str) -> None:
    assert terminology_module._ingredients_in_text(text) == _full_ingredients(text)
    assert terminology_module._vaccines_in_text(text) == _full_vaccines(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=12), st.sampled_from(["mg", "MG", " mg ", "10³/µL", "×10⁹/L", "K/uL", "10*3/uL",
                                                           "Thousand/uL", "g/dL", "µmol/L", "mmol/L", " U / L "])))
def test_units_in_ascii_are_normalised_as_the_full_reader_does(unit: str) -> None:
    assert norm_unit(unit) == _norm_unit.__wrapped__(unit)  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None)
@given(st.one_of(_CASED, st.sampled_from(["Tabloid 40 mg", "20 MG/ML Oral Suspension", "50 Mg tablet", "5 ml",
                                           "aza 25 m g", "100 ㎎"])))
def test_product_strengths_are_the_full_patterns_answers(text: str) -> None:
    per_ml = set()
    for m in _PER_ML.finditer(text):
        volume = float(m.group(2) or 1)
        if volume > 0:
            per_ml.add(float(m.group(1)) / volume)
    per_unit = {float(m.group(1)) for m in _PER_UNIT.finditer(_PER_ML.sub(" ", text))}
    assert _strengths_named(text) == (frozenset(per_unit), frozenset(per_ml))


def test_a_memo_lives_for_one_call_only() -> None:
    calls: list[str] = []

    @call_memo
    def read(s: str) -> str:
        calls.append(s)
        return s

    with one_call():
        read("2026-11-01")
        read("2026-11-01")
        with one_call():  # nested: the outer call's memo
            read("2026-11-01")
    with one_call():
        read("2026-11-01")
    assert calls == ["2026-11-01", "2026-11-01"]
    assert fhirjson._CALL.get() is None


def test_a_memo_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(fhirjson, "MEMO_ENTRIES", 3)
    calls: list[str] = []

    @call_memo
    def read(s: str) -> str:
        calls.append(s)
        return s

    with one_call():
        for s in "abcdda":
            read(s)
    assert calls == list("abcdd")  # a, b, c kept; d (over the bound) read each time


def _shapes() -> list:
    obs = {"resourceType": "Observation", "id": "o1"}
    return [
        None, {}, [], "text", 7,
        {"resourceType": "Bundle", "entry": [{"resource": obs}, {"resource": {"resourceType": "OperationOutcome"}},
                                             {"resource": {"resourceType": ["Observation"]}}, {"fullUrl": "x"}, "junk",
                                             {"resource": {"resourceType": "Condition", "id": "c"}}, {"resource": obs}]},
        {"resourceType": "Bundle", "entry": {"resource": obs}},
        {"resourceType": "Bundle", "entry": None},
        [obs, {"resourceType": "MedicationStatement"}, None, "x", {"resourceType": "OperationOutcome"}],
        obs, {"resourceType": "Patient", "id": "p"},
    ]


@pytest.mark.parametrize("value", _shapes())
def test_prefetch_gives_each_mapper_what_resources_of_gave(value) -> None:
    pf = Prefetch({"k": value})
    assert pf.in_order["k"] == list(resources_of(value))
    for rtype in ("Observation", "Condition", "MedicationStatement", "Patient", "OperationOutcome", "Bundle"):
        assert pf.of("k", rtype) == list(resources_of(value, rtype)), rtype
        assert pf.everywhere(rtype) == list(resources_of(value, rtype)), rtype
    assert pf.of("absent", "Observation") == []


def _realistic_data() -> tuple[list[dict], dict]:
    data = patient.realistic(today=date(2026, 12, 7))
    prefetch = patient.hook_request(data)["prefetch"]
    drafts = patient.hook_request(data)["context"]["draftOrders"]["entry"]
    return [e["resource"] for e in drafts], prefetch


def test_each_prefetch_value_is_walked_once(monkeypatch) -> None:
    drafts, prefetch = _realistic_data()
    walked: list[int] = []
    real, real_list = build_module.resources_of, build_module.resource_list

    def counting(value, resource_type=None):
        walked.append(id(value))
        return real(value, resource_type)

    def counting_list(value):
        walked.append(id(value))
        return real_list(value)

    monkeypatch.setattr(build_module, "resources_of", counting)
    monkeypatch.setattr(build_module, "resource_list", counting_list)  # the walk of ``Prefetch``
    build_facts(drafts, prefetch, today=date(2026, 12, 7))
    prefetch_walks = [w for w in walked if w in {id(v) for v in prefetch.values()}]
    assert sorted(prefetch_walks) == sorted(id(v) for v in prefetch.values())  # each value once, no more


def test_the_same_request_maps_to_the_same_facts_every_time() -> None:
    """Nothing carried from one call to the next changes an answer: the second call (memos gone) is the first."""
    drafts, prefetch = _realistic_data()
    first = build_facts(copy.deepcopy(drafts), copy.deepcopy(prefetch), today=date(2026, 12, 7))
    second = build_facts(drafts, prefetch, today=date(2026, 12, 7))
    assert repr(first) == repr(second)
    assert first.labs and first.active_medications and first.gene_results
    assert json.dumps(prefetch, default=str)  # the request itself is not changed by reading it
