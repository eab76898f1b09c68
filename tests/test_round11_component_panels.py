"""Round-11 review H1 and m6.

H1: a blood count sent as ONE panel Observation (LOINC 58410-2 CBC panel, 57021-8 CBC with differential) whose
``component`` entries carry the WBC, neutrophils and platelets was ignored silently: "no CBC on record" (l06), no
severe-cytopenia card for neutrophils 0.6 and platelets 45 (l06b), and no card at all when an older normal count
made the CBC "up to date" (l20). Every Observation's components are now read as results of their own, with the
panel's id, status, subject and dates and the component's own value, unit, range and interpretation, through the
same lab reader (units strict) as a result sent on its own (FHIR R4 Observation.component).

m6: a "<0.5" neutrophil count with no unit gave the critical card (which quotes it as an upper bound) AND a
"could not be read" data-incomplete card about the same value (l05). A bound a card rests on and quotes is no
longer named again as unread.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers import build_facts
from tests.builders import LOINC, PID, TODAY, UCUM, bundle, days_ago, lab, normal_labs, normal_pgx, patient
from tests.conftest import detail_of
from tests.review_cases import case_cards
from tests.test_round8_cbc import gap_why
from tests.test_rules_clinical import one, run

CASES = Path(__file__).parent / "data" / "review11"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def _codes(cards: list[dict]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


# ------------------------------------------------------------------ the reviewer's cases

def test_l06_a_normal_component_panel_of_three_days_ago_is_a_cbc_on_record() -> None:
    cards = case_cards(_case("l06_component_panel_cbc"))
    assert "monitoring-cbc-due" not in _codes(cards), [c["summary"] for c in cards]
    assert "data-incomplete" not in _codes(cards)


def test_l06b_severe_cytopenia_in_components_stops_the_order() -> None:
    cards = case_cards(_case("l06b_component_panel_severe_cytopenia"))
    severe = [c for c in cards if c["source"]["topic"]["code"] == "cytopenia-severe"]
    assert severe and severe[0]["indicator"] == "critical", [c["summary"] for c in cards]
    for words in ("neutrophils 0.6", "white cells 1.5", "platelets 45"):
        assert words in severe[0]["summary"]
    assert "monitoring-cbc-due" not in _codes(cards)  # "no CBC on record" was the defect


def test_l20_the_newest_panel_is_used_not_the_older_separate_normal_counts() -> None:
    cards = case_cards(_case("l20_component_panel_wbc_1_2_plus_old_separate_normal"))
    severe = [c for c in cards if c["source"]["topic"]["code"] == "cytopenia-severe"]
    assert severe and severe[0]["indicator"] == "critical", [c["summary"] for c in cards]
    assert "white cells 1.2" in severe[0]["summary"] and "2026-12-04" in severe[0]["detail"]


def test_l07_a_hasmember_panel_is_still_read() -> None:
    cards = case_cards(_case("l07_hasmember_panel_cbc"))
    assert "monitoring-cbc-due" not in _codes(cards) and "data-incomplete" not in _codes(cards)


def test_l05_a_bound_the_critical_card_quotes_is_not_also_unreadable() -> None:
    cards = case_cards(_case("l05_valuestring_neut_lt05"))
    assert _codes(cards) == ["cytopenia-severe"], [c["summary"] for c in cards]
    assert "'<0.5' as reported (no unit: at most 0.5" in cards[0]["detail"]


def test_a_bound_no_card_can_use_is_still_named() -> None:
    """'<5' with no unit could be a normal count: no card rests on it, so the data-incomplete card names it."""
    req = _case("l05_valuestring_neut_lt05")
    for e in req["prefetch"]["labs"]["entry"]:
        if e["resource"]["id"] == "neut-str":
            e["resource"]["valueString"] = "<5"
    cards = case_cards(req)
    assert "data-incomplete" in _codes(cards) and "cytopenia-severe" not in _codes(cards)


def test_the_smart_picture_dates_the_cbc_from_the_panel(client) -> None:
    req = _case("l06_component_panel_cbc")
    resp = client.post("/smart/api/picture", json={"patientId": req["context"]["patientId"], "prefetch": req["prefetch"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    pic = resp.get_json()["picture"]
    assert pic["monitoring"]["cbc"]["last"] == "2026-12-04"
    assert [p["value"] for p in pic["labs"]["platelets"]["series"]] == [255]


# ------------------------------------------------------------------ the component reader

WHEN = days_ago(3)


def _comp(loinc: str | None, value: float | None = None, unit: str | None = None, **extra) -> dict:
    c: dict = {"code": {"coding": [{"system": LOINC, "code": loinc}]} if loinc else extra.pop("code")}
    if value is not None:
        c["valueQuantity"] = {"value": value, **({"unit": unit, "system": UCUM, "code": unit} if unit else {})}
    c.update(extra)
    return c


def _panel(*components: dict, code: str = "58410-2", id: str = "cbc-panel", when: str = WHEN, **extra) -> dict:
    return {"resourceType": "Observation", "id": id, "status": extra.pop("status", "final"),
            "code": {"coding": [{"system": LOINC, "code": code}], "text": "CBC panel"},
            "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": when,
            "component": list(components), **extra}


def _cbc(wbc=6.0, anc=3.5, plt=250, unit="10*9/L") -> list[dict]:
    return [_comp("6690-2", wbc, unit), _comp("751-8", anc, unit), _comp("777-3", plt, unit)]


def _others() -> list[dict]:
    """The rest of a normal record: haemoglobin, liver tests, eGFR (no separate counts)."""
    return [x for x in normal_labs(3) if x["id"] not in ("wbc", "anc", "plt", "lym")]


def _facts(labs: list[dict], key: str = "labs"):
    data = {"patient": patient(), "pgx": bundle(*normal_pgx()), key: bundle(*labs)}
    return build_facts([], data, today=TODAY)


def test_components_are_results_with_the_panels_date_status_and_reference() -> None:
    facts = _facts([_panel(*_cbc(1.2, 0.6, 60, unit="10*3/uL"), status="preliminary")])
    for analyte, value in (("wbc", 1.2), ("neutrophils", 0.6), ("platelets", 60)):
        (m,) = facts.labs[analyte]
        assert m.value == value and m.unit == "10*9/L" and m.unit_text == "10*3/uL"  # 10*3/uL = 10*9/L
        assert m.when is not None and m.when.date().isoformat() == WHEN[:10]
        assert m.preliminary and m.source_ref == "Observation/cbc-panel"


def test_a_component_panel_under_lab_results_is_read_too() -> None:
    facts = _facts([_panel(*_cbc())], key="lab_results")
    assert {"wbc", "neutrophils", "platelets"} <= set(facts.labs)


def test_a_component_in_a_unit_not_converted_is_a_quoted_gap_never_a_guess() -> None:
    facts = _facts([_panel(_comp("751-8", 900, "cells/hpf"))])
    assert "neutrophils" not in facts.labs
    (gap,) = [g for g in facts.gaps if g.key == "neutrophils"]
    assert "cells/hpf" in gap.why and gap.sent == "900 cells/hpf"


def test_a_component_with_no_unit_is_read_only_as_a_bound() -> None:
    facts = _facts([_panel(_comp("751-8", valueString="<0.5"))])
    (text,) = facts.result_texts["neutrophils"]
    assert text.upper_bound == 0.5
    assert any(g.key == "neutrophils" and g.bound_only for g in facts.gaps)


def test_a_component_with_its_own_range_and_critical_flag_in_an_unknown_unit_is_severe() -> None:
    flag = {"interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                            "code": "LL"}]}],
            "referenceRange": [{"low": {"value": 1.8, "unit": "Gpt/L"}, "high": {"value": 7.5, "unit": "Gpt/L"}}]}
    f = one(run(labs=[_panel(_comp("751-8", 0.3, "Gpt/L", **flag), _comp("6690-2", 5.0, "10*9/L"),
                             _comp("777-3", 250, "10*9/L")), *_others()]), "cytopenia-severe")
    assert f.values["results"][0]["analyte"] == "neutrophils"


def test_a_components_reference_range_is_its_own() -> None:
    rr = {"referenceRange": [{"low": {"value": 4.0, "unit": "10*9/L"}, "high": {"value": 11.0, "unit": "10*9/L"}}]}
    facts = _facts([_panel(_comp("6690-2", 6.0, "10*9/L", **rr))])
    (m,) = facts.labs["wbc"]
    assert (m.ref_low, m.ref_high) == (4.0, 11.0)


def test_a_component_sent_with_data_absent_reason_is_named() -> None:
    dar: dict = {"dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                            "code": "error"}]}}
    facts = _facts([_panel(_comp("6690-2", 6.0, "10*9/L"), _comp("751-8", **dar), _comp("777-3", 250, "10*9/L"))])
    (absent,) = facts.absent_results["neutrophils"]
    assert absent.reason == "error" and absent.source_ref == "Observation/cbc-panel"
    findings = run(labs=[_panel(_comp("6690-2", 6.0, "10*9/L"), _comp("751-8", **dar), _comp("777-3", 250, "10*9/L")),
                         *_others()])
    gap = one(findings, "data-incomplete")
    assert any(g["key"] == "neutrophils" and "error" in gap_why(g) for g in gap.values["gaps"])


@pytest.mark.parametrize("value", [{}, {"valueCodeableConcept": {"text": "see comment"}}, {"valueBoolean": True}])
def test_a_listed_analyte_without_a_readable_value_is_a_quoted_gap_never_silent(value: dict) -> None:
    facts = _facts([_panel(_comp("777-3", **value))])
    assert "platelets" not in facts.labs
    (gap,) = [g for g in facts.gaps if g.key == "platelets"]
    assert "CBC panel (LOINC 58410-2)" in gap.why
    if value.get("valueCodeableConcept"):
        assert gap.sent == "see comment"


def test_mixed_top_level_and_component_results_of_the_same_time_use_the_worst() -> None:
    """A separate normal WBC and a panel WBC of 1.2 at the same date and time: the worst is used and the card says
    the results of that time disagree (as for two separate results)."""
    labs = normal_labs(3) + [_panel(_comp("6690-2", 1.2, "10*9/L"))]
    f = one(run(labs=labs), "cytopenia-severe")
    assert f.values["results"][0]["value"] == 1.2
    assert "same date and time disagree" in detail_of(f)


def test_an_older_panel_does_not_hide_a_newer_separate_count() -> None:
    labs = [_panel(*_cbc(), when=days_ago(30)), lab("777-3", 40, "10*9/L", when=days_ago(2), id="plt-new"),
            *_others()]
    f = one(run(labs=labs), "cytopenia-severe")
    assert f.values["results"][0]["analyte"] == "platelets"


def test_entered_in_error_panel_gives_nothing_and_a_cancelled_one_absent_results() -> None:
    facts = _facts([_panel(*_cbc(1.0, 0.2, 20), status="entered-in-error")])
    assert not facts.labs.get("wbc") and not facts.absent_results
    facts = _facts([_panel(*_cbc(1.0, 0.2, 20), status="cancelled")])
    assert not facts.labs.get("wbc") and {"wbc", "neutrophils", "platelets"} <= set(facts.absent_results)


def test_a_panel_in_a_diagnostic_report_is_read() -> None:
    report = {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "final",
              "code": {"coding": [{"system": LOINC, "code": "58410-2"}]}, "subject": {"reference": f"Patient/{PID}"},
              "contained": [{**_panel(*_cbc(1.1, 0.4, 30)), "id": "p1", "subject": {"reference": f"Patient/{PID}"}}],
              "result": [{"reference": "#p1"}]}
    facts = _facts([report])
    assert facts.labs["wbc"][0].value == 1.1 and facts.labs["platelets"][0].value == 30


@pytest.mark.parametrize(("loinc", "value", "unit", "analyte", "rule"), [
    ("62238-1", 20, "mL/min/{1.73_m2}", "egfr", "renal-impairment"),
    ("1742-6", 300, "U/L", "alt", "liver-tests"),
    ("2160-0", 6.0, "mg/dL", "creatinine", "renal-impairment"),  # no eGFR sent: calculated from the creatinine
])
def test_renal_and_liver_results_sent_as_components_are_read(loinc, value, unit, analyte, rule) -> None:
    others = [x for x in normal_labs(3) if x["id"] not in ("egfr", "alt")]
    panel = _panel(_comp(loinc, value, unit), code="24323-8", id="cmp")  # comprehensive metabolic panel
    facts = _facts([panel])
    assert facts.labs[analyte][0].sent_value == value and facts.labs[analyte][0].unit_text == unit
    assert one(run(labs=[panel, *others]), rule)


def test_a_tpmt_phenotype_sent_as_a_component_is_a_tpmt_result() -> None:
    comp = {"code": {"coding": [{"system": LOINC, "code": "79713-4"}]},
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA10317-8", "display": "Intermediate metabolizer"}]}}
    panel = _panel(comp, code="X-THIOPURINE", id="thio-panel")
    data = {"patient": patient(), "pgx": bundle(panel)}
    facts = build_facts([], data, today=TODAY)
    assert [(r.gene, r.kind, r.value, r.source_ref) for r in facts.gene_results] == [
        ("TPMT", "phenotype", "Intermediate Metabolizer", "Observation/thio-panel")]


def test_a_component_named_as_an_analyte_under_a_loinc_code_not_read_is_named() -> None:
    """"Neutrophils [#/volume] in Blood by Manual count" under a LOINC code this service does not list: a gap quoting it."""
    comp = {"code": {"coding": [{"system": LOINC, "code": "99999-9"}],
                     "text": "Neutrophils [#/volume] in Blood"}, "valueQuantity": {"value": 0.4, "unit": "10*9/L"}}
    facts = _facts([_panel(comp)])
    assert any(g.key == "neutrophils" and "99999-9" in g.why for g in facts.gaps)


def test_a_genotype_results_gene_studied_component_is_not_a_result() -> None:
    facts = _facts([])
    assert not facts.labs and {r.gene for r in facts.gene_results} == {"TPMT", "NUDT15"}
    assert not [g for g in facts.gaps if g.key not in ("pgx",)]


# ------------------------------------------------------------------ fetch what is read

def test_the_labs_query_asks_for_the_cbc_panel_codes() -> None:
    """A FHIR search by ``code`` matches Observation.code only, never a component's code: the panel is asked for."""
    from hooks.prefetch import PREFETCH

    for code in ("58410-2", "57021-8"):
        assert f"http://loinc.org|{code}" in PREFETCH["labs"]


def test_a_component_panel_is_found_by_the_fhir_fallback(call) -> None:
    import responses

    from tests import fhir_fake
    from tests.builders import hook_request, weight
    from tests.conftest import rule_ids

    labs = [_panel(*_cbc(1.5, 0.6, 45), when=days_ago(2)), *_others()]
    base = "https://ehr.example/r4/fhir"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fhir_fake.serve(rsps, base, normal_pgx() + labs + [weight(70)])
        assert "cytopenia-severe" in rule_ids(call(hook_request(fhir_server=base, token="tok-123")))


_FULL_CBC = [  # a CBC with automated differential as laboratories send it: every component, with its LOINC display
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", 5.2, "10*3/uL"),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", 4.5, "10*6/uL"),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", 13.5, "g/dL"),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", 40, "%"),
    ("787-2", "MCV [Entitic volume] by Automated count", 90, "fL"),
    ("785-6", "MCH [Entitic mass] by Automated count", 30, "pg"),
    ("786-4", "MCHC [Mass/volume] by Automated count", 33, "g/dL"),
    ("788-0", "Erythrocyte distribution width [Ratio] by Automated count", 13, "%"),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", 250, "10*3/uL"),
    ("32623-1", "Platelet mean volume [Entitic volume] in Blood by Automated count", 10, "fL"),
    ("770-8", "Neutrophils/100 leukocytes in Blood by Automated count", 60, "%"),
    ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", 30, "%"),
    ("5905-5", "Monocytes/100 leukocytes in Blood by Automated count", 7, "%"),
    ("713-8", "Eosinophils/100 leukocytes in Blood by Automated count", 2, "%"),
    ("706-2", "Basophils/100 leukocytes in Blood by Automated count", 1, "%"),
    ("751-8", "Neutrophils [#/volume] in Blood by Automated count", 3.1, "10*3/uL"),
    ("731-0", "Lymphocytes [#/volume] in Blood by Automated count", 1.6, "10*3/uL"),
    ("742-7", "Monocytes [#/volume] in Blood by Automated count", 0.4, "10*3/uL"),
    ("711-2", "Eosinophils [#/volume] in Blood by Automated count", 0.1, "10*3/uL"),
    ("704-7", "Basophils [#/volume] in Blood by Automated count", 0.05, "10*3/uL"),
]


def test_a_full_cbc_panel_reads_the_judged_counts_and_nothing_else_without_noise() -> None:
    comps = [{"code": {"coding": [{"system": LOINC, "code": c, "display": d}]},
              "valueQuantity": {"value": v, "unit": u, "system": UCUM, "code": u}} for c, d, v, u in _FULL_CBC]
    facts = _facts([_panel(*comps, code="57021-8")])
    assert {k: [m.value for m in v] for k, v in facts.labs.items()} == {
        "wbc": [5.2], "hemoglobin": [135.0], "mcv": [90.0], "platelets": [250.0], "neutrophils_percent": [60.0],
        "neutrophils": [3.1], "lymphocytes": [1.6]}
    assert not facts.gaps and not facts.result_texts
    labs = [_panel(*comps, code="57021-8"), *[x for x in normal_labs(3) if x["id"] in ("alt", "ast", "egfr")]]
    assert run(labs=labs) == []  # a normal full count: no card


def test_a_genotype_component_keeps_the_panels_gene_studied_component() -> None:
    gene = {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org", "code": "HGNC:23063", "display": "NUDT15"}]}}
    call = {"code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "valueString": "*1/*3"}
    panel = _panel(gene, call, code="X-PGX-PANEL", id="pgx-panel")
    facts = build_facts([], {"patient": patient(), "pgx": bundle(panel)}, today=TODAY)
    assert [(r.gene, r.kind, r.value) for r in facts.gene_results] == [("NUDT15", "diplotype", "*1/*3")]
    assert not facts.labs and not facts.gaps
