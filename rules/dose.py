"""Dose by indication and body size (mg/kg/day, or mg/m²/day in oncology), new starts, weight and height."""
from __future__ import annotations


from fhir_mappers.facts import ClinicalFacts

from .common import (condition_indication, indication, indication_records, induction_start, induction_unconfirmed, is_new_start, recent, recent_weight,
                     recorded_indications, therapy_unknown)
from .context import CallContext, context_of
from .findings import DoseLimit, Finding, OrderTest
from .start import RangeSpec, _elderly, _range_spec, _start, start_basis, start_regimen  # noqa: F401 - read here and by name
from .knowledge_base import load
from .knowledge_schema import Indication, Oncology, OtherDrug
from .populations import is_child, stale_height_check, stale_weight_check


def schedule_error_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    """A thiopurine ordered once weekly (or rarer): a schedule error, not a low daily dose
    (fhir_mappers does not average doses a week or more apart into a daily dose)."""
    return [Finding("dose-schedule-error", order.ref, {"schedule": order.schedule_problem}, drug=drug)
            for order, drug in context_of(facts, ctx).thiopurine_orders if order.schedule_problem]


def _weight_test() -> OrderTest:
    t = load().dosing.tests["weight"]
    return OrderTest(t.loinc, t.display, label="order_weight", reason=t.reason)



def _max_daily(spec: RangeSpec, basis: dict, new_start: bool) -> tuple[float | None, float, str]:
    """(maximum mg/day for this patient, maximum per unit, unit) or (None, max per unit, unit) without a size."""
    if isinstance(spec, Oncology):
        per = spec.max_mg_per_m2
        return (per * basis["bsa"] if basis["bsa"] else None), per, "m2"
    per_kg = spec.max_mg_per_kg
    if per_kg is None:
        return None, 0.0, "kg"  # no cited dose range (not reached: _range_spec gives None for it)
    per = per_kg
    if new_start and isinstance(spec, Indication) and spec.new_start_max_mg_per_kg is not None:
        per = spec.new_start_max_mg_per_kg
    return (per * basis["weight"] if basis["weight"] else None), per, "kg"


def weight_findings(facts: ClinicalFacts, max_age_days: int, ctx: CallContext | None = None) -> list[Finding]:
    ctx = context_of(facts, ctx)
    orders = ctx.thiopurine_orders
    if not orders or "weight" in facts.unavailable:
        return []
    dosing = load().dosing
    general = dosing.general
    low, high = general.weight_plausible_kg
    w = recent_weight(facts, max_age_days)
    order, drug = orders[0]
    if w is not None and not (low <= w.value <= high):
        return [Finding("weight-implausible", order.ref, {"weight": w.value, "date": w.when.date().isoformat() if w.when else "",
                                                           "low": low, "high": high}, [_weight_test()], drug=drug)]
    out = []
    basis = ctx.size_basis(order, drug, max_age_days)
    spec = _range_spec(drug, basis["indication"])
    ordered = order.daily_dose.mg if order.daily_dose else None
    if w is None:
        last = facts.weights[0].when.date().isoformat() if facts.weights and facts.weights[0].when else ""
        possibly_high, limit = False, None
        if spec is not None and ordered is not None:
            if isinstance(spec, Oncology):
                limit = spec.max_mg_per_m2 * general.size_missing_reference_m2
            elif spec.max_mg_per_kg is not None:
                limit = spec.max_mg_per_kg * general.size_missing_reference_kg
            possibly_high = limit is not None and ordered > limit + 1e-9
        # the last weight on record, however old, and a child's own reference (rules.populations)
        stale = stale_weight_check(facts, ordered, spec, basis["oncology"])
        if stale["child"]:
            possibly_high, limit = False, None  # a child is never checked against the adult reference weight
        possibly_high = possibly_high or stale["last_high"]
        # round-15 M4: a new start names the same starting dose as the start card (one order, one figure)
        start = start_regimen(facts, order, drug, basis) if ordered is not None and not therapy_unknown(facts, order) \
            else None
        start_mg = start["start_mg"] if start is not None and start["start_mg"] is not None \
            and ordered is not None and ordered > start["threshold"] + 1e-9 else None
        out.append(Finding("weight-missing", order.ref,
                           {"start_mg": start_mg, "start_how": start["start_how"] if start_mg is not None and start else "",
                            "days": max_age_days, "last": last, "ordered": ordered, "possibly_high": possibly_high,
                            "limit": limit, "reference_kg": general.size_missing_reference_kg,
                            "reference_m2": general.size_missing_reference_m2, "oncology": basis["oncology"],
                            # round-17 m1: a weight dated after today, set aside (rules.plausibility): named
                            "future_weight": ", ".join(dict.fromkeys(g.sent for g in facts.gaps
                                                                     if g.key == "future_weight")),
                            **stale},
                           [_weight_test()], indicator="warning" if possibly_high or stale["child"] else None, drug=drug))
    if basis["oncology"] and basis["height_missing"]:
        t = dosing.tests["height"]
        max_per_kg = spec.max_mg_per_kg_by_weight if isinstance(spec, Oncology) else None
        per_kg = ordered / basis["weight"] if ordered is not None and basis["weight"] else None
        possibly_high = bool(per_kg and max_per_kg and per_kg > max_per_kg + 1e-9)
        # the last height on record with the current weight (rules.populations): mg/m² on it, never 1.0 m²
        stale_h = stale_height_check(facts, ordered, spec, basis["weight"])
        possibly_high = possibly_high or stale_h["last_high_m2"]
        out.append(Finding("height-missing", order.ref,
                           {"ordered": ordered, "days": general.height_max_age_days, "possibly_high": possibly_high,
                            "per_kg": per_kg, "max_per_kg": max_per_kg,
                            "weight": basis["weight"], "weight_date": basis["weight_date"],
                            "implausible": basis["height_implausible"],
                            "low": general.height_plausible_cm[0], "high": general.height_plausible_cm[1], **stale_h},
                           [OrderTest(t.loinc, t.display, label="order_height", reason=t.reason)],
                           indicator="warning" if possibly_high or stale_h["child"] else None, drug=drug))
    return out


def dose_findings(facts: ClinicalFacts, max_age_days: int, ctx: CallContext | None = None) -> list[Finding]:
    ctx = context_of(facts, ctx)
    dosing = load().dosing
    general = dosing.general
    findings = []
    for order, drug in ctx.thiopurine_orders:
        if order.daily_dose is None and order.schedule_problem:
            continue  # said by dose-schedule-error
        if order.daily_dose is None:
            findings.append(Finding("dose-unreadable", order.ref, {"problem": order.dose_problem or ""}, drug=drug))
            continue
        ordered = order.daily_dose.mg
        basis = ctx.size_basis(order, drug, max_age_days)
        ind, how = basis["indication"], basis["indication_how"]
        if how == "condition" and condition_indication(facts.conditions) != ind:
            how = "procedure"  # round-11 M1: read from a Procedure (a kidney transplant), not from a Condition
        spec = _range_spec(drug, ind)
        if spec is None:
            continue
        new_start = is_new_start(facts, order, drug)
        # round-10 H2: the new-start maximum of an indication that sets one (renal homotransplantation 5 mg/kg/day)
        # applies only to an induction (a recent transplant); every other start is held to the maintenance maximum
        induction = new_start and induction_start(facts, order, drug, ind)
        top, per_unit, unit = _max_daily(spec, basis, induction)
        sources = tuple(dict.fromkeys([spec.source, *(() if isinstance(spec, OtherDrug) else spec.sources)]))
        name = dosing.indications[ind].name if isinstance(spec, OtherDrug) else spec.name
        values = {"ordered": ordered, "indication": ind, "indication_name": name, "how": how, "unit": unit,
                  "max_per_unit": per_unit, "range_text": _range_text(spec, facts), "basis": basis,
                  "new_start": new_start, "therapy_unknown": therapy_unknown(facts, order),
                  # round-5 M1: Conditions on record that name no known indication are quoted, never "none on record"
                  "recorded": recorded_indications(order, indication_records(facts)) if how == "unrecognised" else []}
        ind_spec = dosing.indications.get(ind)
        if new_start and not induction and ind_spec is not None and ind_spec.induction_window_days is not None \
                and ind_spec.new_start_max_mg_per_kg is not None:
            # a start held to the maintenance maximum because no recent transplant is on record: the card says so,
            # and names the initial range, so that a start in the first weeks after transplant is not cut unseen
            values["induction_unconfirmed"] = induction_unconfirmed(facts, ind, ind_spec)
        # the start regimen of a new start (rheumatoid arthritis, SLE, lupus nephritis, autoimmune hepatitis, unknown;
        # not IBD, which starts at the target dose, nor a transplant): round-14 H1, one start figure whichever card
        # (the indication on record not recognised: no indication's start regimen is applied as if known, a kidney
        # transplant starts at 3-5 mg/kg/day, not RA's 1 mg/kg: the card says the start was not checked, round-5 M1)
        start = start_regimen(facts, order, drug, {**basis, "indication_how": how}, spec)
        if top is not None:
            size = basis["bsa"] if unit == "m2" else basis["weight"]
            per = ordered / size
            values.update(per_unit=per, max_mg=top)
            starting = isinstance(spec, Oncology) and spec.starting_dose
            if starting and per_unit is not None and per <= per_unit * (1 + general.start_dose_margin) + 1e-9:
                continue  # the label's starting dose, to body-surface-area rounding (75.1 mg/m2): not above it
            if starting and isinstance(spec, Oncology) and spec.max_mg_per_kg_by_weight and basis["weight"] \
                    and ordered <= spec.max_mg_per_kg_by_weight * basis["weight"] + 1e-9:
                # the label gives the starting dosage in both forms, "1.5 to 2.5 mg/kg (50 to 75 mg/m2)" (Purixan
                # 2.1); for a body whose surface area is large for its weight they differ, and an order within the
                # mg/kg form is the label's starting dose too (round-7 M1: 150 mg at 70 kg, 1.84 m2 = 2.14 mg/kg)
                continue
            if starting and not new_start:
                # leukaemia maintenance: the label's figure is a starting dose, then "adjust dose to maintain
                # desirable absolute neutrophil count" (Purixan 2.1): no ceiling, no cut; a note (a warning far above)
                far = per_unit is not None and per > per_unit * general.critical_factor
                findings.append(Finding("dose-above-range", order.ref, {**values, "maintenance": True, "critical": False,
                                                                       "far": far},
                                        indicator="warning" if far else "info", sources=sources, drug=drug))
                continue
            if per > per_unit + 1e-9:
                critical = per > per_unit * general.critical_factor
                values["critical"] = critical
                start_mg = None
                if start is not None and start["start_mg"] is not None and not values["therapy_unknown"]:
                    # round-14 H1: a new start above the maximum is brought to the label's starting dose (about
                    # 1 mg/kg/day, titrated after 6-8 weeks), never to the maximum reached after titration: the one
                    # figure dose-new-start names for the same patient at a lower order (never above the maximum)
                    start_mg = min(float(start["start_mg"]), top)
                    values.update(start, start_ceiling=True)
                # round-15 m3: an oncology starting dose is accepted within the label's rounding margin (no card up to
                # 75 mg/m2 x 1.05): the suggestion may be the nearest measurable volume inside it (3 mL, not 2.95 mL)
                accept_top = top * (1 + general.start_dose_margin) if starting else None
                findings.append(Finding("dose-above-range", order.ref, values, indicator="critical" if critical else None,
                                        sources=sources, dose=DoseLimit("dose-above-range", high_mg=top, start_mg=start_mg,
                                                                        accept_high_mg=accept_top),
                                        drug=drug))
                continue
        if start is not None:
            if ordered > start["threshold"] + 1e-9:
                findings.append(Finding("dose-new-start", order.ref, {**values, **start}, sources=sources, drug=drug))
    return findings


def _range_text(spec: RangeSpec, facts: ClinicalFacts) -> str:
    """The indication's range as printed: a child's per-kg form where the indication sets one (round-8 M2: no adult
    fixed mg start, "50 mg/day initially" or "(50-100 mg)", next to a child's per-kg figure)."""
    if isinstance(spec, OtherDrug):
        return ""
    if isinstance(spec, Indication) and spec.child_range_text and is_child(facts):
        return spec.child_range_text
    return spec.range_text


range_spec = _range_spec  # the indication's (or drug's) dose range spec, for other rule modules

__all__ = ["dose_findings", "schedule_error_findings", "weight_findings", "indication", "is_new_start", "range_spec", "recent"]
