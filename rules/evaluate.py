"""The rules stage of one hook call: facts in, findings out (rule id, order, values; no English).

``evaluate(facts, options)`` runs every rule module, then consolidates: superseded advice is dropped
(``drop_superseded``) and one dose plan per order is attached to every finding about it (``attach_plans``).
``emitted()`` is every rule id the modules may give, read from the data (each catalogue entry's ``module``, and
interactions.toml's [others.*] tables): the start-up check finds each in the catalogue.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import msgspec
from functools import cache

from fhir_mappers.facts import ClinicalFacts, DailyDose, MedicationFact, PriorTherapy

from . import interactions as _interactions, populations as _populations
from .catalogue import catalogue as _catalogue, indicator_of, priority_of, rule_ids_of
from .common import body_surface_area, continued_up_to, link_shows_therapy, long_ended, short_ref, thiopurine_of
from .context import CallContext, context_of
from .doseplan import DosePlan, follows, plan_doses
from .dose import dose_findings, schedule_error_findings, weight_findings
from .findings import CancelOrder, ChangeDose, DoseLimit, Finding
from .future import ahead_marked, future_activity_raised, future_raised, raised_gaps
from .gaps import bounds_quoted, data_gap_findings, future_genes_named, truncation_findings
from .interactions import interaction_findings
from .knowledge_base import load, version_key
from .knowledge_schema import RULE_MODULES
from .monitoring import (aih_start_findings, cbc_due_findings, lab_findings, restart_not_tolerated_findings,
                         thioguanine_liver_findings, tpmt_high_findings)
from .pgx import active_order_pgx_findings, pgx_findings
from .plausibility import future_dated, implausible_labs
from .populations import population_findings

GUIDELINES = ("cpic", "dpwg")


@dataclass(frozen=True)
class RuleOptions:
    weight_max_age_days: int = 90
    guideline: str = "cpic"  # AZA_CDS_GUIDELINE: "cpic" (default) or "dpwg"

    def __post_init__(self) -> None:
        if self.guideline not in GUIDELINES:
            raise ValueError(f"guideline must be one of {', '.join(GUIDELINES)}, not {self.guideline!r}")


@cache
def knowledge_version() -> str:
    """The newest version of the knowledge files and the catalogue (both read once, at start)."""
    return max(load().version, _catalogue().version, key=version_key)


def emitted_by(module: str) -> tuple[str, ...]:
    """The rule ids ``rules/<module>.py`` may emit, read from the data: the catalogue entries naming that ``module``;
    for interactions also one per interactions.toml [others.*] table (``interactions.rule_ids``)."""
    return _interactions.rule_ids() if module == "interactions" else rule_ids_of(module)


@cache
def emitted() -> frozenset[str]:
    """Every rule id a rule module may emit (``emitted_by`` each of knowledge_schema.RULE_MODULES): no hand-kept list.
    A table added to interactions.toml without a catalogue entry stops the start (``check_catalogue``)."""
    return frozenset(rule_id for module in RULE_MODULES for rule_id in emitted_by(module))


def check_catalogue() -> None:
    """The start-up check: the knowledge files load (typed), every emitted rule id has a catalogue entry and
    every template renders (KnowledgeError: one line naming file, table and key)."""
    from .catalogue import check

    load()
    check(set(emitted()))


@cache
def _superseded_by() -> dict[str, frozenset[str]]:
    """rule id -> the other rules whose catalogue entries supersede it (from the static catalogue)."""
    cat = _catalogue()
    by: dict[str, set[str]] = {}
    for other, entry in cat.entries.items():
        for rule_id in entry.supersedes:
            if rule_id != other:
                by.setdefault(rule_id, set()).add(other)
    return {rule_id: frozenset(others) for rule_id, others in by.items()}


START_REGIMEN_RULES = frozenset({"dose-new-start"})  # a start regimen of its own, not a converged dose plan


def leaves_the_choice(f: Finding) -> bool:
    """Round-18 H4: a card that offers to cancel another order, or offers this order's cancel only as an option (not
    recommended), leaves the choice of which to stop to the prescriber (duplicate thiopurines: "stop one"): it does
    not stop this order, so it supersedes none of its dose or TPMT/NUDT15 advice (that order may be the one kept).
    Only a card recommending to cancel THIS order with no alternative supersedes it."""
    cancels = [a for a in f.actions if isinstance(a, CancelOrder)]
    return any(a.order_ref != f.order_ref or not a.recommended for a in cancels)


def drop_superseded(findings: list[Finding]) -> list[Finding]:
    """A finding supersedes the rules its catalogue entry names on the same order; one that stops an
    order also supersedes the catalogue's dose advice for it, and its dose limits: no other card about a
    stopped order states a dose (``values["order_stopped"]``, no plan). A stop without a dose of its own
    (severe cytopenia, hypersensitivity, a contraindicated combination) leaves no dose on that order at all;
    a stop that offers a reduced dose as the second choice (DPWG poor metabolizer: an alternative, or 10 %)
    keeps that one, on its own card, and a fraction of the dose another finding asks for (allopurinol's
    1/4-1/3, FDA label section 7) still applies to it: both, in one plan on the stopping card. Beside a stop
    without a dose that reduced dose goes too: the card names the alternative only, with no mg figure."""
    cat = _catalogue()
    superseded_by = _superseded_by()
    fired = {(f.order_ref, f.rule_id) for f in findings}
    stoppers: dict[str, list[Finding]] = {}
    for f in findings:
        if f.stops_order and f.order_ref and not leaves_the_choice(f):
            stoppers.setdefault(f.order_ref, []).append(f)
    hard = {ref for ref, fs in stoppers.items() if any(g.dose is None for g in fs)}
    # round-6 M4/m2 (one order, one answer): the start regimen ("start at 75 mg/day") is only the answer for an
    # order no other finding doses, withholds or stops; an order with a dose limit (allopurinol's 1/4-1/3, a
    # TPMT/NUDT15 band, the indication's maximum) gets its one converged dose on those cards instead; a qualitative
    # limit ("lower doses" in renal impairment, no figure) leaves the start regimen as the only figure
    no_start = {f.order_ref for f in findings if f.order_ref and (f.withholds or f.order_ref in stoppers
                                                                  or f.dose is not None and not f.dose.qualitative)}
    out = []
    for f in findings:
        superseded = any((f.order_ref, other) in fired for other in superseded_by.get(f.rule_id, ()))
        if f.rule_id in START_REGIMEN_RULES and f.order_ref in no_start:
            superseded = True
        if f.order_ref in stoppers and not f.stops_order and f.rule_id in cat.stop_supersedes:
            superseded = True
        if superseded:
            continue
        if f.order_ref in stoppers and (f.order_ref in hard or not f.stops_order):
            fraction = f.order_ref not in hard and _fraction_only(f.dose)  # it applies to the reduced dose offered
            if f.dose is not None and not fraction:
                # the order is stopped: no dose for it on this card
                f = msgspec.structs.replace(f, dose=None, actions=[a for a in f.actions if not isinstance(a, ChangeDose)])
                f.values.pop("reduced_mg", None)  # nor its figure ("10 % = 14 mg/day")
            if f.order_ref in hard and f.values.get("mode") == "avoid_or_reduce":
                f.values["mode"] = "avoid"  # "an alternative, or 10 %": only the alternative is left
                f.values.pop("reduced_mg", None)
            if not f.stops_order:
                f.values["order_stopped"] = True
        out.append(f)
    return out


def start_lower_for(findings: list[Finding]) -> list[Finding]:
    """Round-14 m5: a start figure (``dose-new-start``, or ``dose-above-range`` brought to the starting dose) on an
    order that a qualitative limit also concerns (renal impairment: the Imuran label, DOSAGE AND ADMINISTRATION,
    gives such patients lower doses, no figure) says the start should be lower than that figure, citing the label,
    and gives no figure of its own: ``values["lower_for"]`` names the rules, the label source is added."""
    lower: dict[str, list[str]] = {}
    for f in findings:
        if f.order_ref and f.dose is not None and f.dose.qualitative:
            lower.setdefault(f.order_ref, []).append(f.rule_id)
    if not lower:
        return findings
    out = []
    for f in findings:
        starting = f.rule_id in START_REGIMEN_RULES or f.values.get("start_ceiling")
        if starting and f.order_ref in lower:
            sources = f.sources if LOWER_DOSE_SOURCE in f.sources else (*f.sources, LOWER_DOSE_SOURCE)
            f = msgspec.structs.replace(f, values={**f.values, "lower_for": lower[f.order_ref]}, sources=sources)
        out.append(f)
    return out


LOWER_DOSE_SOURCE = "fda_azathioprine_monitoring"  # Imuran label, DOSAGE AND ADMINISTRATION: renal dysfunction, lower doses


def _fraction_only(limit: DoseLimit | None) -> bool:
    """A limit that is only a fraction of whatever dose is given (allopurinol: 1/4-1/3 of it)."""
    return limit is not None and limit.factor_high is not None and limit.high_mg is None and limit.low_mg is None


_PGX_DOSE = frozenset({"pgx-reduce-dose", "pgx-poor-metabolizer"})


def drop_range_under_pgx(findings: list[Finding]) -> list[Finding]:
    """One card per problem, one dose per order: the indication's maximum (``dose-above-range``) is
    superseded on an order whose TPMT/NUDT15 plan already sets a lower dose (every PGx target is a
    fraction of the normal dose, which is at or under the indication's maximum). A critical one (far
    above the maximum: a recording error?) stays, and carries the one plan."""
    pgx = {f.order_ref for f in findings if f.rule_id in _PGX_DOSE and f.dose is not None and f.order_ref}
    return [f for f in findings if not (f.rule_id == "dose-above-range" and f.order_ref in pgx
                                        and f.indicator != "critical")]


# dose advice whose card, once the order follows it, is at most an info note (issue 17: an order that
# already follows the advice is not alerted again). A poor metabolizer's reduced regimen in malignancy (CPIC: one
# tenth, thrice weekly) that the order already follows is an info note too (review2 M1); where the advice is to
# avoid the drug the card stops the order and stays as it is.
CONSISTENT_AS_INFO = frozenset({"interaction-xanthine-oxidase", "pgx-poor-metabolizer"})


def attach_plans(findings: list[Finding], facts: ClinicalFacts, ctx: CallContext | None = None,
                 weight_max_age_days: int = 90) -> dict[str, DosePlan]:
    """One dose plan per order, from the usual dose for the indication and body size (see
    ``rules.doseplan``); a card whose whole point was the dose (allopurinol's fraction) and whose
    order already follows the advice becomes an info note saying so (``values["consistent"]``; the
    finding is replaced in ``findings``: findings are frozen)."""
    ctx = context_of(facts, ctx)
    meds = {m.ref: m for m in facts.orders + facts.active_medications if m.ref and m.daily_dose is not None}
    usual: dict[str, float] = {}
    tops: dict[str, float] = {}
    bases: dict[str, dict] = {}
    forms_of: dict[str, str] = {}
    taken: dict[str, float] = {}
    products: dict[str, tuple[float | None, float | None]] = {}
    for ref, m in meds.items():
        drug = thiopurine_of(m)
        if not drug:
            continue
        basis = ctx.size_basis(m, drug, weight_max_age_days)
        if basis["kind"] != "ordered" and basis["reference_mg"]:
            usual[ref] = basis["reference_mg"]
            bases[ref] = basis
            if basis.get("top_mg"):
                # round-8 H4: the top of the indication's usual range: a fraction the service suggests from an
                # order there, once followed, is not cut again (rules.doseplan.plan_doses)
                tops[ref] = basis["top_mg"]
            if basis.get("established_below_mg"):
                # round-9 M2: the dose taken before, a usual dose for the indication under the normal dose
                taken[ref] = basis["established_below_mg"]
        if m.daily_dose is not None and m.daily_dose.form:
            forms_of[ref] = m.daily_dose.form
        if m.unit_mg is not None or m.ml_mg is not None:
            products[ref] = (m.unit_mg, m.ml_mg)  # round-17 H3/M8: a regimen for this order is built from its product
    ordered_of = {ref: m.daily_dose.mg for ref, m in meds.items() if m.daily_dose is not None}
    _follows_own_advice(findings, ordered_of)
    plans = plan_doses(findings, ordered_of,
                       indicator_of, priority_of, usual, forms_of, tops, taken, products)
    for i, f in enumerate(findings):
        if f.order_ref in plans and not f.values.get("order_stopped"):
            f.values["plan"] = plans[f.order_ref].values()
            b = bases.get(f.order_ref)
            if b is not None:
                f.values["plan"]["usual_basis"] = b  # the usual dose a fraction applies to (round-8 H4: stated)
            # round-15 M1: a new start's basis is the label's start dose (``start_basis``); the TPMT/NUDT15 bands keep
            # the maintenance basis under it (``maintenance_basis``): either cites the indication's dosing source
            cited = [x for x in (b, (b or {}).get("maintenance_basis")) if x is not None
                     and (x.get("from_order") or x.get("usual_start") or x.get("start_basis"))]
            if cited and f.rule_id in plans[f.order_ref].rules:
                # round-8 H4: the usual dose the fraction or band applies to is the indication's (the order itself, a
                # usual dose inside the range, or the lowest usual start): the cards cite the indication's dosing source
                # a start basis cites where its start figure comes from (dosing.toml new_start_source / start_source)
                source = cited[0].get("start_source") if cited[0].get("start_basis") else cited[0].get("usual_source")
                if source and source not in f.sources:
                    f = findings[i] = msgspec.structs.replace(f, sources=(*f.sources, source))
            if f.rule_id in CONSISTENT_AS_INFO and not plans[f.order_ref].change and not f.stops_order \
                    and not f.values.get("contraindicated"):
                f.values["consistent"] = True
                actions = f.actions
                if f.values.get("combination_renewed") and not f.values.get("combination_new"):
                    # round-17 M6: a renewal of an established combination whose thiopurine already follows the
                    # advice: a quiet note, no cancel of the other drug offered
                    actions = [a for a in actions if getattr(a, "label", "") != "cancel_other"]
                # round-19 H3: a renewal of a thiopurine dose held or followed by low counts is no quiet note
                quiet = "warning" if f.rule_id == "interaction-xanthine-oxidase" and f.values.get("not_tolerated") else "info"
                findings[i] = msgspec.structs.replace(f, indicator=quiet, actions=actions)
    return plans


def _follows_own_advice(findings: list[Finding], ordered_mg: dict[str, float]) -> None:
    """Round-14 H3 (one order, one answer): a dose card of ``CONSISTENT_AS_INFO`` with a figure of its own (CPIC's
    poor-metabolizer regimen in malignancy, one tenth three times a week) whose order already follows that figure is
    not told to reduce for it, even when another finding on the order (allopurinol newly ordered) cuts the dose
    further: it becomes an info note saying the order follows it (``values["consistent"]``, ``cut_by``), and the
    card of the finding that does cut carries the dose (4 mg three times a week, TPMT poor metabolizer with
    allopurinol: the allopurinol card). Replaced in ``findings`` (findings are frozen)."""
    cutting: dict[str, list[str]] = {}
    for f in findings:
        if f.dose is not None and not f.dose.qualitative and f.order_ref in ordered_mg:
            cutting.setdefault(f.order_ref, []).append(f.rule_id)
    for i, f in enumerate(findings):
        lim = f.dose
        if f.rule_id not in CONSISTENT_AS_INFO or lim is None or lim.high_mg is None or lim.factor_high is not None \
                or f.stops_order or f.values.get("contraindicated") or f.order_ref not in ordered_mg:
            continue
        others = [rid for rid in cutting.get(f.order_ref, []) if rid != f.rule_id]
        own = lim.accept_high_mg if lim.accept_high_mg is not None else lim.high_mg
        if others and follows(ordered_mg[f.order_ref], own, lim.days_per_week):
            findings[i] = msgspec.structs.replace(f, indicator="info", values={**f.values, "consistent": True, "cut_by": others})


def _stale_history(facts: ClinicalFacts, draft: MedicationFact) -> bool:
    """Round-20 M2: every earlier record of the draft's drug (``PriorTherapy.history``) is a completed order whose
    recorded end (``history_end``, the latest) is more than monitoring.toml ``restart_after_days`` before the draft
    (``rules.common.long_ended``): therapy that ended then is not taken now; the draft is a restart."""
    pt = draft.prior_therapy
    return pt is not None and bool(pt.history) and long_ended(pt.history_end, draft.authored_on or facts.today)


def without_replaced(facts: ClinicalFacts) -> ClinicalFacts:
    """An active order that a selected draft renews or replaces (the draft's priorPrescription or basedOn
    names it, and they share an ingredient) is not a second order: it gets no card or dose of its own,
    and no interaction is counted twice through it.

    Round-18 H1/M5: an ended order the draft renews is also therapy taken now when the renewal continues it: a
    ``completed`` order (many EHRs complete the renewed order when the renewal is signed) and a ``stopped`` one
    stopped on or after the draft's date (stopped by this renewal: discontinue and reorder). Such an order joins
    ``renewed_medications`` too (it stays in ``past_medications``), so ``rules.common.taken_orders`` (the one
    definition of therapy taken now) reads it as an active renewed order is read. An order stopped before the
    renewal is a restart: not taken now.

    Round-19 (one order, one answer): the draft's link itself is evidence of earlier therapy of its drug
    (``MedicationFact.prior_therapy``, read by ``rules.common.is_new_start``, monitoring, populations) only as far
    as this definition says so. When every order the draft names is on record and none of them continues therapy
    of the draft's drug (each one stopped before the draft: a restart; or of another drug: a switch, mercaptopurine
    to azathioprine), the link is dropped from the draft's ``prior_therapy`` (what earlier records of the drug show,
    ``PriorTherapy.history``, stays): the draft is a new start of its drug for every rule, as the same order sent
    without the link is. A named order not on record keeps the link (what could not be read is not taken as a
    start or a stop)."""
    drafts = [o for o in facts.orders if o.is_draft and o.replaces]
    if not drafts and not any(o.is_draft and _stale_history(facts, o) for o in facts.orders):
        return facts
    by_draft = [(o.replaces, o.ingredients, o.authored_on or facts.today) for o in drafts]

    def short(m: MedicationFact) -> str:
        return short_ref(m.ref)

    def renewed_by(m: MedicationFact) -> list[date]:
        ref = short(m)
        return [when for refs, ingredients, when in by_draft if ref and ref in refs and m.ingredients & ingredients]

    def continued(m: MedicationFact) -> bool:
        dates = renewed_by(m)
        return bool(dates) and m.status in ("completed", "stopped") and continued_up_to(m, min(dates))

    def unlinked(draft: MedicationFact) -> MedicationFact:
        """``draft`` without its link's evidence of earlier therapy when the link shows none (``link_shows_therapy``:
        every order it names is on record, each stopped before the draft or of another drug), and (round-20 M2)
        without the earlier records' evidence when all of them ended long before it (``_stale_history``)."""
        pt = draft.prior_therapy
        if pt is None or (draft.replaces and link_shows_therapy(facts, draft)):
            return draft
        stale = _stale_history(facts, draft)
        if not draft.replaces and not stale:
            return draft
        if pt.history and not stale:
            return msgspec.structs.replace(draft, prior_therapy=PriorTherapy(pt.history, pt.since, pt.history,
                                                                             pt.history_end))
        if draft.established_status in ("completed", "stopped"):
            # round-20 M2: a restart's "established" dose read from the ended order is a dose taken before the
            # stop, not one taken now: no rule keeps or accepts it as established (the new-start band applies)
            return msgspec.structs.replace(draft, prior_therapy=None, established_dose=None, established_ref="",
                                           established_status="", established_on=None)
        return msgspec.structs.replace(draft, prior_therapy=None)

    gone = [m for m in facts.active_medications if renewed_by(m)]
    ended = [m for m in facts.past_medications if continued(m)]
    orders = [unlinked(o) if o.is_draft else o for o in facts.orders]
    relinked = any(new is not old for new, old in zip(orders, facts.orders, strict=True))
    if not gone and not ended and not relinked:
        return facts
    # round-15 H1: the renewed orders are kept aside: the drug they carry is continuing therapy, not a new start
    return replace(facts, orders=orders,
                   active_medications=[m for m in facts.active_medications if not any(m is g for g in gone)],
                   renewed_medications=[*facts.renewed_medications, *gone, *ended])


def unreadable_doses(facts: ClinicalFacts) -> ClinicalFacts:
    """A thiopurine order of 0 mg, or of more than any plausible dose (dosing.toml implausible_daily_mg), is a
    dose that could not be read: no rule computes mg/kg, a reduced range or a plan from it."""
    top = load().dosing.general.implausible_daily_mg

    def fix(o: MedicationFact) -> MedicationFact:
        d = o.daily_dose
        if d is None or not thiopurine_of(o) or 0 < d.mg <= top:
            return o
        problem = (f"the ordered dose is {d.mg:g} mg/day" if d.mg <= 0 else
                   f"{d.mg:g} mg/day is not a plausible dose (above {top:g} mg/day, the label's highest dose for the "
                   f"heaviest plausible patient): a recording error?")
        return msgspec.structs.replace(o, daily_dose=None, dose_problem=problem)

    orders = [fix(o) for o in facts.orders]
    if all(new is old for new, old in zip(orders, facts.orders, strict=True)):
        return facts
    return replace(facts, orders=orders)


def per_m2_doses(facts: ClinicalFacts, weight_days: int) -> ClinicalFacts:
    """An order written in mg/m² (round-6 m5) becomes mg/day with the body surface area the service uses for every
    mg/m² figure (``common.body_surface_area``: Mosteller, a height from ``height_max_age_days`` and a usable
    weight); the dose text says how. Without them it stays a dose that could not be read, and says why."""
    def fix(o: MedicationFact) -> MedicationFact:
        d = o.dose_per_m2
        if d is None or o.daily_dose is not None:
            return o
        found = body_surface_area(facts, weight_days)
        if found is None:
            return o
        bsa, h, w = found
        text = (f"{d.high_mg:g} mg/m²/day × {bsa:.2f} m² (Mosteller, height {h.value:g} cm"
                f"{' of ' + h.when.date().isoformat() if h.when else ''}, weight {w.value:g} kg"
                f"{' of ' + w.when.date().isoformat() if w.when else ''})" + (f"; {d.text}" if d.text else ""))
        return msgspec.structs.replace(o, daily_dose=DailyDose(round(d.low_mg * bsa, 3), round(d.high_mg * bsa, 3), text, d.form),
                       dose_problem="")

    orders, active = [fix(o) for o in facts.orders], [fix(o) for o in facts.active_medications]
    if all(a is b for a, b in zip([*orders, *active], [*facts.orders, *facts.active_medications], strict=True)):
        return facts
    return replace(facts, orders=orders, active_medications=active)


def evaluate(facts: ClinicalFacts, options: RuleOptions = RuleOptions()) -> list[Finding]:
    sent = facts  # round-17 H1: the results dated after today, set aside below, may still raise a concern
    facts = dated = future_dated(facts)  # round-14 H2: a result dated after today is not a result taken: set aside
    days = _populations.weight_window_days(facts, options.weight_max_age_days)  # a child's weight goes stale sooner
    facts = per_m2_doses(facts, days)  # an order in mg/m² is converted with the body surface area (round-6 m5)
    facts = implausible_labs(without_replaced(unreadable_doses(facts)))  # a value no patient can have is not a result
    ctx = CallContext(facts)  # what several rules derive from these facts, once for this call
    findings: list[Finding] = []
    findings += population_findings(facts, ctx, days)  # hypersensitivity first: it outranks dosing
    findings += pgx_findings(facts, weight_max_age_days=days, guideline=options.guideline, ctx=ctx)
    findings += interaction_findings(facts, options.weight_max_age_days)
    # round-12 H1: an active thiopurine order an interaction card doses (allopurinol newly ordered) gets its
    # TPMT/NUDT15 findings too: one plan from every finding that changes its dose, as when it is the draft
    findings += active_order_pgx_findings(facts, findings, weight_max_age_days=days, guideline=options.guideline,
                                          ctx=ctx)
    # round-20 H1: a renewal of a dose held or followed by a low count, with no PGx/allopurinol card that says it
    findings += restart_not_tolerated_findings(facts, findings, ctx)
    findings += dose_findings(facts, days, ctx)
    findings += schedule_error_findings(facts, ctx)
    findings += weight_findings(facts, days, ctx)
    findings += cbc_due_findings(facts, ctx)
    findings += lab_findings(facts, ctx)
    findings += tpmt_high_findings(facts, ctx)
    findings += aih_start_findings(facts, ctx)           # autoimmune hepatitis: the bilirubin start condition
    findings += thioguanine_liver_findings(facts, ctx)   # thioguanine long term: VOD / portal hypertension
    if dated is not sent:  # something was set aside for its date (``future_dated`` returns its facts unchanged else)
        findings += future_raised(replace(sent, orders=facts.orders, active_medications=facts.active_medications),
                                  findings)  # round-17 H1: raise, never clear
        findings += future_activity_raised(sent, facts, findings, weight_max_age_days=days,
                                           guideline=options.guideline)
    findings = ahead_marked(facts, findings)  # round-19: a concern resting on a result dated tomorrow (kept) says so
    findings += data_gap_findings(facts, ctx, bounds_quoted(findings), future_genes_named(findings),  # a bound a card quotes is not named again
                                  raised_gaps(findings))  # round-19 m5: a result that raised a card is not "not used"
    findings += truncation_findings(facts)
    findings = drop_superseded(findings)
    findings = drop_range_under_pgx(findings)
    findings = start_lower_for(findings)
    attach_plans(findings, facts, ctx, days)
    for f in findings:
        f.values.setdefault("guideline", options.guideline)
    return findings
