"""The mappers' one-walk readers give what the separate readers they replace give (session 11, fact mapping):

- ``medications.read_concept``: one walk of a drug concept; its words and codes are exactly ``concept_text``,
  ``all_text``, ``codes_in`` (RxNorm, CVX) and the WHO ATC / NDC codings, on random concept shapes;
- ``terminology.names_in_text``: a text's drug and vaccine names at once, as ``_ingredients_in_text`` and
  ``_vaccines_in_text`` give them;
- ``fhirjson.resource_list`` is ``list(resources_of(value))``; ``number`` keeps refusing NaN and the infinities;
- ``fhirjson.parse_datetime`` (no longer memoised) reads every string as the memoised reader did.
"""
from __future__ import annotations

import copy
import random
from datetime import datetime, timezone
from typing import Any

import pytest

from fhir_mappers import terminology as terminology_module
from fhir_mappers.fhirjson import all_text, codes_in, codings, concept_text, number, one_call, parse_datetime, resource_list, resources_of
from fhir_mappers.medications import read_concept
from fhir_mappers.terminology import ATC, CVX, NDC, RXNORM, names_in_text

_ATOMS: list[Any] = [None, "", "x", 0, 7, 2.5, True, [], {}, RXNORM, CVX, *sorted(ATC), *sorted(NDC), "1256", "03", "L04AX01",
          "0006-4681-00", "azathioprine 50 MG Oral Tablet", "MMR vaccine, live", "Imuran", {"code": "x"}]


def _concept(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.25:
        return copy.deepcopy(rng.choice(_ATOMS))
    if r < 0.45:
        return [_concept(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["coding", "text", "code", "system", "display"]
    return {rng.choice(keys): _concept(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _codes(concept, systems) -> list[str]:
    return [str(c["code"]) for c in codings(concept)
            if isinstance(c.get("system"), str) and c["system"] in systems and c.get("code") is not None]


@pytest.mark.parametrize("seed", range(4))
def test_read_concept_is_the_separate_readers(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(3000):
        concept = _concept(rng)
        (rxnorm, cvx, atc, ndc), words = read_concept(concept)
        assert (words[0] if words else "") == concept_text(concept)
        assert " | ".join(words) == all_text(concept)
        assert set(rxnorm) == codes_in(concept, RXNORM) and set(cvx) == codes_in(concept, CVX)
        assert atc == _codes(concept, ATC) and ndc == _codes(concept, NDC)


_TEXTS = ["azathioprine 50 MG Oral Tablet", "Imuran 50 mg | azathioprine", "sulfamethoxazole-trimethoprim 800-160",
          "6-MP 50 mg", "MMR vaccine, live | measles, mumps and rubella virus vaccine", "VariZIG (varicella zoster immune globulin)",
          "FluMist Quadrivalent", "AZATHİOPRINE 50 MG", "allopurinol 300 MG Oral Tablet", "", "zoster vaccine live | Zostavax",
          "co-trimoxazole", "yellow fever vaccine", "paracetamol 500 mg"]


def test_names_in_text_is_ingredients_and_vaccines_in_text() -> None:
    rng = random.Random(0)
    texts = list(_TEXTS)
    for _ in range(500):
        texts.append(" ".join(rng.choice(_TEXTS).split()[: rng.randint(1, 4)]) + rng.choice(["", " | ", "-", " live"]))
    for text in texts:
        expected = (terminology_module._ingredients_in_text(text), terminology_module._vaccines_in_text(text))
        assert names_in_text(text) == expected
        with one_call():
            assert names_in_text(text) == expected and names_in_text(text) == expected  # memoised within a call


def test_resource_list_is_resources_of() -> None:
    rng = random.Random(1)
    shapes: list[Any] = [None, 3, "x", [], {}, {"resourceType": "Bundle"}, {"resourceType": "Bundle", "entry": None},
              {"resourceType": "Bundle", "entry": {"resource": {"resourceType": "Observation"}}},
              {"resourceType": "Observation", "id": "o"}, [{"resourceType": "Patient"}, 3, {"resourceType": "OperationOutcome"}]]
    entries: list[Any] = [{"resource": {"resourceType": "Observation"}}, {"resource": {"resourceType": "OperationOutcome"}}, {"resource": None},
               {"resource": [1]}, {}, 3, None, {"resource": {"resourceType": ["x"]}}]
    for _ in range(300):
        shapes.append({"resourceType": "Bundle", "entry": [rng.choice(entries) for _ in range(rng.randint(0, 5))]})
    for value in shapes:
        listed = resource_list(value)
        assert [id(r) for r in listed] == [id(r) for r in resources_of(value)]


def test_number_refuses_nan_and_the_infinities() -> None:
    assert number(float("nan")) is None and number(float("inf")) is None and number(float("-inf")) is None
    assert number(1e308) == 1e308 and number(-0.0) == 0.0 and number(5e-324) == 5e-324
    assert number(3) == 3.0 and type(number(3)) is float and number(True) is None and number(" 2.5 ") == 2.5


def _memoised_reader(value):  # the reader before session 11 (memoised per call), as it read each string
    if not isinstance(value, str) or not value:
        return None
    s = str(value).strip()
    try:
        if len(s) == 4:
            return datetime(int(s), 1, 1, tzinfo=timezone.utc)
        if len(s) == 7:
            return datetime(int(s[:4]), int(s[5:7]), 1, tzinfo=timezone.utc)
        if len(s) == 10:
            return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def test_parse_datetime_reads_as_before() -> None:
    seeds = ["2026-11-30T08:06:00+01:00", "2026-11-30", "2026-11", "2026", "2026-11-30T08:06:00Z", " 2026-11-30 ",
             "20261130", "2026-11-30T08", "0000", "2026-13", "2026-11-30T08:06:00.123456Z"]
    rng = random.Random(2)
    for _ in range(20000):
        s = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(s) + 1)
            if rng.random() < 0.5 and s:
                s[min(i, len(s) - 1)] = rng.choice("0123456789-:TZ+. x")
            else:
                s.insert(i, rng.choice("0123456789-:TZ+. x"))
        text = "".join(s)
        old, new = _memoised_reader(text), parse_datetime(text)
        assert old == new and (old is None or old.utcoffset() == new.utcoffset()), text
    nothing: list[Any] = [None, 3, [], {}, ""]
    for value in nothing:
        assert parse_datetime(value) is None
