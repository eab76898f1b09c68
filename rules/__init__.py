"""Pure clinical logic over ``fhir_mappers`` facts: no HTTP, no FHIR, no Flask.

``evaluate(facts)`` runs every rule and returns findings (one per problem, a
combined dose where several rules change the same order); ``needs_data(orders)``
tells the hooks whether a hook call concerns thiopurines at all, so that an
unrelated order costs no FHIR queries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fhir_mappers.facts import ClinicalFacts, MedicationFact

from .common import drug_name, fmt_mg, round_down, thiopurine_of
from .dose import dose_findings, schedule_error_findings, weight_findings
from .findings import SEVERITY, ChangeDose, Finding
from .interactions import interacting_ingredients, interaction_findings, is_live_vaccine
from .knowledge_base import load
from .monitoring import cbc_due_findings, lab_findings, tpmt_high_findings
from .pgx import pgx_findings
from .populations import population_findings

__all__ = ["evaluate", "needs_data", "RuleOptions", "Finding", "knowledge_version"]


@dataclass(frozen=True)
class RuleOptions:
    weight_max_age_days: int = 90


def knowledge_version() -> str:
    return load().version


def _concerns(o: MedicationFact) -> bool:
    return bool(thiopurine_of(o) or o.ingredients & interacting_ingredients() or is_live_vaccine(o))


# Data groups an order needs when it is not a thiopurine itself but may interact with one
# (warfarin, allopurinol, a live vaccine...): only whether a thiopurine is active.
INTERACTION_ONLY_GROUPS = frozenset({"patient", "medications"})


def thiopurine_ordered(orders: list[MedicationFact]) -> bool:
    return any(o.selected and thiopurine_of(o) for o in orders)


def needs_data(orders: list[MedicationFact]) -> bool:
    """True when a selected draft order is a thiopurine or a drug/vaccine that interacts with one."""
    return any(o.selected and _concerns(o) for o in orders)


# Data groups whose absence leaves a safety check undone, and which check.
_GROUP_CHECKS = {
    "medications": ("active medications", "interactions (allopurinol, febuxostat, warfarin, live vaccines) and duplicate thiopurines"),
    "labs": ("recent blood counts and liver tests", "cytopenia, lymphopenia and liver tests"),
    "weight": ("body weight", "the dose in mg/kg/day"),
    "conditions": ("active conditions", "the indication and its dose range"),
    "allergies": ("allergies", "thiopurine hypersensitivity"),
    "pregnancy": ("pregnancy and breastfeeding status", "pregnancy and breastfeeding"),
    "patient": ("demographics", "age"),
}


def data_gap_findings(facts: ClinicalFacts) -> list[Finding]:
    """One card naming the data that could not be obtained or read, and what to check by hand."""
    thiopurine = any(o.selected and thiopurine_of(o) for o in facts.orders)
    if not thiopurine:
        if "medications" in facts.unavailable and needs_data(facts.orders):
            other = next(o for o in facts.orders if o.selected and _concerns(o))
            return [Finding(
                rule_id="data-incomplete", indicator="info", title="Incomplete safety check",
                summary=f"Active medications could not be retrieved: check for thiopurine interactions with {other.display[:40]}",
                detail=("The patient's active medications could not be retrieved, so interactions of this order with "
                        "azathioprine, mercaptopurine or thioguanine were not checked. Check by hand."),
                sources=("fda_azathioprine_interactions",))]
        return []
    lines = []
    why_by_key = {g.key: g.why for g in facts.gaps}
    for group, (what, check) in _GROUP_CHECKS.items():
        if group in facts.unavailable:
            why = why_by_key.get(group, "it could not be retrieved")
            lines.append(f"- **{what}**: {why}. Check {check} by hand.")
    for gap in facts.gaps:
        if gap.key == "pgx" or gap.key in _GROUP_CHECKS and gap.key in facts.unavailable:
            continue  # said by the pharmacogenomic card / the line above
        lines.append(f"- **{gap.what}**: {gap.why}; it was not used.")
    if not lines:
        return []
    serious = bool(facts.unavailable & {"medications", "labs", "weight", "patient", "allergies"}) or \
        any(g.key in ("tpmt_activity", "neutrophils", "wbc", "platelets", "lymphocytes", "weight") for g in facts.gaps)
    return [Finding(
        rule_id="data-incomplete", indicator="warning" if serious else "info", title="Incomplete safety check",
        summary="Thiopurine safety check incomplete: some patient data could not be read; check by hand",
        detail="Parts of this check could not be done:\n\n" + "\n".join(dict.fromkeys(lines)),
        sources=("fda_azathioprine",), priority=5,
    )]


def consolidate_doses(findings: list[Finding], facts: ClinicalFacts) -> None:
    """Where several findings change the dose of the same order, one suggestion carries the
    combined dose (the lowest cap, times every factor) on the most severe of them."""
    by_ref: dict[str, list[tuple[Finding, ChangeDose]]] = {}
    for f in findings:
        for a in f.actions:
            if isinstance(a, ChangeDose):
                by_ref.setdefault(a.order_ref, []).append((f, a))
    meds = {m.ref: m for m in facts.orders + facts.active_medications if m.ref}
    for ref, items in by_ref.items():
        if len(items) < 2 or ref not in meds or meds[ref].daily_dose is None:
            continue
        current = meds[ref].daily_dose.mg
        caps = [a.cap_mg for _, a in items if a.cap_mg is not None]
        factor = math.prod(a.factor for _, a in items if a.factor is not None)
        step = min(a.step_mg for _, a in items)
        drug = next((a.drug for _, a in items if a.drug), thiopurine_of(meds[ref]) or "")
        combined = round_down(min([current, *caps]) * factor, step)
        main = max(items, key=lambda fa: SEVERITY[fa[0].indicator])[0]
        titles = " + ".join(dict.fromkeys(f.title for f, _ in items))
        for f, a in items:
            f.actions.remove(a)
            if f is not main:
                f.detail += f"\n\nOne combined dose for all dose problems is suggested on the card “{main.title}”."
        if combined >= step:
            main.actions.insert(0, ChangeDose(ref, combined, f"Change to {drug} {fmt_mg(combined)} mg once daily ({titles})",
                                              drug=drug, step_mg=step))
        if main.dose_summary:
            dose = (f"{fmt_mg(combined)} mg/day (combined)" if combined >= step
                    else f"under {fmt_mg(step)} mg/day (ask a specialist)")
            main.summary = Finding(main.rule_id, main.indicator, main.dose_summary.format(dose=dose), "", ()).summary
        main.detail += (f"\n\n**Combined dose** ({titles}): {fmt_mg(combined)} mg/day"
                        + (f" (below one {fmt_mg(step)} mg step: seek specialist advice)" if combined < step else "") + ".")


def evaluate(facts: ClinicalFacts, options: RuleOptions = RuleOptions()) -> list[Finding]:
    days = options.weight_max_age_days
    findings: list[Finding] = []
    findings += population_findings(facts)        # hypersensitivity first: it outranks dosing
    findings += pgx_findings(facts, weight_max_age_days=days)
    findings += interaction_findings(facts)
    findings += dose_findings(facts, days)
    findings += schedule_error_findings(facts)
    findings += weight_findings(facts, days)
    findings += cbc_due_findings(facts)
    findings += lab_findings(facts)
    findings += tpmt_high_findings(facts)
    findings += data_gap_findings(facts)
    findings = drop_superseded(findings)
    consolidate_doses(findings, facts)
    return findings


# Dose advice that says nothing new once another card stops or reduces the same order.
_SUPERSEDED_BY_STOP = {"dose-new-start", "dose-above-range", "pgx-reduce-dose", "pgx-dose-in-reduced-range"}
_SUPERSEDED_BY_REDUCTION = {"dose-new-start"}


def drop_superseded(findings: list[Finding]) -> list[Finding]:
    from .findings import CancelOrder

    stopped = {a.order_ref for f in findings if f.indicator == "critical"
               for a in f.actions if isinstance(a, CancelOrder) and thiopurine_order_ref(a.order_ref, findings)}
    reduced = {f.order_ref for f in findings if f.rule_id in ("pgx-reduce-dose", "dose-above-range")}
    return [f for f in findings
            if not (f.order_ref in stopped and f.rule_id in _SUPERSEDED_BY_STOP)
            and not (f.order_ref in reduced and f.rule_id in _SUPERSEDED_BY_REDUCTION)]


def thiopurine_order_ref(ref: str, findings: list[Finding]) -> bool:
    """A cancel action stops a thiopurine when a dose finding concerns the same order."""
    return bool(ref) and any(f.order_ref == ref and f.rule_id in _SUPERSEDED_BY_STOP | {"pgx-poor-metabolizer",
                             "hypersensitivity", "duplicate-thiopurine"} for f in findings)
