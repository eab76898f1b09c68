"""Leukaemia under CPIC and DPWG as each guideline says (issue 17, item 4): a NUDT15 poor metabolizer gets
CPIC 2018 Table 3's regimen (mercaptopurine 10 mg/m²/day, thioguanine 25 %, daily), not the TPMT one; under
DPWG an intermediate metabolizer treated for leukaemia may start at the normal dose."""
from __future__ import annotations

import math

import pytest

from hooks.wording import render
from tests import builders as b
from tests.conftest import indicator_of
from tests.test_cards_catalogue import ALL, AML, evaluate, height, one
from tests.builders import med_request, weight

MP = med_request("197931", "mercaptopurine 50 MG Oral Tablet", id="mp", daily_mg=75)
TG = med_request("10485", "thioguanine 40 MG Oral Tablet", id="tg", daily_mg=80)
NUDT15_PM = [b.genotype_ig("TPMT", "*1/*1"), b.genotype_ig("NUDT15", "*3/*3")]
TPMT_PM = [b.genotype_ig("TPMT", "*3A/*3A"), b.genotype_ig("NUDT15", "*1/*1")]
TPMT_IM = [b.genotype_ig("TPMT", "*1/*3A"), b.genotype_ig("NUDT15", "*1/*1")]
NUDT15_IM = [b.genotype_ig("TPMT", "*1/*1"), b.genotype_ig("NUDT15", "*1/*3")]
BSA = math.sqrt(150 * 40 / 3600)  # Mosteller, 150 cm, 40 kg: 1.29 m2


def test_nudt15_poor_metabolizer_with_all_gets_10_mg_per_m2_daily_not_the_tpmt_regimen():
    f = one(evaluate([MP], pgx=NUDT15_PM, weights=[weight(40)], extra=[height(150)], conditions=[ALL]), "pgx-poor-metabolizer")
    assert f.values["mode"] == "reduce" and not f.stops_order and f.values["days_per_week"] is None
    assert f.values["per_m2"] == 10 and f.values["reduced_mg"] == pytest.approx(10 * BSA)
    assert f.dose.high_mg == pytest.approx(10 * BSA) and not f.dose.days_per_week
    card = render(f)
    assert "10 mg/m²/day" in card.detail and "three times a week instead" not in card.detail
    assert "3x/week" not in card.summary


def test_tpmt_poor_metabolizer_with_all_keeps_one_tenth_three_times_a_week():
    f = one(evaluate([MP], pgx=TPMT_PM, weights=[weight(40)], extra=[height(150)], conditions=[ALL]), "pgx-poor-metabolizer")
    assert f.values["days_per_week"] == 3 and f.values["reduced_mg"] == pytest.approx(75 * BSA / 10)


def test_nudt15_poor_metabolizer_thioguanine_for_aml_is_a_quarter_daily():
    f = one(evaluate([TG], pgx=NUDT15_PM, weights=[weight(40)], conditions=[AML]), "pgx-poor-metabolizer")
    assert f.values["fraction"] == 0.25 and f.values["days_per_week"] is None
    assert f.values["reduced_mg"] == pytest.approx(20)  # a quarter of the 80 mg ordered (no per-m2 reference)


def test_nudt15_poor_metabolizer_without_malignancy_is_still_an_alternative():
    f = one(evaluate([MP], pgx=NUDT15_PM, weights=[weight(40)]), "pgx-poor-metabolizer")
    assert f.values["mode"] == "avoid" and f.stops_order and indicator_of(f) == "critical"


def test_nudt15_poor_metabolizer_without_height_uses_the_fraction_of_the_normal_dose():
    f = one(evaluate([MP], pgx=NUDT15_PM, weights=[weight(40)], conditions=[ALL]), "pgx-poor-metabolizer")
    # round-6 M3: no height, a weight: the label's 2.5 mg/kg (its per-kg form of 75 mg/m2), never an assumed 1 m2
    assert f.values["reduced_mg"] == pytest.approx(2.5 * 40 * 0.1333) and f.values["per_m2"] == 10
    assert f.values["basis"]["kind"] == "kg_label"


@pytest.mark.parametrize("pgx,gene,fraction", [(TPMT_IM, "TPMT", 0.5), (NUDT15_IM, "NUDT15", 0.5)])
def test_dpwg_intermediate_metabolizer_with_leukaemia_may_start_at_the_normal_dose(pgx, gene, fraction):
    found = evaluate([MP], "dpwg", pgx=pgx, weights=[weight(40)], extra=[height(150)], conditions=[ALL])
    assert not [f for f in found if f.rule_id in ("pgx-reduce-dose", "pgx-dose-in-reduced-range")]
    f = one(found, "pgx-im-malignancy-normal-start")
    assert f.dose is None and f.values["im_genes"] == [gene] and f.values["high_f"] == fraction
    card = render(f, "dpwg")
    assert "normal starting dose" in card.summary and "if toxicity occurs" in card.summary
    assert "start with this reduced dose (DPWG" not in card.detail


def test_dpwg_thioguanine_tpmt_im_in_aml_names_75_percent_for_toxicity():
    f = one(evaluate([TG], "dpwg", pgx=TPMT_IM, weights=[weight(40)], conditions=[AML]), "pgx-im-malignancy-normal-start")
    assert f.values["high_f"] == 0.75 and f.values["advised_mg"] == pytest.approx(60)


def test_cpic_intermediate_metabolizer_with_leukaemia_is_reduced():
    found = evaluate([MP], pgx=TPMT_IM, weights=[weight(40)], extra=[height(150)], conditions=[ALL])
    assert "pgx-im-malignancy-normal-start" not in [f.rule_id for f in found]
    assert [f for f in found if f.rule_id in ("pgx-reduce-dose", "pgx-dose-in-reduced-range")]


def test_dpwg_nudt15_poor_metabolizer_keeps_dpwg_advice_not_cpic_table_3():
    f = one(evaluate([MP], "dpwg", pgx=NUDT15_PM, weights=[weight(40)], extra=[height(150)], conditions=[ALL]),
            "pgx-poor-metabolizer")
    assert "per_m2" not in f.values and f.values["fraction"] == 0.10 and f.sources[0] == "dpwg_2025"  # the band cited first (values no longer carry the band: issue 20)


def test_dpwg_nudt15_poor_metabolizer_in_leukaemia_puts_the_alternative_first():
    # DPWG 2025: "For NUDT15 PM reduced starting dose is advised only if an alternative is not possible"
    f = one(evaluate([MP], "dpwg", pgx=NUDT15_PM, weights=[weight(40)], extra=[height(150)], conditions=[ALL]),
            "pgx-poor-metabolizer")
    assert f.values["mode"] == "avoid_or_reduce" and "alternative" in render(f, "dpwg").summary
