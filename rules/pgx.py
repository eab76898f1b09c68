"""TPMT and NUDT15 pharmacogenomics for thiopurine orders (CPIC).

Stages, as in PharmCAT: result → phenotype per gene (``gene_status``), the two
genes → a CPIC category (``category``), category + dose → findings
(``pgx_findings``). A result this module cannot read is reported, never taken
as normal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhir_mappers.facts import ClinicalFacts, GeneResult, MedicationFact

from .common import drug_name, fmt_mg, fmt_mgkg, round_down, thiopurine_orders, usable_weight
from .findings import SUMMARY_MAX, CancelOrder, ChangeDose, Finding, OrderTest
from .knowledge_base import load, normalise_diplotype

GENES = ("TPMT", "NUDT15")

# How bad a phenotype is for thiopurine exposure (higher = more dangerous).
RANK = {
    "Poor Metabolizer": 4,
    "Intermediate Metabolizer": 3,
    "Possible Intermediate Metabolizer": 3,
    "Indeterminate": 2,
    "Normal Metabolizer": 1,
    # not CPIC TPMT/NUDT15 phenotypes; treated as normal function for dosing
    "Rapid Metabolizer": 1,
    "Ultrarapid Metabolizer": 1,
}
_ALLELE = re.compile(r"^\*\d+[A-Z]?$")


@dataclass
class GeneStatus:
    gene: str
    state: str  # "known" | "missing" | "unreadable" | "unavailable"
    phenotype: str = ""  # CPIC term when known
    evidence: list[str] = field(default_factory=list)  # what the result said, for the card
    problems: list[str] = field(default_factory=list)  # results that could not be read / disagreed
    preliminary: bool = False  # a result this status rests on is preliminary

    @property
    def is_poor(self) -> bool:
        return self.phenotype == "Poor Metabolizer"

    @property
    def is_intermediate(self) -> bool:
        return RANK.get(self.phenotype) == 3

    @property
    def is_indeterminate(self) -> bool:
        return self.phenotype == "Indeterminate"

    def label(self) -> str:
        if self.state == "known":
            return f"{self.gene} {self.phenotype.lower()}"
        return {"missing": f"{self.gene} not tested", "unreadable": f"{self.gene} result unreadable",
                "unavailable": f"{self.gene} status unknown"}[self.state]


def phenotype_of_diplotype(gene: str, text: str) -> tuple[str | None, str]:
    """CPIC phenotype for a star-allele diplotype text, or (None, why).

    Accepts "*1/*3A", "*3A/*1", "TPMT*1/TPMT*3A", and ambiguous calls joined by
    "or" / "," (then the most severe phenotype counts, and the card says so).
    """
    kb = load()
    options = [o.strip() for o in re.split(r"\s+or\s+|,|;|\|", text) if o.strip()]
    if not options:
        return None, "empty genotype"
    phenotypes, notes = [], []
    for option in options:
        cleaned = re.sub(rf"{gene}\s*", "", option, flags=re.IGNORECASE).replace(" ", "")
        parts = cleaned.split("/")
        if len(parts) != 2:
            return None, f"'{text}' is not a diplotype of two star alleles"
        alleles = [p.upper() if p.startswith("*") else "*" + p.upper() for p in parts]
        if not all(_ALLELE.match(a) for a in alleles):
            return None, f"'{text}' is not a star-allele diplotype"
        cpic_2026 = kb["pgx"]["cpic_2026"]
        alleles = [cpic_2026["aliases"].get(gene, {}).get(a, a) for a in alleles]  # NUDT15 *2 -> *3
        phenotype = kb.diplotypes[gene].get(normalise_diplotype(*alleles))
        if phenotype is None:
            new = [a for a in alleles if a in cpic_2026["new_alleles"].get(gene, [])]
            if new:
                return None, (f"{gene} {', '.join(new)} was defined by CPIC in February 2026 and its function is not in "
                              "this service's tables: check CPIC's current allele function table or measure TPMT activity")
            unknown = [a for a in alleles if a not in kb.allele_function[gene]
                       or kb.allele_function[gene][a].startswith("(")]
            what = f"allele {', '.join(unknown)}" if unknown else f"diplotype {cleaned}"
            return None, f"the CPIC {gene} tables do not assign a phenotype to {what}"
        revised = [a for a in alleles if a in cpic_2026["unconfirmed"].get(gene, [])]
        if revised:
            notes.append(f"CPIC revised the clinical function of {gene} {', '.join(dict.fromkeys(revised))} in February "
                         f"2026; the new value could not be confirmed, so the earlier assignment "
                         f"({kb.allele_function[gene].get(revised[0], 'unknown').lower()}) is used: check CPIC's current table")
        phenotypes.append(phenotype)
    worst = max(phenotypes, key=lambda p: RANK.get(p, 0))
    if len(set(phenotypes)) == 1:
        return worst, "; ".join(dict.fromkeys(notes))
    how = ("measure TPMT erythrocyte enzyme activity to resolve it (CPIC)" if gene == "TPMT" else
           "ask the laboratory to resolve the phase (e.g. by sequencing) and monitor blood counts closely")
    return worst, "; ".join([f"ambiguous call '{text}': the most severe reading ({worst.lower()}) counts; {how}",
                             *dict.fromkeys(notes)])


def gene_status(gene: str, results: list[GeneResult], unavailable: bool) -> GeneStatus:
    mine = [r for r in results if r.gene == gene]
    if not mine:
        return GeneStatus(gene, "unavailable" if unavailable else "missing")
    status = GeneStatus(gene, "unreadable")
    phenotypes: list[str] = []
    for r in mine:
        date = f" ({r.when.date().isoformat()})" if r.when else ""
        if r.preliminary:
            status.preliminary = True
            date += " [PRELIMINARY result]"
            status.problems.append(f"{gene} result{date.split(' [')[0]} is PRELIMINARY: confirm with the final report")
        if r.kind == "diplotype":
            phenotype, note = phenotype_of_diplotype(gene, r.value)
            if phenotype is None:
                status.problems.append(f"{gene} genotype '{r.value}'{date}: {note}")
                continue
            status.evidence.append(f"{gene} {r.value} → {phenotype.lower()}{date}" + (f" ({r.note})" if r.note else ""))
            if note:
                status.problems.append(note)
            phenotypes.append(phenotype)
        elif r.kind == "phenotype":
            status.evidence.append(f"{gene} reported as {r.value.lower()}{date}")
            phenotypes.append(r.value)
        else:
            status.problems.append(f"{gene} result '{r.value[:60]}'{date} could not be interpreted")
    if phenotypes:
        status.state = "known"
        status.phenotype = max(phenotypes, key=lambda p: RANK.get(p, 0))
        if len({RANK.get(p) for p in phenotypes}) > 1:
            status.problems.append(f"{gene} results disagree; the most severe ({status.phenotype.lower()}) counts")
    return status


def statuses(facts: ClinicalFacts) -> dict[str, GeneStatus]:
    from .monitoring import tpmt_activity_status

    unavailable = "pgx" in facts.unavailable
    st = {g: gene_status(g, facts.gene_results, unavailable) for g in GENES}
    activity, evidence = tpmt_activity_status(facts)
    _unjudged_activity(st["TPMT"], facts)
    if activity is not None:
        # CPIC: TPMT erythrocyte activity assesses the phenotype (and resolves an indeterminate genotype)
        phenotype = "Normal Metabolizer" if activity == "High" else activity
        tpmt = st["TPMT"]
        tpmt.evidence.append(evidence)
        if tpmt.state != "known" or tpmt.is_indeterminate:
            tpmt.state, tpmt.phenotype = "known", phenotype
        elif RANK.get(phenotype, 0) > RANK.get(tpmt.phenotype, 0):
            tpmt.problems.append(f"TPMT activity suggests {phenotype.lower()}; the most severe reading counts")
            tpmt.phenotype = phenotype
    return st


def _unjudged_activity(tpmt: GeneStatus, facts: ClinicalFacts) -> None:
    """A TPMT activity result that is on record but cannot be judged is named, never "no result on record"."""
    from .tpmt_activity import latest_activity

    r = latest_activity(facts)
    if r is None:
        return
    if r.preliminary:
        tpmt.preliminary = True
        tpmt.problems.append(f"{r.evidence.split(':')[0]} is PRELIMINARY: confirm with the final report")
    if not r.reading:
        tpmt.problems.append(f"{r.evidence} could not be judged: {r.unjudgeable}")
        if tpmt.state in ("missing", "unavailable"):
            tpmt.state = "unreadable"


# ------------------------------------------------------------------ findings

def _test_action(kind: str, reason: str) -> OrderTest:
    t = load()["pgx"]["tests"][kind]
    return OrderTest(loinc=t["loinc"], display=t["display"], label=f"Order {t['display']}", reason=reason)


def _preliminary(summary: str) -> str:
    text = "PRELIMINARY result: " + summary
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _resolve_ambiguity(st: dict[str, GeneStatus]) -> list[OrderTest]:
    """An ambiguous TPMT call ("*1/*3A or *3B/*3C") is resolved by TPMT enzyme activity: offer to order it."""
    if any(p.startswith("ambiguous call") for p in st["TPMT"].problems):
        return [_test_action("tpmt_activity", "resolve the ambiguous TPMT genotype call")]
    return []


def _evidence_lines(st: dict[str, GeneStatus]) -> str:
    lines = []
    for s in st.values():
        lines += [f"- {e}" for e in s.evidence]
        lines += [f"- ⚠ {p}" for p in s.problems]
        if s.state == "missing":
            lines.append(f"- {s.gene}: no result on record")
        elif s.state == "unavailable":
            lines.append(f"- {s.gene}: results could not be retrieved from the EHR")
    return "\n".join(lines)


def pgx_findings(facts: ClinicalFacts, *, weight_max_age_days: int = 90) -> list[Finding]:
    orders = thiopurine_orders(facts)
    if not orders:
        return []
    st = statuses(facts)
    findings: list[Finding] = []
    for order, drug in orders:
        finding = _for_order(facts, order, drug, st, weight_max_age_days)
        if finding is not None:
            if any(s.preliminary for s in st.values()):  # said in the summary too, not only in the detail
                finding.summary = _preliminary(finding.summary)
                finding.dose_summary = finding.dose_summary and "PRELIMINARY result: " + finding.dose_summary
            findings.append(finding)
    return findings


def _for_order(facts, order: MedicationFact, drug: str, st: dict[str, GeneStatus], weight_days: int) -> Finding | None:
    poor = [s for s in st.values() if s.is_poor]
    inter = [s for s in st.values() if s.is_intermediate]
    name = drug_name(drug)
    evidence = _evidence_lines(st)
    spec = load()["pgx"]["drugs"][drug]

    if poor:
        genes = " and ".join(s.gene for s in poor)
        src = spec["poor"]["source"]
        return Finding(
            rule_id="pgx-poor-metabolizer",
            indicator="critical",
            title="TPMT/NUDT15 poor metabolizer",
            summary=f"{name} contraindicated: {genes} poor metabolizer; use a non-thiopurine alternative",
            detail=(
                f"**{genes} poor metabolizer** (no functional enzyme): normal {drug} doses cause severe, "
                "potentially fatal myelosuppression.\n\n"
                f"CPIC (strong recommendation): for nonmalignant conditions, consider an alternative "
                f"non-thiopurine immunosuppressant. If a thiopurine is unavoidable (malignancy), start with a "
                f"drastically reduced dose (10-fold lower, three times weekly) under specialist care. "
                f"The brief: homozygous deficiency is a contraindication.\n\n**Results checked**\n{evidence}"
            ),
            sources=(src, "brief", "fda_azathioprine"),
            actions=([CancelOrder(order.ref, f"Cancel the {drug} order")] if order.ref else []) + _resolve_ambiguity(st),
            order_ref=order.ref,
        )

    gaps = [s for s in st.values() if s.state != "known" or s.is_indeterminate]
    if inter:
        return _reduce_dose(facts, order, drug, st, inter, gaps, weight_days, evidence)
    if gaps:
        return _status_problem(order, drug, st, gaps, evidence)
    return None


def _status_problem(order: MedicationFact, drug: str, st, gaps: list[GeneStatus], evidence: str) -> Finding:
    """No poor or intermediate result, but at least one gene is not known to be normal."""
    name = drug_name(drug)
    actions = []
    states = {s.state for s in gaps}
    if states & {"missing", "unreadable"}:
        genes = " and ".join(s.gene for s in gaps if s.state in ("missing", "unreadable"))
        actions.append(_test_action("genotype", f"{genes} status before {drug}"))
    if st["TPMT"].is_indeterminate:
        actions.append(_test_action("tpmt_activity", "TPMT genotype indeterminate"))

    if "unavailable" in states:
        rule, sources = "pgx-unavailable", ("cpic_2018", "brief")
        summary = f"{name}: TPMT/NUDT15 results could not be retrieved; check them before signing"
        lead = ("The EHR's TPMT/NUDT15 results could not be retrieved for this check, so the dose could "
                "not be checked against them. **Look them up by hand before signing.**")
    elif "unreadable" in states:
        rule, sources = "pgx-uninterpretable", ("cpic_tables", "cpic_2018")
        genes = " and ".join(s.gene for s in gaps if s.state == "unreadable")
        summary = f"{name}: {genes} result could not be interpreted; verify before prescribing"
        lead = (f"The {genes} result on record could not be interpreted against the CPIC tables, so it "
                "is **not** treated as normal. Verify it with the laboratory or retest.")
    elif "missing" in states:
        rule, sources = "pgx-test-missing", ("cpic_2018", "brief", "fda_azathioprine")
        genes = " and ".join(s.gene for s in gaps if s.state == "missing")
        summary = f"{name}: no {genes} result on record; test before starting"
        lead = (f"No {genes} result was found. TPMT and NUDT15 testing is required before a thiopurine "
                "(the brief; the FDA label advises testing): poor metabolizers risk life-threatening "
                "myelosuppression at standard doses. Order the test; if treatment cannot wait, start low "
                "and monitor the CBC weekly.")
    elif st["TPMT"].is_indeterminate:
        rule, sources = "pgx-indeterminate", ("cpic_2020_indeterminate",)
        summary = f"{name}: TPMT indeterminate; measure TPMT enzyme activity before dosing"
        lead = ("TPMT genotype is **indeterminate** (uncertain-function alleles). CPIC: consider TPMT "
                "erythrocyte activity to assess the phenotype; dose by NUDT15 meanwhile.")
    else:  # NUDT15 indeterminate, TPMT normal
        rule, sources = "pgx-indeterminate", ("cpic_2020_indeterminate",)
        summary = f"{name}: NUDT15 indeterminate; dose by TPMT and monitor blood counts closely"
        lead = ("NUDT15 genotype is **indeterminate**. CPIC: dose by the TPMT result; if a thiopurine is "
                "needed while NUDT15 status is unknown, monitor closely for myelosuppression.")
    return Finding(
        rule_id=rule,
        indicator="warning",
        title="TPMT/NUDT15 status",
        summary=summary,
        detail=f"{lead}\n\n**Results checked**\n{evidence}",
        sources=sources,
        actions=actions,
        order_ref=order.ref,
    )


def _reduce_dose(facts, order, drug, st, inter, gaps, weight_days, evidence) -> Finding:
    kb = load()
    spec = kb["pgx"]["drugs"][drug]
    both = len(inter) == 2
    band = spec["both_im" if both else "one_im"]
    low_f, high_f = band["low"], band["high"]
    sources = [band["source"]]
    cap = spec.get("cap")
    if cap and cap["high"] < high_f:
        high_f = cap["high"]
        sources.append(cap["source"])
    step = float(kb["pgx"]["rounding"][f"{drug}_step_mg"])
    name = drug_name(drug)
    genes = " and ".join(s.gene for s in inter)
    who = f"{genes} intermediate metabolizer"

    weight = usable_weight(facts, weight_days)
    per_kg = spec.get("standard_mg_per_kg_day")
    if weight is not None and per_kg:
        reference = per_kg * weight.value
        basis = (f"normal dose {fmt_mgkg(per_kg)} mg/kg/day × {fmt_mg(weight.value)} kg = {fmt_mg(reference)} mg/day "
                 f"(weight of {weight.when.date().isoformat()})")
        sources.append(spec["standard_source"])
    else:
        reference = order.daily_dose.mg if order.daily_dose else None
        basis = ("the ordered dose (no body weight from the last "
                 f"{weight_days} days, so mg/kg could not be used)")
    notes = []
    for s in gaps:
        if s is not None and s not in inter:
            notes.append(f"{s.label()}: also test/monitor (see results below).")

    pct = f"{low_f * 100:.0f}-{high_f * 100:.0f} %"
    header = (f"**{who}**: reduced thiopurine inactivation; standard doses raise the risk of myelosuppression. "
              f"Recommended: {pct} of the normal dose, then titrate on blood counts; allow 2-4 weeks to "
              f"steady state after each change.")
    actions = []
    actions += _resolve_ambiguity(st)
    gap_tests = [s for s in gaps if s.state in ("missing", "unreadable")]
    if gap_tests:
        actions.append(_test_action("genotype", "complete TPMT/NUDT15 status"))

    if reference is None or order.daily_dose is None:
        why = order.dose_problem or "the dose could not be read"
        return Finding(
            rule_id="pgx-reduce-dose",
            indicator="warning",
            title="TPMT/NUDT15 intermediate metabolizer",
            summary=f"{name}: {who}; give {pct} of the normal dose (ordered dose unreadable)",
            detail=(f"{header}\n\nThe ordered dose could not be checked: {why}. Check it by hand.\n\n"
                    + "".join(f"{n}\n\n" for n in notes) + f"**Results checked**\n{evidence}"),
            sources=tuple(dict.fromkeys(sources)),
            actions=actions,
            order_ref=order.ref,
        )

    ordered = order.daily_dose.mg
    target_low, target_high = reference * low_f, reference * high_f
    per_kg_text = ""
    if weight is not None:
        per_kg_text = f" = {fmt_mgkg(ordered / weight.value)} mg/kg/day"
    if ordered <= target_high + 1e-6:
        return Finding(
            rule_id="pgx-dose-in-reduced-range",
            indicator="info",
            title="TPMT/NUDT15 intermediate metabolizer",
            summary=f"{name} {fmt_mg(ordered)} mg/day{per_kg_text}: {who}; dose within reduced range, monitor CBC",
            detail=(f"{header}\n\nThe ordered {fmt_mg(ordered)} mg/day is within the reduced range "
                    f"({fmt_mg(target_low)}-{fmt_mg(target_high)} mg/day, from {basis}); no reduction needed. "
                    "Monitor blood counts closely.\n\n" + "".join(f"{n}\n\n" for n in notes)
                    + f"**Results checked**\n{evidence}"),
            sources=tuple(dict.fromkeys(sources)),
            actions=actions,
            order_ref=order.ref,
        )
    suggested = round_down(target_high, step)
    range_text = (f"{fmt_mg(suggested)} mg/day (range {target_low:.0f}-{target_high:.0f})"
                  if suggested >= step else f"under {fmt_mg(step)} mg/day")
    if suggested >= step and order.ref:
        actions.insert(0, ChangeDose(order.ref, suggested, f"Change to {drug} {fmt_mg(suggested)} mg once daily",
                                     cap_mg=target_high, drug=drug, step_mg=step))
    detail = (f"{header}\n\nOrdered: {fmt_mg(ordered)} mg/day{per_kg_text}. Reduced range: "
              f"{fmt_mg(target_low)}-{fmt_mg(target_high)} mg/day, from {basis}. "
              + (f"Suggested: {fmt_mg(suggested)} mg/day (rounded down to whole {fmt_mg(step)} mg steps)."
                 if suggested >= step else
                 f"The reduced dose is below the smallest practical step ({fmt_mg(step)} mg); seek specialist advice.")
              + "\n\n" + "".join(f"{n}\n\n" for n in notes) + f"**Results checked**\n{evidence}")
    return Finding(
        rule_id="pgx-reduce-dose",
        indicator="warning",
        title="TPMT/NUDT15 intermediate metabolizer",
        summary=f"{name} {fmt_mg(ordered)} mg/day{per_kg_text}; {who}: reduce to {range_text}",
        dose_summary=f"{name} {fmt_mg(ordered)} mg/day{per_kg_text}; {who}: reduce to {{dose}}",
        detail=detail,
        sources=tuple(dict.fromkeys(sources)),
        actions=actions,
        order_ref=order.ref,
    )
