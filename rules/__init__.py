"""Pure clinical logic over ``fhir_mappers`` facts: no HTTP, no FHIR, no Flask.

``evaluate(facts)`` runs every rule and returns findings; ``needs_data(orders)``
tells the hooks whether a hook call concerns thiopurines at all, so that an
unrelated order costs no FHIR queries.
"""
from __future__ import annotations

from dataclasses import dataclass

from fhir_mappers.facts import ClinicalFacts, MedicationFact

from .common import thiopurine_of
from .findings import Finding
from .knowledge_base import load
from .pgx import pgx_findings

__all__ = ["evaluate", "needs_data", "RuleOptions", "Finding", "knowledge_version"]


@dataclass(frozen=True)
class RuleOptions:
    weight_max_age_days: int = 90


def knowledge_version() -> str:
    return load().version


def needs_data(orders: list[MedicationFact]) -> bool:
    """True when at least one draft order is a thiopurine (later: or interacts with one)."""
    return any(o.selected and thiopurine_of(o) for o in orders)


# Data groups whose absence leaves a safety check undone, and which check.
_GROUP_CHECKS = {
    "medications": ("active medications", "interactions (allopurinol, febuxostat, warfarin, live vaccines) and duplicate thiopurines"),
    "labs": ("recent blood counts and liver tests", "cytopenia, lymphopenia and liver tests"),
    "weight": ("body weight", "the dose in mg/kg/day"),
    "conditions": ("active conditions", "the indication and its dose range"),
    "pregnancy": ("pregnancy status", "pregnancy"),
    "patient": ("demographics", "age"),
}


def data_gap_findings(facts: ClinicalFacts, findings: list[Finding]) -> list[Finding]:
    """One card naming the data that could not be obtained or read, and what to check by hand."""
    orders = [o for o in facts.orders if o.selected and thiopurine_of(o)]
    if not orders:
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
    for o in orders:
        if o.daily_dose is None and o.dose_problem and not any(f.order_ref == o.ref and f.rule_id == "pgx-reduce-dose" for f in findings):
            lines.append(f"- **dose of {o.display}**: {o.dose_problem}; check the dose by hand.")
    if not lines:
        return []
    serious = facts.unavailable & {"medications", "labs", "weight", "patient"} or any(o.dose_problem for o in orders)
    return [Finding(
        rule_id="data-incomplete",
        indicator="warning" if serious else "info",
        title="Incomplete safety check",
        summary="Thiopurine safety check incomplete: some patient data could not be read; check by hand",
        detail="Parts of this check could not be done:\n\n" + "\n".join(dict.fromkeys(lines)),
        sources=("fda_azathioprine",),
    )]


def evaluate(facts: ClinicalFacts, options: RuleOptions = RuleOptions()) -> list[Finding]:
    findings = pgx_findings(facts, weight_max_age_days=options.weight_max_age_days)
    findings += data_gap_findings(facts, findings)
    return findings
