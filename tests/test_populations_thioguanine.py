"""Thioguanine from CPIC and the Tabloid label (issue 17, item 4): the TPMT intermediate band from CPIC 2018,
and long-term thioguanine with falling platelets or splenomegaly linked to veno-occlusive disease."""
from __future__ import annotations

import pytest

from hooks.wording import render
from rules.knowledge_base import load
from tests.builders import days_ago, lab, med_request, normal_labs
from tests.conftest import indicator_of
from tests.test_rules_clinical import condition, ids, one, run

TG = "10485"


def tg_order(mg=80):
    return med_request(TG, "thioguanine 40 MG Oral Tablet", id="tg", daily_mg=mg)


def tg_active(days=400):
    return med_request(TG, "thioguanine 40 MG Oral Tablet", id="tg-old", status="active", daily_mg=80, authored=days_ago(days))


def labs_with(*extra):
    base = {x["id"]: x for x in normal_labs()}
    for x in extra:
        base[x["id"]] = x
    return list(base.values())


def plt(value, days, id):
    return lab("777-3", value, "10*9/L", when=days_ago(days), id=id)


@pytest.mark.parametrize("now,before,fires", [
    (200, 250, False),   # a 20 % fall: below the 25 % of the knowledge data
    (187, 250, True),    # a 25.2 % fall
    (139, None, True),   # below the BSR action threshold
    (140, None, False),
])
def test_falling_platelets_on_long_term_thioguanine(now, before, fires):
    labs = labs_with(*([plt(now, 3, "plt")] + ([plt(before, 60, "plt-0")] if before else [])))
    fs = run([tg_order()], meds=[tg_active()], labs=labs)
    # round-5 H3: continued thioguanine always gets the label's long-term warning; the platelets are added
    f = one(fs, "thioguanine-liver-toxicity")
    assert indicator_of(f) == "warning" and not f.stops_order
    assert bool(f.values["platelets"]) is fires
    assert ("assess" in render(f).summary) is fires
    assert "long-term" in render(f).summary


def test_splenomegaly_is_a_sign_and_a_vod_diagnosis_a_stop():
    f = one(run([tg_order()], meds=[tg_active()], conditions=[condition("16294009")]), "thioguanine-liver-toxicity")
    assert indicator_of(f) == "warning" and f.values["signs"]
    stop = one(run([tg_order()], meds=[tg_active()], conditions=[condition(icd10="K76.6")]), "thioguanine-liver-toxicity")
    assert indicator_of(stop) == "critical" and stop.stops_order and stop.actions
    assert "discontinue" in render(stop).summary.lower()


def tg_course(mg=80, days=14):
    """A first thioguanine order that gives its duration (timing.repeat.boundsDuration): a course."""
    order = tg_order(mg)
    order["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"] = {"value": days, "unit": "d",
                                                                          "system": "http://unitsofmeasure.org", "code": "d"}
    return order


def test_a_first_thioguanine_order_in_leukaemia_or_another_thiopurine_says_nothing():
    # round-5 H3: a first order in AML / ALL is a course (the label's indication); outside them (or with no
    # indication on record) a first order gets the long-term warning (tests/test_round5_thioguanine.py).
    # Round-8 m5: a first order in leukaemia that gives its duration says nothing; one without gets an info note
    assert "thioguanine-liver-toxicity" not in ids(run([tg_course()], meds=[], conditions=[condition("91857003")]))
    assert "thioguanine-liver-toxicity" not in ids(run([tg_course()], meds=[], conditions=[condition("91861009")]))
    fs = run([tg_order()], meds=[], conditions=[condition("91857003")])  # ALL
    f = one(fs, "thioguanine-open-course")
    assert indicator_of(f) == "info" and f.values["phase"] == "open_course" and not f.stops_order
    assert "thioguanine-liver-toxicity" not in ids(fs)
    # round-9 M1: AML is the Tabloid label's own indication, and its limitation (not for maintenance or similar
    # long-term continuous treatment) applies there too: the same info note when the order gives no end date
    aml = run([tg_order()], meds=[], conditions=[condition("91861009")])
    assert "thioguanine-liver-toxicity" not in ids(aml) and indicator_of(one(aml, "thioguanine-open-course")) == "info"
    assert "thioguanine-open-course" not in ids(run([tg_course()], meds=[], conditions=[condition("91861009")]))
    assert "thioguanine-liver-toxicity" in ids(run([tg_order()], meds=[], conditions=[condition("16294009")]))
    assert "thioguanine-liver-toxicity" not in ids(run(meds=None, conditions=[condition("16294009")]))


def test_thioguanine_im_band_rests_on_cpic_2018_not_a_secondary_page():
    band = load().pgx.drugs["thioguanine"].one_im
    assert band is not None and band.source == "cpic_2018" and (band.low, band.high) == (0.5, 0.8)
    assert not load().source(band.source).internal
