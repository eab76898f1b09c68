"""One reader for every laboratory value (issue 17 items 1, 2, 6, 7; issue 20 "one lab reader"), at its boundaries.

Through the real mappers, rules and catalogue, and over HTTP: laboratory-local units through the cited table
(fhir_mappers/lab_units.toml), comparators kept to the card, the laboratory's flags honoured even on a value
that cannot be converted, and every result a rule reads reachable by the prefetch templates and the FHIR
fallback queries.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from fhir_mappers.facts import DataGap
from fhir_mappers.observations import measurements
from fhir_mappers.terminology import LOINC, lab_units, norm_unit, terminology
from tests.builders import bundle, days_ago, hook_request, normal_labs, prefetch
from tests.conftest import rule_ids

ROOT = Path(__file__).resolve().parent.parent
UCUM = "http://unitsofmeasure.org"


def obs(loinc: str, *, value=None, unit: str | None = None, code: str | None = None, string: str | None = None,
        flag: str | None = None, flag_text: str | None = None, comparator: str | None = None, id: str = "o1",
        when: str | None = None, ref: tuple | None = None) -> dict:
    """A laboratory Observation as laboratories send it: printed unit (``unit``), UCUM code (``code``), or
    a valueString; an interpretation code (v2-0078) and/or text."""
    o: dict = {"resourceType": "Observation", "id": id, "status": "final",
               "code": {"coding": [{"system": LOINC, "code": loinc}]}, "subject": {"reference": "Patient/pt-1"},
               "effectiveDateTime": when or days_ago(2)}
    if string is not None:
        o["valueString"] = string
    elif value is not None:
        q: dict = {"value": value}
        if unit is not None:
            q["unit"] = unit
        if code is not None:
            q.update(system=UCUM, code=code)
        if comparator:
            q["comparator"] = comparator
        o["valueQuantity"] = q
    if flag or flag_text:
        concept: dict = {}
        if flag:
            concept["coding"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag}]
        if flag_text:
            concept["text"] = flag_text
        o["interpretation"] = [concept]
    if ref:
        o["referenceRange"] = [{"low": {"value": ref[0], "unit": ref[2]}, "high": {"value": ref[1], "unit": ref[2]}}]
    return o


def read(*observations: dict):
    gaps: list[DataGap] = []
    texts: dict = {}
    return measurements(list(observations), gaps, texts), gaps, texts


# ------------------------------------------------------------------ the units table
def test_every_row_of_the_units_table_cites_a_source_and_means_a_unit_some_analyte_reads():
    raw = tomllib.loads((ROOT / "fhir_mappers/lab_units.toml").read_text(encoding="utf-8"))
    t = terminology()
    readable = {u for a in t.analytes.values() for u in a.factors}
    for row in raw["unit"]:
        assert row["source"] in raw["sources"], row
        if row["ucum"] not in ("10*6/uL",):  # red cells: recognised, read by no rule
            assert norm_unit(row["ucum"]) in readable, row
    assert len(lab_units()) == len({norm_unit(r["printed"]) for r in raw["unit"]})


@pytest.mark.parametrize("printed", ["Thousand/uL", "K/mcL", "K/uL", "x10E3/uL", "10^3/uL", "10*3/uL", "K/µL",
                                     "x10(3)/uL", "Thous/uL", "K/cumm", "TH/mm3"])
def test_thousands_per_microlitre_as_laboratories_print_them(printed):
    labs, gaps, _ = read(obs("6690-2", value=1.8, unit=printed))
    assert not gaps and labs["wbc"][0].value == pytest.approx(1.8) and labs["wbc"][0].unit == "10*9/L"
    assert labs["wbc"][0].unit_text == printed  # the printing is kept


@pytest.mark.parametrize("printed,value,expected", [
    ("10^9/L", 0.7, 0.7), ("x10(9)/L", 0.7, 0.7), ("x10^9/L", 0.7, 0.7), ("Giga/L", 0.7, 0.7),
    ("cells/uL", 700, 0.7), ("/mm3", 700, 0.7), ("cells/mm3", 700, 0.7), ("/uL", 700, 0.7),
])
def test_other_count_units(printed, value, expected):
    labs, gaps, _ = read(obs("751-8", value=value, unit=printed))
    assert not gaps and labs["neutrophils"][0].value == pytest.approx(expected)


@pytest.mark.parametrize("loinc,analyte,printed,value,expected", [
    ("718-7", "hemoglobin", "g/dL", 9.5, 95.0), ("1742-6", "alt", "IU/L", 120, 120), ("1920-8", "ast", "U/L", 80, 80),
    ("6768-6", "alp", "IU/L", 300, 300), ("1975-2", "bilirubin", "mg/dL", 2.0, 34.208), ("1975-2", "bilirubin", "µmol/L", 34, 34),
    ("1975-2", "bilirubin", "umol/L", 34, 34), ("2160-0", "creatinine", "mg/dL", 1.0, 88.42),
    ("2160-0", "creatinine", "micromol/L", 88, 88), ("62238-1", "egfr", "mL/min/1.73m2", 45, 45),
    ("62238-1", "egfr", "mL/min/1.73 m2", 45, 45), ("33914-3", "egfr", "mL/min/1.73m²", 45, 45),
])
def test_chemistry_units(loinc, analyte, printed, value, expected):
    labs, gaps, _ = read(obs(loinc, value=value, unit=printed))
    assert not gaps and labs[analyte][0].value == pytest.approx(expected)


@pytest.mark.parametrize("printed", ["pmol/8x10^8 RBC", "pmol/8 x 10[8] RBC", "pmol/8x10(8) RBC", "pmol/8x10E8 RBC"])
def test_metabolite_units(printed):
    o = obs("0-0", value=500, unit=printed)
    o["code"] = {"text": "6-Thioguanine Nucleotides"}
    labs, gaps, _ = read(o)
    assert not gaps and labs["tgn"][0].value == 500


@pytest.mark.parametrize("printed", ["Million/uL", "103/uL", "x109/L", "%", "furlongs", "mmol/L"])
def test_a_unit_that_is_not_the_analytes_is_a_gap_quoting_value_and_unit(printed):
    labs, gaps, texts = read(obs("6690-2", value=1.8, unit=printed))
    assert "wbc" not in labs
    assert gaps and f"'1.8 {printed}'" in gaps[0].why and printed in gaps[0].why
    assert texts["wbc"][0].value_text == f"1.8 {printed}"  # kept for the rules: a flag on it still counts


# ------------------------------------------------------------------ comparators and flags (facts, no meaning)
@pytest.mark.parametrize("text,comparator,value", [("<10", "<", 10), ("< 0.5", "<", 0.5), (">1000", ">", 1000),
                                                   ("<=15", "<=", 15), ("≥ 90", ">=", 90)])
def test_a_limit_sent_as_text_is_read_on_its_open_side(text, comparator, value):
    labs, gaps, _ = read(obs("62238-1", string=f"{text} mL/min/1.73m2"))
    m = labs["egfr"][0]
    assert not gaps and m.comparator == comparator and m.value == value


def test_value_quantity_comparator_is_kept():
    labs, _, _ = read(obs("62238-1", value=15, unit="mL/min/1.73m2", comparator="<"))
    assert labs["egfr"][0].comparator == "<" and labs["egfr"][0].value == 15


def test_every_interpretation_code_is_carried_as_sent():
    o = obs("777-3", value=8, unit="K/uL", flag="LL")
    o["interpretation"].append({"coding": [{"code": "AA"}], "text": "Critical"})
    labs, _, _ = read(o)
    m = labs["platelets"][0]
    assert m.flags == ("LL", "AA") and m.interpretation == "LL" and m.interpretation_text == "critical"


def test_the_reference_range_in_a_printed_unit_is_converted():
    labs, _, _ = read(obs("751-8", value=700, unit="cells/uL", ref=(1500, 7800, "cells/uL")))
    m = labs["neutrophils"][0]
    assert m.ref_low == pytest.approx(1.5) and m.ref_high == pytest.approx(7.8)


# ------------------------------------------------------------------ cards, end to end
def _cards(call, labs_list, lab_results=None):
    return call(hook_request(pre=prefetch(labs=labs_list, lab_results=lab_results)))


def _card(cards, rule_id):
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == rule_id]
    return card


def _with(*extra):
    keep = {o["code"]["coding"][0]["code"] for o in extra}
    return [o for o in normal_labs() if o["code"]["coding"][0]["code"] not in keep] + list(extra)


def test_quest_thousand_per_microlitre_ll_gives_the_critical_cytopenia_card(call):
    cards = _cards(call, _with(obs("6690-2", value=1.8, unit="Thousand/uL", flag="LL", id="wbc-q"),
                               obs("751-8", value=0.7, unit="Thousand/uL", flag="LL", id="anc-q")))
    card = _card(cards, "cytopenia-severe")
    assert card["indicator"] == "critical"
    assert "white cells 1.8" in card["summary"] and "neutrophils 0.7" in card["summary"]
    assert "data-incomplete" not in rule_ids(cards)  # read, not "could not be read"


def test_platelets_less_than_10_sent_as_text_with_ll_gives_the_critical_card_quoting_it(call):
    cards = _cards(call, _with(obs("777-3", string="<10", flag="LL", id="plt-q")))
    card = _card(cards, "cytopenia-severe")
    assert card["indicator"] == "critical" and "'<10'" in card["summary"] + card["detail"]
    assert "LL" in card["summary"] + card["detail"]
    # the card quotes the value as sent with what it could be ("no unit: at most 10"): round-11 m6, it is not named
    # again as unread on a data-incomplete card
    assert "'<10' as reported, flagged LL (no unit: at most 10" in card["detail"]
    assert "data-incomplete" not in rule_ids(cards)


def test_platelets_below_10_with_a_unit_keep_the_comparator_on_the_card(call):
    cards = _cards(call, _with(obs("777-3", value=10, unit="K/uL", comparator="<", flag="LL", id="plt-c")))
    card = _card(cards, "cytopenia-severe")
    assert "platelets <10" in card["summary"] and "platelets 10 " not in card["summary"]


def test_egfr_below_15_is_shown_with_its_comparator(call):
    cards = _cards(call, _with(obs("62238-1", string="<15", id="egfr-c",
                                   ref=(60, 120, "mL/min/1.73m2"))))
    card = _card(cards, "renal-impairment")
    assert "eGFR <15" in card["summary"] and "eGFR <15" in card["detail"]


def test_egfr_limit_in_value_quantity(call):
    cards = _cards(call, _with(obs("62238-1", value=15, unit="mL/min/1.73m2", comparator="<", id="egfr-q")))
    assert "eGFR <15" in _card(cards, "renal-impairment")["summary"]


def test_unknown_unit_without_a_flag_is_a_data_gap_quoting_value_and_unit(call):
    cards = _cards(call, _with(obs("751-8", value=0.7, unit="furlongs", id="anc-f")))
    gap = _card(cards, "data-incomplete")
    assert "'0.7 furlongs'" in gap["detail"] and "neutrophil count" in gap["detail"]
    assert "cytopenia-severe" not in rule_ids(cards)  # not guessed


def test_unknown_unit_with_ll_flag_gives_the_critical_card_quoting_value_and_unit(call):
    cards = _cards(call, _with(obs("751-8", value=0.7, unit="furlongs", flag="LL", id="anc-fl")))
    card = _card(cards, "cytopenia-severe")
    assert card["indicator"] == "critical" and "'0.7 furlongs'" in card["summary"] + card["detail"]
    assert "'0.7 furlongs'" in _card(cards, "data-incomplete")["detail"]


def test_critical_words_without_a_code_count(call):
    cards = _cards(call, _with(obs("751-8", value=0.7, unit="furlongs", flag_text="Critical low", id="anc-w")))
    assert _card(cards, "cytopenia-severe")["indicator"] == "critical"


def test_a_critical_low_flag_on_a_converted_value_above_the_grade_3_cut_off_is_honoured(call):
    cards = _cards(call, _with(obs("777-3", value=60, unit="K/uL", flag="LL", id="plt-ll")))
    card = _card(cards, "cytopenia-severe")
    assert "flagged critical by the laboratory" in card["detail"] and "(flagged LL)" in card["summary"] + card["detail"]


def test_an_unconverted_alt_flagged_critical_high_gives_the_liver_card_quoting_it(call):
    cards = _cards(call, _with(obs("1742-6", value=900, unit="ukat/dL", flag="HH", id="alt-x")))
    card = _card(cards, "liver-tests")
    assert "'900 ukat/dL'" in card["summary"] + card["detail"]


def test_a_low_flag_on_an_unconverted_count_is_named_in_the_gap_not_guessed_into_a_stop(call):
    cards = _cards(call, _with(obs("6690-2", value=3.1, unit="furlongs", flag="L", id="wbc-l")))
    assert "cytopenia-severe" not in rule_ids(cards) and "cytopenia" not in rule_ids(cards)
    assert "flagged L by the laboratory" in _card(cards, "data-incomplete")["detail"]


def _metabolite(name: str, value, unit: str, id: str, flag: str | None = None) -> dict:
    o = obs("0-0", value=value, unit=unit, id=id, flag=flag)
    o["code"] = {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.12", "code": "TGN"}], "text": name}
    o["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
    return o


def test_metabolites_in_the_category_key_are_read(call):
    cards = _cards(call, normal_labs(), lab_results=[_metabolite("6-Thioguanine Nucleotides", 520, "pmol/8x10(8) RBC", "tgn-1"),
                                                   _metabolite("6-Methylmercaptopurine", 1200, "pmol/8x10(8) RBC", "mmp-1")])
    assert "6-TGN 520" in _card(cards, "metabolites-high")["summary"]


def test_an_unconverted_metabolite_flagged_high_is_quoted(call):
    cards = _cards(call, normal_labs(), lab_results=[_metabolite("6-Thioguanine Nucleotides", 600, "nmol/g Hb", "tgn-2", "H")])
    card = _card(cards, "metabolites-high")
    assert "'600 nmol/g Hb'" in card["summary"] + card["detail"]


def test_metabolite_limit_keeps_its_comparator(call):
    cards = _cards(call, normal_labs(), lab_results=[_metabolite("6-Thioguanine Nucleotides", 100, "pmol/8x10^8 RBC", "tgn-3")
                                                   | {"valueQuantity": {"value": 100, "comparator": "<", "unit": "pmol/8x10^8 RBC"}}])
    assert "6-TGN <100" in _card(cards, "metabolites-low")["summary"]


# ------------------------------------------------------------------ fetch what you read
def _rule_inputs() -> set[str]:
    """Every analyte a rule reads: the analyte names the rule modules name (latest(facts, "x"), labs.get("x"))."""
    t = terminology()
    names: set[str] = set()
    for path in (ROOT / "rules").glob("*.py"):
        names |= set(re.findall(r'"(\w+)"', path.read_text(encoding="utf-8"))) & set(t.analytes)
    for table in ("CBC", "LIVER"):
        import rules.monitoring as mon
        names |= set(getattr(mon, table))
    return names


def _template_codes_and_categories() -> list[tuple[str, set[str], set[str]]]:
    """(key, LOINC codes asked for, categories asked for) of every Observation query of the services."""
    from hooks.services import THIOPURINE_PREFETCH

    out = []
    for key, p in THIOPURINE_PREFETCH.items():
        path, _, query = p.template.partition("?")
        if path != "Observation":
            continue
        params = parse_qs(query, keep_blank_values=True)
        codes = {c.partition("|")[2] for v in params.get("code", []) for c in unquote(v).split(",") if c.startswith(LOINC)}
        out.append((key, codes, set(params.get("category", []))))
    return out


def test_every_result_a_rule_reads_is_reached_by_the_prefetch_templates_and_the_fallback_queries():
    """The FHIR fallback renders the same template as the prefetch key (hooks.gather): one walk covers both."""
    t = terminology()
    queries = _template_codes_and_categories()
    inputs = _rule_inputs()
    assert {"neutrophils", "wbc", "platelets", "lymphocytes", "mcv", "alt", "ast", "egfr", "tgn", "mmp",
            "tpmt_activity", "weight", "height"} <= inputs | {"weight", "height"}
    for analyte in inputs:
        loinc = t.analytes[analyte].loinc
        by_code = [k for k, codes, _ in queries if loinc and loinc <= codes]
        by_category = [k for k, _, cats in queries if "laboratory" in cats]
        if loinc:
            assert by_code, f"{analyte}: none of its LOINC codes {sorted(loinc)} is asked for"
        else:  # read by name only (6-TGN, 6-MMP): a query by category must bring it
            assert by_category and t.analytes[analyte].unit, f"{analyte} is read by name but no query asks by category"


def test_the_fallback_asks_the_category_query_when_it_was_not_prefetched(call):
    """Not prefetched: the service renders the same template and asks the EHR's FHIR server (``responses``)."""
    import json

    import responses

    base = "https://ehr.example/r4/fhir"
    pre = prefetch()
    del pre["lab_results"]

    def answer(request):
        assert "category=laboratory" in urlsplit(request.url).query and "patient=pt-1" in request.url
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(
            bundle(_metabolite("6-Thioguanine Nucleotides", 520, "pmol/8x10(8) RBC", "tgn-f")))

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(base) + r"/Observation\?.*"), callback=answer)
        cards = call(hook_request(pre=pre, fhir_server=base, token="t"))
        assert len(rsps.calls) == 1
    assert "6-TGN 520" in _card(cards, "metabolites-high")["summary"]


def test_an_egfr_limit_in_a_unit_not_read_is_a_warning_quoting_it_never_dropped(call):
    """(A unitless eGFR under its LOINC code is read in mL/min/1.73m2: tests/test_labs_round2.py.)"""
    cards = _cards(call, _with(obs("62238-1", string="<15 mL/s/1.73m2", id="egfr-nu")))
    gap = _card(cards, "data-incomplete")
    assert gap["indicator"] == "warning" and "'<15 mL/s/1.73m2'" in gap["detail"] and "eGFR" in gap["detail"]
    assert "eGFR '<15 mL/s/1.73m2'" in gap["summary"]


def test_a_units_table_row_without_a_source_stops_the_load(tmp_path, monkeypatch):
    import fhir_mappers.terminology as terminology_module

    bad = tmp_path / "lab_units.toml"
    bad.write_text('[sources]\nloinc = "x"\n[[unit]]\nprinted = "K/uL"\nucum = "10*3/uL"\nsource = "nowhere"\n', encoding="utf-8")
    monkeypatch.setattr(terminology_module, "_LAB_UNITS", bad)
    with pytest.raises(ValueError, match="K/uL"):
        lab_units()
    bad.write_text('[sources]\nloinc = "x"\n[[unit]]\nprinted = "K/uL"\nucum = "10*3/uL"\nsource = "loinc"\n'
                   '[[unit]]\nprinted = "k/ul"\nucum = "10*6/uL"\nsource = "loinc"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="two UCUM meanings"):
        lab_units()


def test_the_observation_readers_keep_nothing_across_calls():
    """Issue 20: the reader's look-ups (units, result names, genotype texts) live for one call only."""
    import fhir_mappers.observations as observations

    for name in ("_analyte_of_name", "_diplotype", "_phenotype_words", "_conversion"):
        assert not hasattr(getattr(observations, name), "cache_info"), name
    labs, _, _ = read(obs("6690-2", value=1.8, unit="Thousand/uL"))
    assert labs["wbc"][0].value == pytest.approx(1.8)


def test_the_reading_data_page_lists_every_row_of_the_units_table():
    raw = tomllib.loads((ROOT / "fhir_mappers/lab_units.toml").read_text(encoding="utf-8"))
    page = (ROOT / "docs/reading-data.md").read_text(encoding="utf-8")
    for row in raw["unit"]:
        assert f"| `{row['printed']}` | `{row['ucum']}` | `{row['source']}` |" in page, row


def test_the_interpretation_reader_reads_the_usual_shape_as_it_reads_any_list():
    """Its short branch (one concept, one coding) answers as its general loop does."""
    import itertools

    from fhir_mappers.observations import _interpretations

    leaves = [None, "", "L", "LL", 5, True, ["x"], {"a": 1}]
    for code, display, text in itertools.product(leaves, leaves, leaves):
        coding = {k: v for k, v in (("code", code), ("display", display)) if v is not None}
        concept: dict = {"coding": [coding], **({"text": text} if text is not None else {})}
        assert _interpretations({"interpretation": [concept]}) == _interpretations({"interpretation": [concept, {}]})
