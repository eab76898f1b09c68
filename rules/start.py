"""The start regimen of a new start (the label's starting dose), read by the dose rules and by the call's size basis
(``rules.context``: round-15 M1, allopurinol's fraction of a new start is taken of it). Its own module so that the
context, below every rule, does not import the dose rules."""
from __future__ import annotations

import math
from dataclasses import replace

from fhir_mappers.facts import ClinicalFacts

from .common import age_years, is_child, is_new_start, therapy_unknown
from .knowledge_base import load
from .knowledge_schema import DosingGeneral, Indication, Oncology, OtherDrug

RangeSpec = Oncology | Indication | OtherDrug


def _range_spec(drug: str, ind: str) -> RangeSpec | None:
    dosing = load().dosing
    if dosing.indications[ind].oncology and drug in dosing.oncology:
        return dosing.oncology[drug]  # per m² (mercaptopurine, thioguanine in ALL)
    if drug == "azathioprine" or drug in dosing.indications[ind].drugs:
        own = dosing.indications[ind]
        if own.max_mg_per_kg is None:
            # recognised, but no cited dose range of its own (round-6 m6: liver, heart transplant, off-label): no start
            # regimen; the general maximum for an indication without its own range still applies (as before, when it
            # was "not recognised": a 400 mg order is not let through unchecked)
            # round-15 M2: one marked ``general_start`` (myasthenia gravis, GPA, pemphigus vulgaris) takes the general
            # start regimen for a new start, as an unknown indication does (never a looser answer than it)
            general = dosing.indications["unknown"]
            return replace(general, name=own.name, no_start_titration=not own.general_start,
                           range_text=f"{general.range_text}, the general maximum (no range of its own is cited)")
        return own  # e.g. thioguanine for acute myeloid leukaemia ([indications.aml])
    return dosing.other_drugs.get(drug)


def _start(spec: RangeSpec, general: DosingGeneral, weight: float | None, drug: str, child: bool = False,
           elderly: bool = False) -> dict:
    """The starting dose of a new start and the dose above which a start is flagged: one figure (round-8 m3: the
    start the card names is the threshold it checks against).

    An indication with ``start_mg_per_kg`` (rheumatoid arthritis, FDA label: about 1.0 mg/kg/day) starts at that
    figure times the weight, to the nearest tablet step (75 mg for 72 kg), and a start above it is flagged even
    under the label's 100 mg, and not above the label's upper figure ``start_mg`` (round-17 m8: 100 mg for 120 kg,
    "approximately 1.0 mg/kg (50 to 100 mg)"); without a weight, at the label's lower figure (50 mg, round-17 M3).
    One with only
    ``start_mg`` (autoimmune hepatitis, AASLD: 50 mg/day in adults) starts at that fixed dose. Otherwise about
    1 mg/kg/day and not below 50 mg/day (the label's rheumatoid arthritis start, "approximately 1.0 mg/kg (50 to
    100 mg)"), or 50 mg/day without a weight.
    A child (round-8 M2) is never given an adult fixed dose: the per-kg figure times the weight, unrounded (the
    indication's ``child_start_max_mg_per_kg`` when it sets one: autoimmune hepatitis 1-2 mg/kg/day); without a
    weight no mg figure is given and no start is flagged."""
    form = load().dosing.forms.get(drug)
    step = float(form.tablet_step_mg if form is not None else 25)
    per_kg = spec.start_mg_per_kg if isinstance(spec, Indication) else None
    start_mg = spec.start_mg if isinstance(spec, Indication) else None
    if child:
        child_max = spec.child_start_max_mg_per_kg if isinstance(spec, Indication) else None
        kg = child_max or per_kg or general.new_start_mg_per_kg
        low = (per_kg or general.new_start_mg_per_kg) if child_max else None
        exact = kg * weight if weight else None
        return {"start_mg": exact, "start_exact": exact, "start_per_kg": kg, "start_per_kg_low": low, "step": step,
                "threshold": exact if exact is not None else math.inf, "start_how": "child"}
    if per_kg is not None:
        if weight:
            exact = per_kg * weight
            practical = max(step, math.floor(exact / step + 0.5) * step)
            if start_mg is not None and practical > start_mg + 1e-9:
                # round-17 m8: the label's words are "approximately 1.0 mg/kg (50 to 100 mg)": above 100 kg the per-kg
                # figure leaves the label's absolute range, so its upper figure is the start (titration does the rest)
                return {"start_mg": float(start_mg), "start_exact": exact, "start_per_kg": per_kg, "step": step,
                        "threshold": float(start_mg), "start_how": "label_upper_cap"}
            return {"start_mg": practical, "start_exact": exact, "start_per_kg": per_kg, "step": step,
                    "threshold": practical, "start_how": "practical"}
        # no usable weight: the low end of the label's start range (50 mg of "50 to 100 mg"), never its upper
        # figure: round-15 M4 for an older patient (label, geriatric use: start at the low end of the dosing range),
        # round-17 M3 for every adult: the per-kg start cannot be checked, and 1 mg/kg of this service's reference
        # adult (dosing.toml size_missing_reference_kg, 50 kg, the size the weight-missing card compares with) is the
        # same 50 mg, so one response names one reference size
        low_mg = float(general.new_start_mg)
        return {"start_mg": low_mg, "start_exact": None, "start_per_kg": per_kg, "step": step,
                "threshold": low_mg, "start_how": "label_low_elderly" if elderly else "label_low_no_weight",
                "reference_kg": float(general.size_missing_reference_kg)}
    if start_mg is not None:
        return {"start_mg": start_mg, "start_exact": None, "start_per_kg": None, "step": step,
                "threshold": start_mg, "start_how": "fixed"}
    floor_mg, general_per_kg = general.new_start_mg, general.new_start_mg_per_kg
    exact = general_per_kg * weight if weight else None
    # to the nearest tablet step, as the rheumatoid arthritis start (75 mg for 72 kg), and not below 50 mg/day
    threshold = max(floor_mg, math.floor(exact / step + 0.5) * step) if exact is not None else floor_mg
    return {"start_mg": threshold, "start_exact": exact, "start_per_kg": general_per_kg, "step": step,
            "threshold": threshold, "start_how": "floor" if exact is not None else "no_weight", "floor_mg": floor_mg}


def _elderly(facts: ClinicalFacts) -> bool:
    age = age_years(facts)
    return age is not None and age >= load().populations.elderly.age_at_least


def start_regimen(facts: ClinicalFacts, order, drug: str, basis: dict, spec: RangeSpec | None = None) -> dict | None:
    """The start regimen of a new start (``_start``'s figures) where one applies, else None: azathioprine, a new
    start whose indication sets a start regimen (rheumatoid arthritis, SLE, lupus nephritis, autoimmune hepatitis, an
    unknown indication, round-15 M2: myasthenia gravis, GPA, pemphigus vulgaris; not IBD, which starts at the target
    dose, nor a transplant), not in oncology. An indication on record that was not recognised gives the figures
    without a start dose (round-5 M1: no indication's regimen is applied as if known)."""
    if drug != "azathioprine" or basis["oncology"] or not is_new_start(facts, order, drug):
        return None
    ind = basis["indication"]
    spec = spec if spec is not None else _range_spec(drug, ind)
    if not isinstance(spec, Indication) or spec.no_start_titration or spec.new_start_max_mg_per_kg is not None:
        return None
    start = _start(spec, load().dosing.general, basis["weight"], drug, child=is_child(facts), elderly=_elderly(facts))
    if basis["indication_how"] == "unrecognised":
        start = {**start, "start_mg": None, "start_exact": None, "start_per_kg": None}
    return start


def start_basis(facts: ClinicalFacts, order, drug: str, basis: dict) -> float | None:
    """Round-15 M1: the one dose a fraction (allopurinol's one-third to one-quarter, a TPMT/NUDT15 band) is taken of
    for a new start where a start regimen applies: the label's starting dose (``start_regimen``; also for an order below it
    and the dose ordered), never the dose ordered above it nor the 2 mg/kg maintenance dose, so that 150 mg and
    250 mg get the same answer. None when no start regimen applies (established therapy, IBD, a transplant), when
    whether it is a new start is unknown, or when no start figure is known (a child without a weight)."""
    if order.daily_dose is None or therapy_unknown(facts, order):
        return None
    start = start_regimen(facts, order, drug, basis)
    if start is None or start["start_mg"] is None:
        return None
    return float(start["start_mg"])
