"""Thiopurine interactions, in both directions: the thiopurine is the new
order and the other drug is on record (or in the same draft), or the other
drug is the new order while a thiopurine is active. Live vaccines also in time:
within months after a thiopurine was stopped, weeks before one is started."""
from __future__ import annotations

import math
import re

from collections import Counter
from datetime import date, timedelta
from functools import cache
from typing import Any, NamedTuple

from fhir_mappers.facts import ClinicalFacts, MedicationFact
from fhir_mappers.terminology import terminology, vaccine_family

from .common import (body_surface_area, dose_not_tolerated, indication, indication_records, is_new_start, short_ref,
                     link_shows_therapy, thiopurine_of, usable_weight)
from .findings import Action, CancelOrder, DoseLimit, Finding, OrderTest
from .knowledge_base import load
from .knowledge_schema import OtherInteraction, other_rule_id
from .populations import is_child, weight_window_days

def rule_ids() -> tuple[str, ...]:
    """Every rule id this module may emit: those catalogue.toml gives ``module = "interactions"``, and one per
    [others.<key>] table of interactions.toml (``other_rule_id``), so a table added to the data without a catalogue
    entry stops the start."""
    from .catalogue import rule_ids_of

    return tuple(dict.fromkeys([*rule_ids_of("interactions"),
                                *(other_rule_id(key) for key in load().interactions.others)]))


class Medications(NamedTuple):
    """One call's orders and active medications, read once for every pairwise check."""

    all: list[MedicationFact]  # orders, then active medications
    thiopurines: list[tuple[MedicationFact, str]]  # (medication, its thiopurine), in that order
    ingredients: frozenset[str]  # every ingredient of any of them
    vaccines: bool  # any of them carries a vaccine code


def medications(facts: ClinicalFacts) -> Medications:
    meds = facts.orders + facts.active_medications
    return Medications(meds, [(m, tp) for m in meds if (tp := thiopurine_of(m))],
                       frozenset(i for m in meds for i in m.ingredients), any(m.vaccine_codes for m in meds))


def _pairs(facts: ClinicalFacts, is_other, meds: Medications | None = None, *, ingredients=None,
           vaccine: bool = False) -> list[tuple[MedicationFact, str, MedicationFact, str]]:
    """(thiopurine med, thiopurine, other med, which is new) for every pair where one side is a selected draft.

    Linear in the medications plus the pairs found: a pair needs a selected draft on one side, so
    a thiopurine that is not one is paired only with the selected drafts of the other drug (the
    order is the one a scan of every pair would give). ``meds``: ``medications(facts)``, when the caller
    has it; ``ingredients`` / ``vaccine``: the other drug needs one of these ingredients / a vaccine code
    (a check none of the medications can meet is skipped)."""
    if meds is None:
        meds = medications(facts)
    if not meds.thiopurines or vaccine and not meds.vaccines \
            or ingredients is not None and meds.ingredients.isdisjoint(ingredients):
        return []
    others = [o for o in meds.all if is_other(o)]
    selected_others = [o for o in others if o.is_draft and o.selected]
    out, seen = [], set()
    for t, tp in meds.thiopurines:
        new_thiopurine = t.is_draft and t.selected
        for o in others if new_thiopurine else selected_others:
            if o is t:
                continue
            key = (id(t), id(o))
            if key in seen:
                continue
            seen.add(key)
            out.append((t, tp, o, "thiopurine" if new_thiopurine else "other"))
    return out


def _state(m: MedicationFact) -> str:
    """"draft", "active" (an active order), or "recorded" (a MedicationStatement: therapy taken, maybe prescribed
    elsewhere; no order here to reduce)."""
    if m.is_draft:
        return "draft"
    return "recorded" if (m.resource or {}).get("resourceType") == "MedicationStatement" else "active"


def xoi_findings(facts: ClinicalFacts, meds: Medications | None = None) -> list[Finding]:
    spec = load().interactions.xanthine_oxidase_inhibitors
    xoi = set(spec.ingredients)
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(m.ingredients & xoi), meds, ingredients=xoi):
        if tp in spec.not_inactivated:
            continue  # thioguanine: not inactivated by xanthine oxidase, no adjustment (thioguanine label)
        other = sorted(o.ingredients & xoi)[0]
        contraindicated = tp in spec.contraindicated.get(other, [])
        values = {"other": other, "new": new, "thiopurine_state": _state(t), "other_state": _state(o),
                  "contraindicated": contraindicated, "factor_low": spec.factor_low, "factor_high": spec.factor_high,
                  "ordered": t.daily_dose.mg if t.daily_dose else None}
        actions: list[Action] = []
        dose, stops = None, False
        extra: tuple[str, ...] = ()
        if contraindicated:
            # febuxostat: cancel the febuxostat order, or do not start the thiopurine while it is active
            if o.is_draft and o.ref:
                actions.append(CancelOrder(o.ref, other, label="cancel_other"))
            elif t.is_draft and (keep := _thiopurine_kept(facts, t, tp)):
                # round-15 M3: the label contraindicates febuxostat in patients treated with the thiopurine; when the
                # thiopurine is established (a renewal, continuing therapy) or leukaemia chemotherapy, the drug to
                # stop or replace is febuxostat (ask its prescriber): cancelling the thiopurine is only an option
                values["keep_thiopurine"] = keep
                if t.ref:
                    actions.append(CancelOrder(t.ref, tp, recommended=False))
            elif t.is_draft and t.ref:
                actions.append(CancelOrder(t.ref, tp))
                stops = True
        else:
            # allopurinol is the new order, the thiopurine an active one written before it, and no xanthine-oxidase
            # inhibitor was active before: the dose taken was not reduced for it (round-4 H8), whatever its size. A
            # thiopurine order written on or after the day of the allopurinol order may carry the reduction already
            # (the advice followed, then the allopurinol signed again): it is not cut again (one order, one answer)
            # round-15 H1: an xanthine-oxidase inhibitor draft that renews or continues one the patient takes
            # (priorPrescription / basedOn naming an active order of it, or one active or on hold beside it) is not
            # a new start: the thiopurine dose taken with it is not cut again
            xoi_continues = new == "other" and (continued_by(facts, o, xoi) is not None or any(
                not m.is_draft and m.ingredients & xoi for m in (meds.all if meds is not None else medications(facts).all)))
            xoi_new = new == "other" and not t.is_draft and not _written_since(t, o, facts) and not xoi_continues
            if xoi_continues:
                values["xoi_continues"] = True
            values.update(_combination_renewal(facts, t, tp, o, xoi, new, xoi_continues, spec.weekly_cbc_days))
            if xoi_new:
                values["xoi_new"] = True
            if t.is_draft and t.established_dose is not None and t.established_on is not None:
                # round-9 M2: the dose taken before this order was written before the xanthine-oxidase inhibitor's
                # order (so it was not reduced for it): the label's fraction may be taken of it (rules.doseplan,
                # when it is a usual dose for the indication). Undated: not known to be unreduced, not used
                # (round-15 H1: of the other drug's therapy, when its draft renews an active order of it)
                values["taken_before_other"] = t.established_on < (_therapy_since(o, facts, xoi) or facts.today)
            if t.daily_dose is not None:
                # allopurinol is the new order, the thiopurine an active one: the label's fraction of the usual dose
                # is taken of the dose the patient is on when it is lower (docs/dose-advice.md 2d)
                # (round-15 H1: not when the inhibitor continues, as a renewal or beside an active one: the dose taken
                # was set with it, and the fraction is of the usual dose, once, as when the thiopurine is the draft)
                current = t.daily_dose.mg if new == "other" and not t.is_draft and not xoi_continues else None
                dose = DoseLimit("interaction-xanthine-oxidase", factor_low=spec.factor_low,
                                 factor_high=spec.factor_high, current_mg=current, current_not_reduced=xoi_new,
                                 keep_mg=_raised_from(facts, t, tp, o))
                if dose.keep_mg is not None:
                    values["keep_mg"] = dose.keep_mg
            if o.is_draft and o.ref:
                # an option, not the recommended action: allopurinol is often needed (gout), or given on purpose
                # with a reduced thiopurine (BSG 2019); the label's advice is to reduce the thiopurine
                actions.append(CancelOrder(o.ref, other, label="cancel_other", recommended=False))
                # the IBD guideline is cited for an IBD patient only (round-8 H4: not for a transplant patient)
                if indication(t, indication_records(facts))[0] == "ibd":
                    extra = ("bsg_ibd_2019",)
                    values["ibd"] = True
        if values.get("combination_renewed"):
            extra = (*extra, spec.weekly_cbc_source)  # round-17 M6: the label's monitoring schedule is cited
        findings.append(Finding("interaction-xanthine-oxidase", t.ref, values, actions, dose=dose, stops_order=stops,
                                drug=tp, sources=(*spec.label_sources.get(tp, []),
                                                  *(spec.contraindicated_sources if contraindicated else []), *extra)))
    return findings


def _raised_from(facts: ClinicalFacts, t: MedicationFact, tp: str, o: MedicationFact) -> float | None:
    """Round-18 M4: a thiopurine draft that renews the order taken with the inhibitor (on record, not a new start)
    at a RAISED dose: the dose taken (the plan keeps it, never cuts below it, when it lies in the accepted range:
    rules.doseplan.plan_doses). None otherwise."""
    if not t.is_draft or o.is_draft or t.daily_dose is None:
        return None
    prior = continued_by(facts, t, {tp})
    if prior is None or prior.daily_dose is None or prior.daily_dose.mg >= t.daily_dose.mg - 1e-6:
        return None
    if dose_not_tolerated(facts, tp, t) is not None:
        return None  # round-19 H3: a dose held or followed by low counts is not a tolerated dose to keep
    return prior.daily_dose.mg


def _combination_renewal(facts: ClinicalFacts, t: MedicationFact, tp: str, o: MedicationFact, xoi: set[str],
                         new: str, xoi_continues: bool, weekly_days: int) -> dict:
    """Round-17 M6: the draft renews or continues its own drug (``continued_by``: priorPrescription / basedOn, or an
    active order of it on record) while the other drug is active: ``thiopurine_renewed`` / ``other_renewed`` (the
    state words say "renewed", not "ordered now"), and ``combination_renewed`` with ``together_since`` (the later
    of the two therapies' start dates) and ``together_days``, when a thiopurine draft keeps the dose of the order it
    renews (a dose change is an adjustment made now: the label's closer CBC applies); ``combination_new`` when the two have been taken
    together for no longer than ``weekly_days`` (the label's weekly CBC after the combination is started)."""
    if new == "thiopurine":
        renewed = t.is_draft and continued_by(facts, t, {tp}) is not None
        partner = o
        key = "thiopurine_renewed"
    else:
        renewed = xoi_continues and o.is_draft and continued_by(facts, o, xoi) is not None
        partner = t
        key = "other_renewed"
    if not renewed:
        return {}
    out: dict = {key: True}
    if partner.is_draft:
        return out  # the other drug is a new start: the combination is new
    prior = continued_by(facts, t, {tp}) if t.is_draft else t
    if t.is_draft and (prior is None or prior.daily_dose is None or t.daily_dose is None
                       or abs(prior.daily_dose.mg - t.daily_dose.mg) > 1e-6):
        return out  # the renewal changes the dose (or it cannot be compared): the adjustment is made now
    tp_since = min((d for d in (t.authored_on, prior.authored_on if prior else None) if d is not None), default=None)
    xoi_since = _therapy_since(o, facts, xoi) if o.is_draft else o.authored_on
    if tp_since is None or xoi_since is None:
        return out  # when the two were first taken together is not known: not an established combination
    if t.is_draft and (untolerated := dose_not_tolerated(facts, tp, t)) is not None:
        # round-19 H3: the thiopurine renewed was held, or followed by low counts: not an established, tolerated
        # combination (no quiet note): the restart is an adjustment made now, with the label's closer CBC
        out["not_tolerated"] = untolerated
        return out
    since = max(tp_since, xoi_since)
    days = (facts.today - since).days
    out.update(combination_renewed=True, together_since=since.isoformat(), together_days=days,
               weekly_cbc_days=weekly_days)
    if days <= weekly_days:
        out["combination_new"] = True
    return out


def _renewed(facts: ClinicalFacts, t: MedicationFact, tp: str, o: MedicationFact, drugs) -> dict:
    """Round-17 M6: which draft of the pair renews or continues its own drug's therapy (``continued_by``), for the
    state words ("renewed now", not "ordered now")."""
    out = {}
    if t.is_draft and continued_by(facts, t, {tp}) is not None:
        out["thiopurine_renewed"] = True
    if o.is_draft and continued_by(facts, o, drugs) is not None:
        out["other_renewed"] = True
    return out


def _thiopurine_kept(facts: ClinicalFacts, t: MedicationFact, tp: str) -> str:
    """Round-15 M3: why a thiopurine draft beside an active contraindicated drug (febuxostat) is not the order to
    cancel: "leukaemia" (ALL/AML maintenance, or another oncology indication: chemotherapy, not an interchangeable
    immunosuppressant), "continuing" (it renews or continues therapy the patient takes: ``is_new_start`` is false),
    or "" (a new start outside leukaemia: do not start it while the other drug is active)."""
    dosing = load().dosing
    ind = indication(t, indication_records(facts))[0]
    spec = dosing.indications[ind]
    if tp in spec.malignancy_drugs or spec.oncology:
        return "leukaemia"
    return "" if is_new_start(facts, t, tp) else "continuing"


def _written_since(t: MedicationFact, o: MedicationFact, facts: ClinicalFacts) -> bool:
    """The thiopurine order was written on or after the day the interacting drug's therapy began (its order's date,
    or, when the order renews an active order of it, that order's date; today when undated)."""
    since = _therapy_since(o, facts, o.ingredients) or facts.today
    return t.authored_on is not None and since is not None and t.authored_on >= since


def continued_by(facts: ClinicalFacts, draft: MedicationFact, ingredients) -> MedicationFact | None:
    """Round-15 H1: the order of the same drug (one of ``ingredients`` that ``draft`` carries) that a draft continues:
    an active or on-hold order the draft renews or replaces (priorPrescription / basedOn; ``rules.without_replaced``
    moved it to ``facts.renewed_medications``), else one on record as active or on hold (a MedicationStatement
    included). None when the draft is not a draft, or the record shows no such order (a new start, or a restart
    after a stopped order)."""
    if not draft.is_draft:
        return None
    same = draft.ingredients & frozenset(ingredients)
    if not same:
        return None
    renewed = [m for m in facts.renewed_medications if m.ingredients & same]
    if renewed:
        return renewed[0]
    return next((m for m in facts.active_medications if m is not draft and not m.is_draft and m.ingredients & same),
                None)


def _therapy_since(o: MedicationFact, facts: ClinicalFacts, ingredients) -> date | None:
    """When the other drug's therapy began: the date of the order its draft continues (``continued_by``), when that
    is earlier, else the order's own date."""
    prior = continued_by(facts, o, ingredients)
    dates = [d for d in (o.authored_on, prior.authored_on if prior else None) if d is not None]
    return min(dates) if dates else None


def warfarin_findings(facts: ClinicalFacts, meds: Medications | None = None) -> list[Finding]:
    spec = load().interactions.warfarin
    drugs = set(spec.ingredients)
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(m.ingredients & drugs), meds, ingredients=drugs):
        findings.append(Finding(
            "interaction-warfarin", t.ref, {"new": new, "thiopurine_state": _state(t), "other_state": _state(o),
                                            **_renewed(facts, t, tp, o, drugs),
                                            "within_days": spec.inr_within_days,
                                            "direction": _thiopurine_change(facts, t, tp, new, o, drugs)},
            [OrderTest(spec.inr_loinc, spec.inr_display, label="order_inr", reason=spec.reason,
                       within_days=spec.inr_within_days)], drug=tp, sources=tuple(spec.sources)))
    return findings


def _thiopurine_change(facts: ClinicalFacts, t: MedicationFact, tp: str, new: str, o: MedicationFact | None = None,
                       drugs: frozenset[str] | set[str] = frozenset()) -> str:
    """How the thiopurine changes with this order: "start", "increase", "decrease", "same", or
    "warfarin_start" (warfarin is the new order), "warfarin_continues" (the warfarin draft renews or continues
    warfarin the patient takes, round-15 H1's class). The INR moves the other way from the thiopurine:
    a start or increase lowers it, a cut raises it (Imuran label: azathioprine inhibits warfarin). A thiopurine
    order that the draft renews (taken out of the active list by ``rules.without_replaced``) counts as taken."""
    if new != "thiopurine":
        return "warfarin_continues" if o is not None and continued_by(facts, o, drugs) is not None else "warfarin_start"
    taken = [m for m in (*facts.active_medications, *facts.renewed_medications) if tp in m.ingredients and m is not t]
    before = [m.daily_dose.mg for m in taken if m.daily_dose is not None]
    if not taken:
        return "start"
    if not before or t.daily_dose is None:
        return "same"
    was, now = max(before), t.daily_dose.mg
    return "decrease" if now < was - 1e-6 else "increase" if now > was + 1e-6 else "same"


def _live(m) -> list[str]:
    cvx = terminology().cvx
    return sorted(c for c in m.vaccine_codes if cvx.get(c, {}).get("live"))


_family = vaccine_family  # the vaccine a CVX name is a formulation of (fhir_mappers.terminology)


def _component_of_another(family: str, families: list[str]) -> bool:
    """Whether a single vaccine ("measles") is an antigen of a combination also named ("MMR (measles, mumps,
    rubella)"): the words of a product that names MMR also match measles, mumps and rubella (round-5 m3)."""
    word = re.compile(rf"(?<![\w-]){re.escape(family.lower())}(?![\w-])")
    return any(other != family and word.search(other.lower()) for other in families)


def _vaccine_values(codes: list[str]) -> dict:
    """The vaccines named once each (round-4 m1): a code and the "unspecified formulation" code of the same vaccine
    (read from the product's words beside its code) name one vaccine, the specific one."""
    spec = load().interactions.live_vaccines
    cvx = terminology().cvx
    names = [cvx[c]["name"] for c in codes]
    specific = {_family(n) for n in names if "unspecified" not in n}
    names = [n for n in names if "unspecified" not in n or _family(n) not in specific]
    families = [_family(n) for n in names]
    names = [n for n in names if not _component_of_another(_family(n), families)]  # MMR, not MMR + measles + ...
    return {"vaccines": names, "families": list(dict.fromkeys(_family(n) for n in names)),
            # each alternative once (round-8 m4: LAIV3 and LAIV4 both give "inactivated influenza vaccine")
            "alternatives": list(dict.fromkeys(spec.alternatives[c] for c in codes if c in spec.alternatives))}


def _immunosuppression_level(facts: ClinicalFacts, t: MedicationFact, tp: str, codes: list[str],
                             weight_max_age_days: int | None) -> dict:
    """For a live vaccine that low-level immunosuppression allows (zoster vaccine live): the thiopurine's dose
    in mg/kg/day against the IDSA 2013 / ACIP 2008 figure. ``level``: "low" (at or under it), "high" (above),
    "unknown" (no usable weight or readable dose: the safe reading), "" (not applicable: other vaccines,
    thioguanine, leukaemia)."""
    spec = load().interactions.live_vaccines.low_level
    if spec is None:
        return {"level": ""}
    limit = {"azathioprine": spec.azathioprine_mg_per_kg, "mercaptopurine": spec.mercaptopurine_mg_per_kg}.get(tp)
    if limit is None or not codes or not set(codes) <= set(spec.vaccines):
        return {"level": ""}
    dosing = load().dosing
    ind = indication(t, indication_records(facts))[0]
    if tp in dosing.indications[ind].malignancy_drugs or dosing.indications[ind].oncology:
        return {"level": ""}  # leukaemia: a contraindication to live vaccines of its own
    days = weight_window_days(facts, weight_max_age_days or dosing.general.weight_max_age_days)
    w = usable_weight(facts, days)
    values = {"limit_mg_per_kg": limit, "weight": w.value if w else None}
    if w is None or t.daily_dose is None:
        return {**values, "level": "unknown", "why": "no_weight" if w is None else "no_dose"}
    per_kg = t.daily_dose.mg / w.value
    return {**values, "per_kg": per_kg, "ordered": t.daily_dose.mg,
            "level": "low" if per_kg <= limit + 1e-9 else "high"}


def vaccine_findings(facts: ClinicalFacts, meds: Medications | None = None,
                     weight_max_age_days: int | None = None) -> list[Finding]:
    spec = load().interactions.live_vaccines.low_level
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(_live(m)), meds, vaccine=True):
        codes = _live(o)
        level = _immunosuppression_level(facts, t, tp, codes, weight_max_age_days)
        low = level["level"] == "low"
        findings.append(Finding(
            "interaction-live-vaccine", t.ref,
            {"new": new, "thiopurine_state": _state(t), "other_state": _state(o), **_vaccine_values(codes),
             "immunosuppression": level},
            [CancelOrder(o.ref, "live vaccine", label="cancel_vaccine")] if o.is_draft and o.ref else [], drug=tp,
            indicator=spec.indicator if low and spec is not None else None,
            sources=(spec.source, *spec.sources) if level["level"] and spec is not None else ()))
    return findings


def vaccine_timing_findings(facts: ClinicalFacts) -> list[Finding]:
    """A live vaccine ordered within months after a thiopurine was stopped; a thiopurine ordered within
    weeks after a live vaccine was given (Immunization history). Linear in the records: the stopped
    thiopurine and the live vaccine that count are found once, not once per order."""
    spec = load().interactions.live_vaccines
    out = []
    on_thiopurine = any(thiopurine_of(m) for m in facts.orders + facts.active_medications)
    stopped = None if on_thiopurine else next(
        ((m, tp, m.ended_on) for m in facts.past_medications if (tp := thiopurine_of(m)) and m.ended_on
         and facts.today - m.ended_on <= timedelta(days=spec.after_stop_days)), None)
    for v in facts.orders if stopped is not None else ():
        codes = _live(v)
        if codes and v.selected and v.is_draft and stopped is not None:
            m, tp, ended = stopped
            out.append(Finding("live-vaccine-after-thiopurine", m.ref,
                               {"ended": ended.isoformat(), "days_since": (facts.today - ended).days,
                                "limit_days": spec.after_stop_days, **_vaccine_values(codes)},
                               [CancelOrder(v.ref, "live vaccine", label="cancel_vaccine")] if v.ref else [], drug=tp))
    active = {i for m in facts.active_medications for i in m.ingredients}
    given: tuple[date, list[str]] | None = None
    for imm in facts.immunizations:
        when = imm.authored_on
        if when and facts.today - when <= timedelta(days=spec.before_start_days) and (codes := _live(imm)):
            given = (when, codes)
            break
    for order in facts.orders if given is not None else ():
        tp = thiopurine_of(order)
        if tp and order.selected and tp not in active and given is not None:
            when, codes = given
            out.append(Finding("thiopurine-after-live-vaccine", order.ref,
                               {"given": when.isoformat(), "days_since": (facts.today - when).days,
                                "limit_days": spec.before_start_days, **_vaccine_values(codes)}, drug=tp))
    return out


@cache
def _other_tables() -> tuple[tuple[str, str, frozenset[str], OtherInteraction], ...]:
    """interactions.toml [others.*] as (key, rule id, ingredients, spec), in the file's order: built once at load."""
    return tuple((key, other_rule_id(key), frozenset(spec.ingredients), spec)
                 for key, spec in load().interactions.others.items())


def other_findings(facts: ClinicalFacts, meds: Medications | None = None,
                   weight_max_age_days: int | None = None) -> list[Finding]:
    if meds is None:
        meds = medications(facts)
    if not meds.thiopurines:
        return []  # no thiopurine among the orders and medications: no pair to find
    findings = []
    for key, rule_id, drugs, spec in _other_tables():
        if meds.ingredients.isdisjoint(drugs):
            continue  # none of the medications has this table's ingredients
        for t, tp, o, new in _pairs(facts, lambda m, drugs=drugs: bool(m.ingredients & drugs), meds,
                                    ingredients=drugs):
            other = sorted(o.ingredients & drugs)[0]
            # round-14 m4: standard practice in the thiopurine order's indication (co-trimoxazole in ALL)
            ind = indication(t, indication_records(facts))[0] if spec.routine_in else ""
            routine_in = ind if ind in spec.routine_in else ""
            not_routine_dose: dict = {}  # round-15 M5: why the other drug's order is not the routine (prophylactic) one
            if routine_in:
                not_routine_dose = _not_routine_dose(facts, o, spec, weight_max_age_days)
                if not_routine_dose:
                    routine_in = ""
            routine = spec.routine_combination or bool(routine_in)
            if routine and _renews_combination(facts, t, tp, o, drugs, new):
                continue  # a routine combination taken together already (BSG 2019): nothing on its renewal
            findings.append(Finding(rule_id, t.ref,
                                    {"other": other, "group": key, "new": new, "thiopurine_state": _state(t),
                                     "other_state": _state(o), "routine": routine, "routine_in": routine_in,
                                     **_renewed(facts, t, tp, o, drugs),
                                     **({"not_routine_in": ind, "not_routine_dose": not_routine_dose}
                                        if not_routine_dose else {})}, drug=tp,
                                    indicator="info" if routine else None,
                                    sources=(*spec.sources, *((spec.routine_in_source,) if routine_in else ()),
                                             *((spec.routine_dose_source,) if not_routine_dose
                                               and spec.routine_dose_source else ()))))
    return findings


def _not_routine_dose(facts: ClinicalFacts, o: MedicationFact, spec: OtherInteraction,
                      weight_max_age_days: int | None) -> dict:
    """Round-15 M5: {} when the other drug's order is at a routine (prophylactic) dose (interactions.toml
    routine_max_mg_per_day, and routine_max_mg_per_m2_day for a child), else why not as values the catalogue words
    ("why": "unreadable", "above_daily", "no_bsa", "above_m2"): a higher dose, a dose that could not be read, or a
    child's dose with no body surface area to compare it with. A table with no dose condition: always {}."""
    if spec.routine_max_mg_per_day is None and spec.routine_max_mg_per_m2_day is None:
        return {}
    dose = o.daily_dose
    if dose is None:
        return {"why": "unreadable", "problem": o.dose_problem or o.schedule_problem or "no dose"}
    mg = dose.high_mg
    if spec.routine_max_mg_per_day is not None and mg > spec.routine_max_mg_per_day + 1e-9:
        return {"why": "above_daily", "mg": mg, "max": spec.routine_max_mg_per_day}
    if spec.routine_max_mg_per_m2_day is not None and is_child(facts):
        days = weight_window_days(facts, weight_max_age_days if weight_max_age_days is not None else 90)
        found = body_surface_area(facts, days)
        if found is None:
            return {"why": "no_bsa", "mg": mg, "max": spec.routine_max_mg_per_m2_day}
        per_m2, ceiling = mg / found[0], spec.routine_max_mg_per_m2_day * found[0]
        if spec.routine_round_up_mg:  # a tablet order rounds the per-m2 dose up to whole tablets
            ceiling = math.ceil(ceiling / spec.routine_round_up_mg - 1e-9) * spec.routine_round_up_mg
        if mg > ceiling + 1e-9:
            return {"why": "above_m2", "mg": mg, "max": spec.routine_max_mg_per_m2_day, "per_m2": round(per_m2),
                    "bsa": round(found[0], 2), "ceiling": ceiling}
    return {}


def _renews_combination(facts: ClinicalFacts, t: MedicationFact, tp: str, o: MedicationFact, drugs: frozenset[str],
                        new: str) -> bool:
    """The new order continues a combination already taken: the other drug of the pair is active, and the new
    order renews an order of its own drug that is taken (priorPrescription/basedOn: ``rules.without_replaced`` has
    already moved the renewed order to ``renewed_medications``) or an active order of the same drug is on record next
    to it (the thiopurine and the interacting drug have been taken together already)."""
    draft, partner, same = (t, o, {tp}) if new == "thiopurine" else (o, t, o.ingredients & drugs)
    if partner.is_draft:
        return False  # the other drug is a new start too: the note is due
    # round-19: the one definition of therapy continued (``continued_by``: the order the draft renews, as
    # ``rules.without_replaced`` reads it, else an active order of the drug; ``link_shows_therapy``: a link to an
    # order not on record stands): a draft naming an order stopped before it (a restart) or another drug's order (a
    # switch) renews no combination
    return continued_by(facts, draft, same) is not None or link_shows_therapy(facts, draft)


_ENDED = frozenset({"stopped", "completed", "cancelled", "entered-in-error", "revoked"})


def duplicate_findings(facts: ClinicalFacts, meds: Medications | None = None) -> list[Finding]:
    """A selected draft of one thiopurine with another thiopurine active, recorded or ordered.

    Round-18 M2: a draft that names the other thiopurine's order it replaces (priorPrescription / basedOn) is a
    switch, not duplicate therapy: an info note (``thiopurine-switch``) to end that order, no critical card. An
    order of the other thiopurine sent as ended in this call (stopped, completed, cancelled) is not a second
    thiopurine. No conversion factor between the drugs is given (none in the knowledge data cites a source):
    round-19, the draft is dosed as a new start of its own drug (its normal dose for this patient, CPIC's TPMT/NUDT15
    band of it), as the same draft without the link is, never from the dose of the drug it replaces.
    Round-18 H4: the duplicate card leaves the choice of which to stop to the prescriber (every order is offered
    for cancelling, none recommended), so it does not stop this order (``stops_order`` False): the dose and
    TPMT/NUDT15 findings of the order that may be kept stay on their cards.

    Round-19 H4: a switch replaces only the orders it names (and a statement recording one of them: its basedOn /
    derivedFrom names it); every other order or statement of a thiopurine still makes a duplicate card, beside
    the switch note (azathioprine is converted to mercaptopurine: together, additive myelotoxicity; Imuran label).
    Round-19 m7: the duplicate card names and offers to end every other order, not only the first. Round-19 m6: one
    card for one problem: a draft that an earlier duplicate card already names (two thiopurine drafts) gets no
    second card for the same medications. Round-20 m5: nor does a draft whose medications are on an earlier card only
    as the orders that card's draft replaces (mercaptopurine active, an azathioprine draft replacing it, a thioguanine
    draft): every thiopurine of one duplicate problem is on one card, whichever draft it came from."""
    if meds is None:
        meds = medications(facts)
    findings: list[Finding] = []
    current = [(m, op) for m, op in meds.thiopurines if m.status not in _ENDED]
    if len({op for _, op in current}) < 2:
        return findings  # one thiopurine (or none): no other to duplicate it
    position = {id(m): i for i, m in enumerate(meds.all)}
    # round-20 m5 (the round-19 m6 class with three drugs): one duplicate problem, one card. Each card collects the
    # medications of one problem (its order, the others it duplicates, the orders it replaces); a later draft any of
    # whose medications is already on a card adds its own others to that card instead of making a second one
    cards: list[dict[str, Any]] = []
    card_of: dict[int, int] = {}  # id of a medication -> the card it is on
    slots: list[Finding | int] = []  # the findings in order; an int is a duplicate card, built at the end
    for order in facts.orders:
        tp = thiopurine_of(order)
        if not (tp and order.selected) or order.status in _ENDED:
            continue
        named = {short_ref(r) for r in order.replaces}
        others = sorted((m for m, op in current if op != tp and m is not order), key=lambda m: position[id(m)])
        # the other thiopurine's orders this draft names as the ones it replaces (a switch), and the statements
        # that record taking one of them (the same therapy): only these are replaced
        replaced = [m for m in others if m.ref and not m.is_draft and short_ref(m.ref) in named]
        replaced_refs = {short_ref(m.ref) for m in replaced}
        dup = [m for m in others if not any(m is r for r in replaced) and not (m.records & replaced_refs)]
        if dup:
            at = next((card_of[id(m)] for m in (order, *dup) if id(m) in card_of), None)
            if at is None:
                at = len(cards)
                cards.append({"order": order, "tp": tp, "dup": [], "replaced": replaced})
                slots.append(at)
                card_of[id(order)] = at
                card_of.update((id(m), at) for m in replaced)
            card = cards[at]
            for m in dup:  # already on the card (its order, another, a replaced one): named once (m6)
                if id(m) not in card_of:
                    card["dup"].append(m)
                    card_of[id(m)] = at
            if order is not card["order"] and id(order) not in card_of:
                card["dup"].append(order)
                card_of[id(order)] = at
        # orders of one drug on this order's cards (ended on one, replaced on the other): each is named (round-19 m7)
        if replaced:
            endable = [m for m in dup if m.ref and _state(m) != "recorded"]
            per_drug = Counter(thiopurine_of(m) or "" for m in (*endable, *replaced))
            slots.append(_switch_finding(order, tp, replaced, bool(dup), per_drug, is_new_start(facts, order, tp)))
    for slot in slots:
        if isinstance(slot, Finding):
            findings.append(slot)
            continue
        card = cards[slot]
        dup = card["dup"]
        if not dup:
            continue
        endable = [m for m in dup if m.ref and _state(m) != "recorded"]  # an order here to end (a statement has none)
        per_drug = Counter(thiopurine_of(m) or "" for m in (*endable, *card["replaced"]))
        findings.append(_duplicate_finding(card["order"], card["tp"], dup, card["replaced"], endable, per_drug))
    return findings


def _other_entry(m: MedicationFact) -> dict:
    """One other thiopurine on a duplicate or switch card: its drug, state, order ("MedicationRequest/id") and name."""
    return {"drug": thiopurine_of(m) or "", "state": _state(m), "ref": short_ref(m.ref), "display": m.display}


def _cancel_label(same_drug: int, label: str) -> str:
    """The suggestion label of ending an order: ``<label>_named`` (the catalogue names the order) when another order
    of its drug is offered on the card too (round-19 m7: two mercaptopurine orders, each named)."""
    return f"{label}_named" if same_drug > 1 else label


def _duplicate_finding(order: MedicationFact, tp: str, dup: list[MedicationFact], replaced: list[MedicationFact],
                       endable: list[MedicationFact], per_drug: Counter[str]) -> Finding:
    other = dup[0]
    actions: list[Action] = [CancelOrder(order.ref, tp, recommended=False)] if order.ref else []
    for m in endable:
        m_tp = thiopurine_of(m) or ""
        actions.append(CancelOrder(m.ref, m_tp, label=_cancel_label(per_drug[m_tp], "cancel_other"), recommended=False))
    values: dict = {"other": thiopurine_of(other) or "", "other_state": _state(other),
                    "others": [_other_entry(m) for m in dup]}
    if replaced:
        values["switched"] = [_other_entry(m) for m in replaced]
    return Finding("duplicate-thiopurine", order.ref, values, actions, drug=tp)


def _switch_finding(order: MedicationFact, tp: str, replaced: list[MedicationFact], also_duplicate: bool,
                    per_drug: Counter[str], new_start: bool) -> Finding:
    """The switch note. ``new_start``: the draft is a new start of its own drug (round-19: unless the record shows
    therapy of it; its link to the other drug's order is no such evidence, ``rules.evaluate.without_replaced``)."""
    first = replaced[0]
    other_tp = thiopurine_of(first) or ""
    actions: list[Action] = []
    for m in replaced:
        m_tp = thiopurine_of(m) or ""
        actions.append(CancelOrder(m.ref, m_tp, label=_cancel_label(per_drug[m_tp], "end_replaced")))
    values: dict = {"other": other_tp, "other_state": _state(first), "other_ref": short_ref(first.ref),
                    "replaced": [_other_entry(m) for m in replaced], "new_start": new_start}
    if also_duplicate:
        values["also_duplicate"] = True
    return Finding("thiopurine-switch", order.ref, values, actions, drug=tp)


def interaction_findings(facts: ClinicalFacts, weight_max_age_days: int | None = None) -> list[Finding]:
    meds = medications(facts)  # once for every pairwise check
    return (duplicate_findings(facts, meds) + xoi_findings(facts, meds)
            + vaccine_findings(facts, meds, weight_max_age_days)
            + vaccine_timing_findings(facts) + warfarin_findings(facts, meds)
            + other_findings(facts, meds, weight_max_age_days))


@cache
def interacting_ingredients() -> frozenset[str]:
    k = load().interactions
    names = set(k.xanthine_oxidase_inhibitors.ingredients) | set(k.warfarin.ingredients)
    for spec in k.others.values():
        names |= set(spec.ingredients)
    return frozenset(names)


def is_live_vaccine(m: MedicationFact) -> bool:
    return bool(_live(m))
