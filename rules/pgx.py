"""TPMT and NUDT15 pharmacogenomics for thiopurine orders (CPIC by default, or DPWG 2025).

Stages, as in PharmCAT: result → phenotype per gene (``gene_status``), the two
genes → a category, category + dose → findings (``pgx_findings``). A result this
module cannot read is reported, never taken as normal. Findings carry values
(phenotypes, evidence records, the reduced range); the catalogue words them.
"""
from __future__ import annotations

import msgspec

import re
from datetime import timedelta
from typing import Any, Literal

from fhir_mappers.facts import ClinicalFacts, Gene, GeneResult, MedicationFact

from .common import (below, dose_not_tolerated, drug_spec, is_new_start, lab_flag, short_ref, taken_orders, therapy_unknown,
                     thiopurine_of)
from .context import CallContext, context_of
from .dose import range_spec
from .findings import Action, CancelOrder, DoseLimit, Finding, OrderTest
from .knowledge_base import load
from .knowledge_schema import Band, Oncology, PgxDrug
from .monitoring import latest, tpmt_activity_status
from .plausibility import FUTURE_NOTE

GENES: tuple[Gene, ...] = ("TPMT", "NUDT15")
GeneState = Literal["known", "missing", "unreadable", "unavailable"]  # what is known of a gene (GeneStatus)

# How bad a phenotype is for thiopurine exposure (higher = more dangerous).
RANK = {
    "Poor Metabolizer": 4,
    "Intermediate Metabolizer": 3,
    "Possible Intermediate Metabolizer": 3,
    "Indeterminate": 2,
    "Normal Metabolizer": 1,
    # round-20 M3: "Rapid" and "Ultrarapid" are not CPIC TPMT/NUDT15 phenotypes (CPIC 2018: normal, intermediate,
    # possible intermediate, poor, indeterminate): such a result is unreadable (``_phenotype_reading``), never normal
}
_ALLELE = re.compile(r"^\*\d+[A-Z]?$")
_OPTIONS = re.compile(r"\s+or\s+|,|;|\|")  # ambiguous calls: "*1/*3A or *3B/*3C"
_GENE_PREFIX: dict[str, re.Pattern[str]] = {g: re.compile(rf"{g}\s*", flags=re.IGNORECASE) for g in GENES}  # "TPMT*1/TPMT*3A"


class GeneStatus(msgspec.Struct):
    gene: Gene
    state: GeneState
    phenotype: str = ""  # CPIC term when known
    evidence: list[dict] = msgspec.field(default_factory=list)  # what the results said (values for the card)
    problems: list[dict] = msgspec.field(default_factory=list)  # results that could not be read / disagreed
    preliminary: bool = False  # a result this status rests on is preliminary (every card on it says so)
    # TPMT poor only because an activity below an unknown assay's range could not be placed (intermediate or poor;
    # round-4 H7): the card says "possible deficiency" and asks for the genotype
    possible: bool = False

    @property
    def is_poor(self) -> bool:
        return self.phenotype == "Poor Metabolizer"

    @property
    def is_intermediate(self) -> bool:
        return RANK.get(self.phenotype) == 3

    @property
    def is_indeterminate(self) -> bool:
        return self.phenotype == "Indeterminate"

    def values(self) -> dict:
        return {"gene": self.gene, "state": self.state, "phenotype": self.phenotype,
                "evidence": self.evidence, "problems": self.problems, "preliminary": self.preliminary}


def phenotype_of_diplotype(gene: str, text: str) -> tuple[str | None, list[dict]]:
    """CPIC phenotype for a star-allele diplotype text and the problems (notes) of reading it,
    or (None, [problem]).

    Accepts "*1/*3A", "*3A/*1", "TPMT*1/TPMT*3A", and ambiguous calls joined by
    "or" / "," (then the most severe phenotype counts, and a problem says how to resolve it).
    CPIC's February 2026 changes (pgx.toml [cpic_2026]): NUDT15 *2 is read as *3; an allele
    defined then is named (not in the tables); an allele whose revised function could not be
    confirmed keeps its earlier assignment and a problem says so.
    A problem is a dict with a ``code`` the catalogue words.
    """
    kb = load()
    cpic_2026 = kb.pgx.cpic_2026
    options = [o.strip() for o in _OPTIONS.split(text) if o.strip()]
    if not options:
        return None, [{"code": "empty", "gene": gene, "text": text}]
    phenotypes, notes = [], []
    for option in options:
        prefix = _GENE_PREFIX.get(gene) or re.compile(rf"{gene}\s*", flags=re.IGNORECASE)
        cleaned = prefix.sub("", option).replace(" ", "")
        parts = cleaned.split("/")
        if len(parts) != 2:
            return None, [{"code": "not_diplotype", "gene": gene, "text": text}]
        alleles = [p.upper() if p.startswith("*") else "*" + p.upper() for p in parts]
        if not all(_ALLELE.match(a) for a in alleles):
            return None, [{"code": "not_star_alleles", "gene": gene, "text": text}]
        alleles = [cpic_2026.aliases.get(gene, {}).get(a, a) for a in alleles]  # NUDT15 *2 -> *3
        alleles = [kb.pgx.sub_alleles.alleles.get(gene, {}).get(a, a) for a in alleles]  # TPMT *1S -> *1 (round-6 M5)
        phenotype = kb.diplotype_pairs[gene].get((alleles[0], alleles[1]))  # = diplotypes[normalise_diplotype(...)]
        if phenotype is None:
            new = [a for a in alleles if a in cpic_2026.new_alleles.get(gene, ())]
            if new:
                return None, [{"code": "new_allele_2026", "gene": gene, "text": text, "alleles": new}]
            unknown = [a for a in alleles if a not in kb.allele_function[gene]
                       or kb.allele_function[gene][a].startswith("(")]
            return None, [{"code": "not_in_tables", "gene": gene, "text": text, "alleles": unknown,
                           "diplotype": cleaned}]
        revised = [a for a in alleles if a in cpic_2026.unconfirmed.get(gene, ())]
        if revised:
            notes.append({"code": "cpic_2026_unconfirmed", "gene": gene, "alleles": list(dict.fromkeys(revised)),
                          "previous": kb.allele_function[gene].get(revised[0], "unknown")})
        phenotypes.append(phenotype)
    worst = max(phenotypes, key=lambda p: RANK.get(p, 0))
    notes = list({repr(n): n for n in notes}.values())
    if len(set(phenotypes)) == 1:
        return worst, notes
    return worst, [{"code": "ambiguous", "gene": gene, "text": text, "phenotype": worst}, *notes]


def _phenotype_reading(r: GeneResult) -> tuple[str | None, dict | None]:
    """Round-20 M3: (the CPIC phenotype a phenotype result counts as, or None; a problem to name, or None).

    A term that is not a CPIC TPMT/NUDT15 phenotype ("Ultrarapid", "Rapid": RANK) is unreadable, quoted as sent.
    A LOINC answer code whose own display / text names another phenotype (``display_value``, fhir_mappers: the
    mis-mapped LA10315-2 "Ultrarapid" displayed "Intermediate metabolizer") counts as the worse CPIC reading of the
    two, named as a conflict; when that worse reading is no worse than normal, the result is unreadable: a code and
    words that disagree never clear a check."""
    readings = [x for x in (r.value, r.display_value) if x]
    cpic = [x for x in readings if x in RANK]
    worst = max(cpic, key=lambda x: RANK[x]) if cpic else None
    said = f"{r.value}" + (f' (LOINC answer code), displayed "{r.display_text}"' if r.display_value else "")
    if r.display_value and worst is not None and RANK[worst] > RANK["Normal Metabolizer"]:
        return worst, {"code": "code_display_conflict", "text": said[:100], "phenotype": worst}
    if worst is None or r.display_value:
        why = ("its code and its own words name different phenotypes" if r.display_value
               else f"'{r.value}' is not a CPIC {r.gene} phenotype")
        return None, {"code": "uninterpretable", "text": said[:100], "note": f"found but not read: {why}"}
    return worst, None


def _date(r) -> str:
    return r.when.date().isoformat() if r.when else ""


def gene_status(gene: Gene, results: list[GeneResult], unavailable: bool) -> GeneStatus:
    mine = [r for r in results if r.gene == gene]
    if not mine:
        return GeneStatus(gene, "unavailable" if unavailable else "missing")
    status = GeneStatus(gene, "unreadable")
    phenotypes: list[str] = []
    for r in mine:
        if r.preliminary:  # used, and every card built on it says so
            status.preliminary = True
            status.problems.append({"code": "preliminary", "gene": gene, "date": _date(r)})
        if r.kind == "diplotype":
            phenotype, problems = phenotype_of_diplotype(gene, r.value)
            if phenotype is None:
                status.problems += [{**q, "date": _date(r)} for q in problems]
                continue
            status.evidence.append({"gene": gene, "kind": "diplotype", "value": r.value, "phenotype": phenotype,
                                    "date": _date(r), "preliminary": r.preliminary, "note": r.note})
            status.problems += problems
            phenotypes.append(phenotype)
        elif r.kind == "phenotype":
            phenotype, problem = _phenotype_reading(r)
            if problem is not None:
                status.problems.append({**problem, "gene": gene, "date": _date(r)})
            if phenotype is None:
                continue
            status.evidence.append({"gene": gene, "kind": "phenotype", "value": r.value, "phenotype": phenotype,
                                    "date": _date(r), "preliminary": r.preliminary, "note": r.note})
            phenotypes.append(phenotype)
        elif r.note == FUTURE_NOTE:
            # round-14 m1: a result dated after today is not used (rules.plausibility.future_dated), but named
            # round-16 M3: what it would read, when it is a diplotype the tables place (a wrong year is the likeliest
            # cause of such a date: the card says what the result set aside says)
            # round-19 H1: a phenotype so dated (a CPIC term: from a LOINC answer code, a phenotype code or words,
            # fhir_mappers) reads as itself, as a genotype reads by the tables: one class whatever its form
            # round-20 M3: a phenotype whose code and words disagree reads its worse CPIC reading (never normal)
            reads = phenotype_of_diplotype(gene, r.value)[0] or _phenotype_reading(r)[0] or ""
            status.problems.append({"code": "future_dated", "gene": gene, "text": r.value[:60], "date": _date(r),
                                    "reads": reads})
        else:
            found = r.note.startswith("found but not read")  # under a code not read (round-5 M2): quoted in full, with why
            status.problems.append({"code": "uninterpretable", "gene": gene, "text": r.value[:100 if found else 60],
                                    "date": _date(r), **({"note": r.note} if found else {})})
    newest_final = _drop_superseded_preliminary(status)
    if newest_final:
        # a preliminary result superseded by a FINAL readable result of the gene (same day or later) gives no
        # phenotype: the final report is the verified one (round-10 M1: a preliminary intermediate result no longer
        # beats the final normal one that replaced it; its evidence line stays, marked PRELIMINARY)
        phenotypes = [str(e["phenotype"]) for e in status.evidence
                      if not (e.get("preliminary") and e.get("date") and e["date"] <= newest_final)]
    if phenotypes:
        status.state = "known"
        status.phenotype = max(phenotypes, key=lambda p: RANK.get(p, 0))
        if len({RANK.get(p) for p in phenotypes}) > 1:
            status.problems.append({"code": "disagree", "gene": gene, "phenotype": status.phenotype})
    return status


def _drop_superseded_preliminary(status: GeneStatus) -> str:
    """A preliminary result of a gene with a FINAL readable result of the same gene dated the same day or later:
    the final result is the verified one (FHIR ObservationStatus), so "confirm with the final report" is not said
    about the older preliminary one (round-9 M5). Its evidence line still says PRELIMINARY. Returns the newest
    final result's date ("" when there is none)."""
    finals = [e["date"] for e in status.evidence if not e.get("preliminary") and e.get("date")]
    if not finals:
        return ""
    newest_final = max(finals)
    status.problems = [p for p in status.problems
                       if not (p["code"] == "preliminary" and p.get("date") and p["date"] <= newest_final)]
    return newest_final


def decided_by_preliminary(s: GeneStatus) -> bool:
    """The gene's status, as a finding uses it, rests on preliminary results only: every result that gives its
    phenotype (the deciding one; a less severe older result does not decide) is preliminary (round-9 M5: a TPMT
    poor metabolizer on a FINAL result is not headed PRELIMINARY because an older normal result, or the other
    gene's result, is preliminary)."""
    if not s.preliminary or s.state != "known":
        return False
    activity_preliminary = any(p["code"] == "activity_preliminary" for p in s.problems)
    rank = RANK.get(s.phenotype)
    deciding = [e for e in s.evidence if RANK.get(str(e.get("phenotype") or "")) == rank] or s.evidence
    return all((e.get("activity") or {}).get("preliminary", activity_preliminary) if e.get("kind") == "activity"
               else e.get("preliminary", False) for e in deciding)


def statuses(facts: ClinicalFacts, ctx: CallContext | None = None) -> dict[Gene, GeneStatus]:
    ctx = context_of(facts, ctx)
    unavailable = "pgx" in facts.unavailable
    st = {g: gene_status(g, facts.gene_results, unavailable) for g in GENES}
    activity, evidence = tpmt_activity_status(facts, ctx)
    _unjudged_activity(st["TPMT"], ctx)
    if activity is not None:
        # CPIC: TPMT erythrocyte activity assesses the phenotype (and resolves an indeterminate genotype)
        phenotype = "Normal Metabolizer" if activity == "High" else activity
        tpmt = st["TPMT"]
        possible = bool(evidence.get("possible"))
        if possible and tpmt.state == "known" and not tpmt.is_indeterminate:
            # intermediate or poor: a TPMT genotype on record places it; below the range is at least intermediate
            phenotype = "Intermediate Metabolizer"
        tpmt.evidence.append({"gene": "TPMT", "kind": "activity", "phenotype": phenotype, "activity": evidence})
        if tpmt.state != "known" or tpmt.is_indeterminate:
            tpmt.state, tpmt.phenotype, tpmt.possible = "known", phenotype, possible
            transfused = next((q for q in evidence.get("reasons") or () if q.get("code") == "after_transfusion"), None)
            if transfused is not None:
                # round-18 H3: an intermediate activity measured soon after a red-cell transfusion decides the
                # phenotype (no genotype): it may hide a poor metabolizer (donor cells only raise it): named
                tpmt.problems.append({"code": "activity_after_transfusion", "gene": "TPMT", "activity": evidence,
                                      "why": transfused})
        elif RANK.get(phenotype, 0) > RANK.get(tpmt.phenotype, 0):
            tpmt.problems.append({"code": "activity_more_severe", "gene": "TPMT", "phenotype": phenotype})
            tpmt.phenotype = phenotype
    return st


def _unjudged_activity(tpmt: GeneStatus, ctx: CallContext) -> None:
    """A TPMT activity result that is on record but cannot be judged is named, never "no result on record"."""
    r = ctx.latest_activity
    if r is None:
        return
    if r.preliminary:
        tpmt.preliminary = True
        tpmt.problems.append({"code": "activity_preliminary", "gene": "TPMT", "activity": r.values()})
    if not r.reading:
        tpmt.problems.append({"code": "activity_unjudgeable", "gene": "TPMT", "activity": r.values(),
                              "why": r.unjudgeable})
        if tpmt.state in ("missing", "unavailable"):
            tpmt.state = "unreadable"


def _resolve_ambiguity(st: dict[Gene, GeneStatus]) -> list[Action]:
    """An ambiguous TPMT call ("*1/*3A or *3B/*3C") is resolved by TPMT enzyme activity: offer to order it."""
    if any(p["code"] == "ambiguous" for p in st["TPMT"].problems):
        return [_test_action("tpmt_activity")]
    return []


# ------------------------------------------------------------------ findings

def _test_action(kind: str) -> OrderTest:
    t = load().pgx.tests[kind]
    return OrderTest(loinc=t.loinc, display=t.display, label=f"order_{kind}", reason=t.reason)


def _genotype_action(gaps: list[GeneStatus], genes: set[str] | None = None) -> OrderTest:
    """The genotype test to order: only the gene that is missing or unreadable when the other is on record
    (``genes``: genes to genotype whatever their state, e.g. TPMT known only from an activity that cannot be placed)."""
    genes = set(genes or ()) | {s.gene for s in gaps if s.state in ("missing", "unreadable", "unavailable")} \
        if genes else {s.gene for s in gaps if s.state in ("missing", "unreadable")}
    if genes == {"TPMT"}:
        return _test_action("genotype_tpmt")
    if genes == {"NUDT15"}:
        return _test_action("genotype_nudt15")
    return _test_action("genotype")


def pgx_findings(facts: ClinicalFacts, *, weight_max_age_days: int = 90, guideline: str = "cpic",
                 ctx: CallContext | None = None) -> list[Finding]:
    ctx = context_of(facts, ctx)
    orders = ctx.thiopurine_orders
    if not orders:
        return []
    st = statuses(facts, ctx)
    findings: list[Finding] = []
    for order, drug in orders:
        finding = _for_order(ctx, order, drug, st, weight_max_age_days, guideline)
        if finding is not None:
            findings.append(finding)
    return findings


# the TPMT/NUDT15 findings an active order another finding doses gets (round-12 H1): those that change its dose or
# stop it, and a result that could not be retrieved or read (a check not done is named, never dropped); not a test
# never done or an indeterminate one (the start's business) nor a note
ACTIVE_ORDER_RULES = frozenset({"pgx-poor-metabolizer", "pgx-reduce-dose", "pgx-dose-in-reduced-range",
                                "pgx-unavailable", "pgx-uninterpretable"})


def active_order_pgx_findings(facts: ClinicalFacts, findings: list[Finding], *, weight_max_age_days: int = 90,
                              guideline: str = "cpic", ctx: CallContext | None = None) -> list[Finding]:
    """Round-12 H1 (one order, one answer, whichever order is the draft): an active thiopurine order that another
    finding doses (allopurinol newly ordered: one-third to one-quarter of the dose taken) gets the same TPMT/NUDT15
    findings that change its dose as it would as the draft, so its one dose plan is built from both (the band and
    the fraction), and a poor metabolizer outside malignancy is told CPIC's alternative, not a reduced dose. Only
    the findings that change the dose or stop the order, or say the results could not be retrieved or read
    (``ACTIVE_ORDER_RULES``): a test never done or a note is the start's business, not this order's. The finding says the order is active (``values["active_order"]``)."""
    ctx = context_of(facts, ctx)
    drafts = {id(o) for o, _ in ctx.thiopurine_orders}
    dosed = {f.order_ref for f in findings if f.dose is not None and f.order_ref}
    # round-13 M2: febuxostat newly ordered beside an active thiopurine gives no dose (the label contraindicates the
    # pair: cancel the febuxostat), but a poor metabolizer's active order is still told CPIC's alternative, and the
    # febuxostat card does not offer "allopurinol with the thiopurine dose reduction" to a poor metabolizer
    contraindicated = {f.order_ref: f for f in findings if f.rule_id == "interaction-xanthine-oxidase" and f.order_ref
                       and f.values.get("contraindicated")}
    continuing = {f.order_ref for f in findings if f.rule_id == "interaction-xanthine-oxidase" and f.order_ref
                  and f.values.get("xoi_continues")}
    orders = [(m, drug) for m in facts.active_medications
              if (m.ref in dosed or m.ref in contraindicated) and id(m) not in drafts and not m.is_draft
              and (drug := thiopurine_of(m))]
    if not orders:
        return []
    st = statuses(facts, ctx)
    out = []
    for order, drug in orders:
        finding = _for_order(ctx, order, drug, st, weight_max_age_days, guideline)
        if finding is not None and order.ref not in dosed and order.ref in contraindicated:
            if finding.rule_id != "pgx-poor-metabolizer":
                continue  # no dose is given for this order here: only the poor metabolizer's alternative is added
            contraindicated[order.ref].values["poor_metabolizer"] = True
            finding.values["active_order"] = "interacts"
            out.append(finding)
            continue
        if finding is not None and finding.rule_id in ACTIVE_ORDER_RULES:
            # round-15 H1: an allopurinol renewal beside it changes nothing (the dose taken is not cut again)
            finding.values["active_order"] = "interacts" if order.ref in continuing else True
            out.append(finding)
    return out


def _band(spec: PgxDrug, inter: list[GeneStatus]) -> Band:
    """both_im; one gene intermediate: that gene's band (tpmt_im, nudt15_im: DPWG thioguanine), else one_im."""
    if len(inter) == 2:
        return _required(spec.both_im, "both_im")
    return getattr(spec, f"{inter[0].gene.lower()}_im") or _required(spec.one_im, "one_im")


def _poor_band(spec: PgxDrug, poor: list[GeneStatus]) -> Band:
    """The poor gene's own band (tpmt_poor, nudt15_poor: DPWG thioguanine), else poor."""
    return getattr(spec, f"{poor[0].gene.lower()}_poor") or _required(spec.poor, "poor")


def _required(band: Band | None, key: str) -> Band:
    if band is None:  # pgx.toml gives every thiopurine these bands (a test reads each drug with each guideline)
        raise KeyError(f"pgx.toml: no {key} band")
    return band


def _for_order(ctx: CallContext, order: MedicationFact, drug: str, st: dict[Gene, GeneStatus], weight_days: int,
               guideline: str) -> Finding | None:
    poor = [s for s in st.values() if s.is_poor]
    inter = [s for s in st.values() if s.is_intermediate]
    spec = drug_spec(drug, guideline)
    base: dict[str, Any] = {"genes": [s.values() for s in st.values()], "ordered": order.daily_dose.mg if order.daily_dose else None,
                            # an order written in mg/m², converted with the body surface area (round-6 m5): how
                            "ordered_as": order.daily_dose.text if order.daily_dose and order.dose_per_m2 else "",
                            # the catalogue flags the summary too: only when the results the finding rests on are
                            # preliminary (round-9 M5); a poor-metabolizer finding rests on the poor gene(s) below
                            "preliminary": any(decided_by_preliminary(s) for s in st.values()),
                            # an ambiguous call read at its most severe: the summary says "possible"
                            "ambiguous": [s.gene for s in st.values() if any(p["code"] == "ambiguous" for p in s.problems)]}
    basis = ctx.size_basis(order, drug, weight_days)
    # round-15 M1 is scoped to allopurinol's fraction (the label's "usual dose" of a new start is its starting dose):
    # CPIC's TPMT/NUDT15 reductions are fractions of the NORMAL dose ("30-80 % of normal dose if normal starting dose
    # is 2-3 mg/kg/day", "10 % of the normal dose"), so the bands here stay of the maintenance basis, for a new start
    # too (of a 1 mg/kg start they would fall below CPIC's own 0.6 mg/kg/day floor); the dose plan still combines them
    # with the start figure (the smaller wins)
    # round-19 H3: therapy taken now that was held, or followed by a low count, is not an established, tolerated dose
    untolerated = dose_not_tolerated(ctx.facts, drug, order) if order.is_draft else None
    basis = _pgx_basis(ctx.facts, order, drug, basis, untolerated)
    malignant = basis["malignancy"]  # ALL or AML treated with this thiopurine (dosing.toml malignancy_drugs)
    base.update(basis=basis, malignant=malignant, guideline=guideline)
    if untolerated is not None:
        base["not_tolerated"] = untolerated
    renewal = renewal_status(ctx.facts, order, drug)
    if renewal is not None:
        base["renewal"] = renewal  # round-19 m9: what the renewal link shows (on hold, stopped, not found)

    if poor:
        band = _poor_band(spec, poor)
        mode = (band.malignant or band.action) if malignant else band.action
        fraction = (band.malignant_fraction if band.malignant_fraction is not None else band.fraction) if malignant \
            else band.fraction
        days = band.malignant_days_per_week if malignant else None
        values = {**base, "poor_genes": [s.gene for s in poor], "mode": mode, "fraction": fraction,
                  "days_per_week": days, "preliminary": any(decided_by_preliminary(s) for s in poor)}
        dose = None
        reference = basis["reference_mg"]
        per_m2 = band.malignant_mg_per_m2 if malignant else None
        if per_m2 and basis["kind"] == "m2" and basis["bsa"]:
            # CPIC 2018 Table 3 (NUDT15 poor metabolizer, malignancy): an absolute starting dose per m2
            values.update(per_m2=per_m2, fraction=per_m2 / basis["standard"])
            high = per_m2 * basis["bsa"]
            values["reduced_mg"] = high
            # a starting figure to titrate on counts (CPIC), not a ceiling: an order within the product's
            # practical tolerance of it (dosing.toml per_m2_start_accept_fraction) already follows it (round-6 M2)
            accept = max(high + _half_step(drug, order),
                         high * float(load().dosing.general.per_m2_start_accept_fraction))
            dose = DoseLimit("pgx-poor-metabolizer", high_mg=high, days_per_week=days, accept_high_mg=accept,
                             daily=not days)
        elif mode in ("reduce", "avoid_or_reduce") and reference and fraction:
            high = reference * fraction  # per dose when the schedule changes too (CPIC: thrice weekly)
            values["reduced_mg"] = high
            if per_m2:
                values["per_m2"] = per_m2  # no body surface area: the fraction of the normal dose stands in
            accept = high + _half_step(drug, order)
            per_m2_accept = band.malignant_accept_mg_per_m2 if malignant else None
            if per_m2_accept and basis["kind"] == "m2" and basis["bsa"]:
                # round-9 M3: CPIC's own example of the regimen (10 mg/m2 three times a week, pgx.toml) follows it
                accept = max(accept, per_m2_accept * basis["bsa"])
                values["accept_per_m2"] = per_m2_accept
            dose = DoseLimit("pgx-poor-metabolizer", high_mg=high, days_per_week=days, accept_high_mg=accept)
        actions: list = []
        if mode in ("avoid", "avoid_or_reduce") and order.ref and order.is_draft:
            actions.append(CancelOrder(order.ref, drug))
        actions += _resolve_ambiguity(st)
        if [s.gene for s in poor] == ["TPMT"] and st["TPMT"].possible:
            # round-4 H7: an activity that cannot be placed (intermediate or poor): genotype before starting
            values["possible_deficiency"] = True
            actions.append(_genotype_action([st["TPMT"], *(s for s in (st["NUDT15"],) if s.state != "known")],
                                            genes={"TPMT"}))
        return Finding("pgx-poor-metabolizer", order.ref, values, actions, dose=dose,
                       stops_order=mode in ("avoid", "avoid_or_reduce"), drug=drug,
                       sources=((band.malignant_source or band.source) if malignant else band.source, spec.label_source,
                                *_basis_sources(basis, drug),
                                *(() if malignant else _malignancy_regimen_sources(poor, guideline))))


    gaps = [s for s in st.values() if s.state != "known" or s.is_indeterminate]
    if _future_poor(st):
        # round-18 H2: a result set aside for its date that reads poor metabolizer raises the critical verify card and
        # withholds the start dose whatever other results of the gene exist (an older normal or intermediate one
        # never outweighs it: raise, never clear); the conflicting current results are named
        return _status_problem(order, drug, st, gaps, base, ctx.facts)
    if future_worse := _future_worse(st):
        # round-19 M5: a result set aside for its date that reads intermediate metabolizer where the gene's current
        # results read better (normal): the worse reading wins until it is verified (raise, never clear): the
        # intermediate-metabolizer band, on a card that says the result is dated after today and conflicts
        return _future_reduce(order, drug, spec, st, future_worse, base, basis, ctx.facts)
    if inter:
        return _reduce_dose(order, drug, spec, st, inter, gaps, base, basis, ctx.facts)
    if gaps:
        return _status_problem(order, drug, st, gaps, base, ctx.facts)
    return _preliminary_normal(order, drug, st, base)


def _malignancy_regimen_sources(poor: list[GeneStatus], guideline: str) -> tuple[str, ...]:
    """Round-19 m1: a nonmalignant poor-metabolizer card names the regimen CPIC gives in malignancy for each poor gene
    (TPMT: one tenth three times a week, within the card's cpic_2018 Tables 2 and 3; NUDT15, Table 3: mercaptopurine
    10 mg/m2/day, daily): the NUDT15 regimen's own source, as pgx.toml gives it for mercaptopurine (the thiopurine of
    leukaemia maintenance)."""
    spec = drug_spec("mercaptopurine", guideline)
    return tuple(dict.fromkeys(band.malignant_source for band in (_poor_band(spec, [s]) for s in poor
                                                                  if s.gene == "NUDT15") if band.malignant_source))


def _basis_sources(basis: dict, drug: str) -> tuple[str, ...]:
    """Round-19 m10: the label's ALL dosage (mercaptopurine 2.1, 1.5-2.5 mg/kg) when the normal dose is its per-kg
    form (no height, ``kind`` "kg_label"): cited where that figure is used, never on every card of the drug."""
    onc = load().dosing.oncology.get(drug)
    return (onc.source,) if basis.get("kind") == "kg_label" and onc is not None else ()


def _preliminary_normal(order: MedicationFact, drug: str, st: dict[Gene, GeneStatus], base: dict) -> Finding | None:
    """Both genes known and normal, and a gene's normal status rests only on preliminary results (no final result
    of that gene clears it): the order's check was cleared by a result that is not final, and no other card says so
    (round-8 m6: TPMT *1/*1 with status preliminary gave no card). One info note per thiopurine order."""
    resting = [s for s in st.values() if _rests_on_preliminary(s)]
    if not resting:
        return None
    results = [{"gene": s.gene, "phenotype": s.phenotype, "evidence": s.evidence} for s in resting]
    return Finding("pgx-preliminary-normal", order.ref, {**base, "preliminary": True, "results": results,
                                                         "preliminary_genes": [s.gene for s in resting]}, drug=drug)


def _rests_on_preliminary(s: GeneStatus) -> bool:
    """The gene's status is known from preliminary results only: every result it rests on is preliminary (a TPMT
    activity counts as preliminary when the latest activity is)."""
    if not s.preliminary or s.state != "known":
        return False
    activity_preliminary = any(p["code"] == "activity_preliminary" for p in s.problems)
    return all((e.get("activity") or {}).get("preliminary", activity_preliminary) if e.get("kind") == "activity"
               else e.get("preliminary", False) for e in s.evidence)


def _future_poor(st: dict[Gene, GeneStatus]) -> list[dict]:
    """The results set aside for their date (rules.plausibility.future_dated) that read poor metabolizer."""
    return [q for s in st.values() for q in s.problems
            if q.get("code") == "future_dated" and q.get("reads") == "Poor Metabolizer"]


def _future_worse(st: dict[Gene, GeneStatus]) -> list[dict]:
    """Round-19 M5: the results set aside for their date that read intermediate metabolizer where the gene is known
    from current results that read better (normal, indeterminate). Round-20 M1: or where the gene has no current
    readable result at all (a set-aside result can raise a concern, never clear one: with nothing current to weigh
    it against, the worse reading is used until verified, as beside an older normal one). A poor reading is
    ``_future_poor``'s."""
    return [q for s in st.values() for q in s.problems
            if q.get("code") == "future_dated" and RANK.get(q.get("reads") or "") == RANK["Intermediate Metabolizer"]
            and (s.state != "known" or RANK.get(s.phenotype, 0) < RANK["Intermediate Metabolizer"])]


def future_mark(results: list[str], dates: list[str], conflicts: list[dict]) -> dict:
    """``values["future_dated"]`` of a finding a result dated after today raised (rules.future; the catalogue's
    [meta] future_prefix and future_line word it): the dates and results as sent and the current results it
    conflicts with (round-19 H1/M5: the card names them; the worse reading is used until verified)."""
    return {"dates": sorted(set(dates)), "results": results, "flags": [], "conflicts": conflicts}


def _future_reduce(order: MedicationFact, drug: str, spec: PgxDrug, st: dict[Gene, GeneStatus], worse: list[dict],
                   base: dict, basis: dict, facts: ClinicalFacts) -> Finding:
    """Round-19 M5: the intermediate-metabolizer finding (``_reduce_dose``) with the genes that a result set aside
    for its date reads intermediate counted as intermediate, marked ``values["future_dated"]`` (its card says the
    result is dated after today, what it reads and the current results it conflicts with: verify) and
    ``future_results`` (the one card about that result: rules.gaps, round-17 m2); a warning at least."""
    genes = {q["gene"] for q in worse}
    # round-20 M1: ``alone``: the gene has no current readable result (the card says so, not "worse than the current")
    raised = {g: msgspec.structs.replace(s, phenotype="Intermediate Metabolizer",
                                         problems=[{**q, "raised": True, **({"alone": True} if s.state != "known"
                                                                             else {})}
                                                   if q in worse else q for q in s.problems])
              if g in genes else s for g, s in st.items()}
    inter = [s for s in raised.values() if s.is_intermediate]
    gaps = [s for s in raised.values() if s.state != "known" or s.is_indeterminate]
    base = {**base, "genes": [s.values() for s in raised.values()]}
    finding = _reduce_dose(order, drug, spec, raised, inter, gaps, base, basis, facts)
    conflicts = current_conflicts(st, worse)
    finding.values["future_results"] = worse
    finding.values["future_dated"] = future_mark(
        [f"{q['gene']} '{q['text']}'" + (f" ({q['reads'].lower()})" if q["reads"].lower() != q["text"].lower() else "")
         for q in worse], [q["date"] for q in worse if q.get("date")], conflicts)
    # a result to verify before acting: never an info note, even when the order already follows the band
    return msgspec.structs.replace(finding, indicator="warning")


def current_conflicts(st: dict[Gene, GeneStatus], future_poor: list[dict]) -> list[dict]:
    """Round-18 H2: the current results of a gene a set-aside poor-metabolizer reading names (the two disagree);
    round-19 M5: those that read better than a set-aside reading (intermediate) of the gene."""
    worst = {q["gene"]: max((RANK.get(x.get("reads") or "", 0) for x in future_poor if x["gene"] == q["gene"]))
             for q in future_poor}
    return [{"gene": e["gene"], "value": e.get("value") if e.get("kind") != "activity"
             else f"activity {(e.get('activity') or {}).get('value', '')} {(e.get('activity') or {}).get('unit', '')}".strip(),
             "date": e.get("date") or (e.get("activity") or {}).get("date", ""), "phenotype": e.get("phenotype")}
            for g, rank in worst.items() for e in st[g].evidence if RANK.get(str(e.get("phenotype") or ""), 0) < rank]


def _status_problem(order: MedicationFact, drug: str, st, gaps: list[GeneStatus], base: dict,
                    facts: ClinicalFacts) -> Finding:
    """No poor or intermediate result, but at least one gene is not known to be normal; or (round-18 H2) a result
    set aside for its date reads poor metabolizer, whatever the current results read."""
    actions: list[Action] = []
    states = {s.state for s in gaps}
    future_poor = _future_poor(st)
    if future_poor and not states & {"missing", "unreadable"}:
        # the gene is known from current results that disagree with the set-aside one: retest (genotype) to settle it
        actions.append(_genotype_action([], genes={q["gene"] for q in future_poor}))
    # round-17 M7: a TPMT activity measured within weeks after a red-cell transfusion (donor cells) is unreliable:
    # genotyping is the test to order, not another activity
    transfused = next((q for q in st["TPMT"].problems if q.get("code") == "activity_unjudgeable"
                       and (q.get("why") or {}).get("code") == "after_transfusion"), None)
    if states & {"missing", "unreadable"}:
        action = _genotype_action(gaps)
        if transfused is not None and action.label == "order_genotype_tpmt":
            action = msgspec.structs.replace(action, label="order_genotype_tpmt_transfused")
        actions.append(action)
    if st["TPMT"].is_indeterminate:
        actions.append(_test_action("tpmt_activity"))
    else:
        actions += _resolve_ambiguity(st)
    if future_poor:
        rule = "pgx-uninterpretable"
    elif "unavailable" in states:
        rule = "pgx-unavailable"
    elif "unreadable" in states:
        rule = "pgx-uninterpretable"
    elif "missing" in states:
        rule = "pgx-test-missing"
    else:
        rule = "pgx-indeterminate"
    values = {**base, "gap_genes": {state: [s.gene for s in gaps if s.state == state]
                                    for state in ("missing", "unreadable", "unavailable")},
              "indeterminate": [s.gene for s in gaps if s.is_indeterminate]}
    future = [q for s in st.values() for q in s.problems if q.get("code") == "future_dated"]
    if transfused is not None:
        values["transfused_activity"] = transfused
    if future:  # round-16 M3: the summary names a result set aside for its date, and what it reads
        # round-18 H2: a poor-metabolizer reading first (the summary names the first)
        values["future_results"] = sorted(future, key=lambda q: q.get("reads") != "Poor Metabolizer")
    if future_poor and (conflicts := current_conflicts(st, future_poor)):
        values["future_conflicts"] = conflicts
    if rule == "pgx-test-missing":  # a test not on record, while TPMT/NUDT15 data was set aside: say so, never "none"
        values["set_aside"] = set_aside_pgx(facts)
        aside = _set_aside_genes(facts)  # the results list says "no usable result" for such a gene, not "none"
        values["genes"] = [{**g, "set_aside": True} if g.get("state") == "missing" and g.get("gene") in aside else g
                           for g in values["genes"]]
    # round-16 M3: a result set aside for its date that reads poor metabolizer is not normal either: the card is critical
    # until it is checked (CPIC: a poor metabolizer outside malignancy considers a non-thiopurine alternative)
    poor_aside = rule == "pgx-uninterpretable" and bool(future_poor)
    if poor_aside and order.ref and order.is_draft:
        # round-17 M1: no start dose beside an unresolved poor-metabolizer reading (``withholds``: the start regimen
        # and dose advice give way, as beside a poor-metabolizer finding); cancelling is an option, not the advice
        actions.append(CancelOrder(order.ref, drug, recommended=False))
    return Finding(rule, order.ref, values, actions, drug=drug, indicator="critical" if poor_aside else None,
                   withholds=poor_aside, sources=_transfusion_sources() if transfused is not None else ())


def _transfusion_sources() -> tuple[str, ...]:
    spec = load().monitoring.tpmt_activity.transfusion
    return (spec.source, *spec.sources[:1]) if spec is not None else ()


# data-incomplete gap kinds that set TPMT/NUDT15 data aside: results dated after today (rules.plausibility), and
# results under the pgx key naming another patient or one that could not be confirmed (fhir_mappers.build)
_PGX_ASIDE_KINDS = frozenset({"future_genotype", "future_tpmt_activity"})
_PATIENT_ASIDE_KINDS = frozenset({"other_patient", "unconfirmed_patient"})


def _set_aside_genes(facts: ClinicalFacts) -> set[str]:
    """The genes whose results may be among those set aside: the one a dated-after-today result names (TPMT for an
    activity), both for data under the pgx key that was not this patient's (never described further)."""
    genes: set[str] = set()
    for g in facts.gaps:
        if g.key == "future_tpmt_activity":
            genes.add("TPMT")
        elif g.key == "future_genotype":
            named = {gene for gene in ("TPMT", "NUDT15") if g.what.startswith(gene)}
            genes |= named or {"TPMT", "NUDT15"}
        elif g.key in _PATIENT_ASIDE_KINDS and g.group == "pgx":
            genes |= {"TPMT", "NUDT15"}
    return genes


def set_aside_pgx(facts: ClinicalFacts) -> list[str]:
    """What TPMT/NUDT15 data was set aside, as the data-incomplete card names it (its gap's ``what``), once each."""
    return list(dict.fromkeys(g.what for g in facts.gaps if g.key in _PGX_ASIDE_KINDS
                              or (g.key in _PATIENT_ASIDE_KINDS and g.group == "pgx")))


def _within_indication_range(order: MedicationFact, drug: str, basis: dict) -> bool:
    """The ordered daily dose is within the indication's maximum on a current weight (dosing.toml; the
    leukaemia per-m² figures are titrated starting doses, so a per-m² order is within); without a current
    weight it cannot be judged: False."""
    if basis["kind"] == "m2":
        return True
    if basis["kind"] != "kg" or not basis["weight"] or order.daily_dose is None:
        return False
    spec = range_spec(drug, basis["indication"])
    if spec is None or isinstance(spec, Oncology):
        return spec is not None
    return order.daily_dose.mg <= spec.max_mg_per_kg * basis["weight"] + 1e-6


def established_dose(facts: ClinicalFacts, order: MedicationFact, drug: str, basis: dict | None = None) -> dict | None:
    """The order as an unchanged renewal of an established, tolerated dose (round-5 M4; pgx.toml
    [established_dose]): every order of the drug taken now (``taken_orders``: active, or the one the draft renews)
    is at the ordered daily dose and dated at least ``min_days_on_dose`` ago, and the latest neutrophils (or white cells) and platelets, recent
    (monitoring.toml ``result_max_age_days``), final and taken at least ``steady_state_days`` after the dose
    began, are within the BSR action limits with no low flag (as are white cells and lymphocytes when sent).
    None otherwise (a new start, a dose change, an undated order, no recent counts, a low count, a dose above the
    indication's range or no current weight, a xanthine oxidase inhibitor on record): the guidelines' starting
    bands then apply. Round-19 H3: None too for therapy on hold or with ANY count since it began (within the results
    window) below the action limits or flagged low (``rules.common.dose_not_tolerated``), not only the latest."""
    spec = load().pgx.established_dose
    kb = load().monitoring
    if order.daily_dose is None or (basis is not None and not _within_indication_range(order, drug, basis)):
        return None  # above the indication's range (dose-above-range) or no current weight: the bands apply
    xo = set(load().interactions.xanthine_oxidase_inhibitors.ingredients)
    if any(xo & set(m.ingredients) for m in (*facts.active_medications, *facts.renewed_medications, *facts.orders)):
        return None  # with a xanthine oxidase inhibitor the combined cut (one order, one dose) keeps the IM band
    ordered = order.daily_dose.mg
    # round-17 H4: the orders taken now include the one the draft renews (priorPrescription / basedOn), the dose and
    # start date are that order's (rules.common.taken_orders: one definition of established therapy)
    same = taken_orders(facts, drug, order)
    if same and dose_not_tolerated(facts, drug, order) is not None:
        return None  # round-19 H3: held, or a low count since it began: not a tolerated dose (the bands apply)
    if not same or any(m.daily_dose is None or abs(m.daily_dose.mg - ordered) > 1e-6 or m.authored_on is None
                       for m in same):
        return None
    since = min(m.authored_on for m in same if m.authored_on is not None)
    if since > facts.today - timedelta(days=spec.min_days_on_dose):
        return None
    counts = []
    for analyte in ("neutrophils", "wbc", "platelets", "lymphocytes"):
        m = latest(facts, analyte, kb.cbc.result_max_age_days)
        if m is None:
            continue
        low_at = getattr(kb.cytopenia, f"{analyte}_below")
        if m.when is None or m.preliminary or below(m, low_at) or lab_flag(m) in ("low", "critical_low", "critical") \
                or m.when.date() < since + timedelta(days=spec.steady_state_days):
            return None
        counts.append({"analyte": analyte, "value": m.value, "unit": m.unit, "date": m.when.date().isoformat()})
    have = {c["analyte"] for c in counts}
    if not ({"neutrophils", "wbc"} & have and "platelets" in have):
        return None
    return {"since": since.isoformat(), "months": (facts.today - since).days // 30,
            "counts_date": max(c["date"] for c in counts), "counts": counts}


def _pgx_basis(facts: ClinicalFacts, order: MedicationFact, drug: str, basis: dict,
               untolerated: dict | None = None) -> dict:
    """The basis CPIC's/DPWG's TPMT/NUDT15 bands are taken of.

    Round-15 M1 (as merged): the maintenance basis (``maintenance_basis``), never the label's starting dose (a band
    of a 1 mg/kg start would fall below CPIC's own 0.6 mg/kg/day floor). Round-16 M1: for a new start where a start
    regimen applies (``start_basis``), the patient's NORMAL dose (the service's normal mg/kg dose x weight,
    ``normal_mg``), never the dose ordered (``from_order``): CPIC 2018 Table 2 reduces "30-80 % of normal dose if
    normal starting dose is 2-3 mg/kg/day", so the band is one figure for the patient whatever was typed (150 mg
    and 200 mg got 75 and 50 mg). The start dose stays the cap on top (``new_start_cap``, round-16 M2): an
    intermediate metabolizer never starts higher than a normal metabolizer on the same order.
    The same for any other new start (inflammatory bowel disease, which starts at its target dose; a transplant):
    the band is of the normal dose, not of the dose ordered inside the usual range (round-16 M1, c11/c12: Crohn's
    disease 150 mg got 75 mg and 200 mg got 50 mg), without a start cap (none applies); round-17 M4: such a start is
    accepted only inside the band it is told (``new_start_band``, ``_reduce_dose``). Established therapy (an
    active order, a renewal, a dose taken before), therapy whose status is unknown and oncology keep the order as
    the usual dose it is (round-8 H4).

    Round-19 H3: a renewal of therapy that is not a tolerated dose (``untolerated``: on hold, or a low count since it
    began; ``rules.common.dose_not_tolerated``) restarts as a new start does: the band of the normal dose, accepted =
    suggested (``new_start_band``), never of the dose typed or taken. Round-19 m8: a renewal that RAISES the dose
    taken has its band of the normal dose too (one basis, whatever was typed: r19-44 and r19-78)."""
    if not basis.get("start_basis"):
        basis = basis.get("maintenance_basis") or basis
        restart = untolerated is not None and basis.get("normal_mg") and not basis.get("malignancy") \
            and not basis.get("oncology")
        if restart:
            return {**basis, "reference_mg": basis["normal_mg"], "from_order": False, "from_established": False,
                    "new_start_band": True}
        raised = order.is_draft and order.daily_dose is not None and order.established_dose is not None \
            and order.established_dose.mg < order.daily_dose.mg - 1e-6 and taken_orders(facts, drug, order)
        if raised and basis.get("normal_mg") and basis.get("from_order") and not basis.get("from_established"):
            basis = {**basis, "reference_mg": basis["normal_mg"], "from_order": False}
        ind = load().dosing.indications.get(basis.get("indication") or "unknown")
        if not basis.get("normal_mg") and basis.get("kind") == "kg" and basis.get("reference_mg") \
                and not basis.get("from_order") and basis.get("indication") != "unknown" \
                and ind is not None and ind.max_mg_per_kg is not None:
            # round-18 M1: a drug whose usual range the indication (one with a cited range, as azathioprine's new
            # start needs) does not give (mercaptopurine in inflammatory bowel disease) has its normal dose from
            # pgx.toml's mg/kg x weight: the same new-start band as azathioprine, not the wider acceptance of
            # established therapy; with no indication known neither drug gets it
            basis = {**basis, "normal_mg": basis["reference_mg"]}
        new_start = not basis.get("from_established") and basis.get("normal_mg") and not basis.get("malignancy") \
            and not basis.get("oncology") and order.established_dose is None and not therapy_unknown(facts, order) \
            and is_new_start(facts, order, drug)
        if new_start:
            # round-17 M4: a new start where no start regimen applies (IBD, a transplant): the band of the normal
            # dose is both the range suggested and the range an order is accepted in (``new_start_band``)
            if basis.get("from_order"):
                return {**basis, "reference_mg": basis["normal_mg"], "from_order": False, "new_start_band": True}
            return {**basis, "new_start_band": True}
        return basis
    maintenance = basis.get("maintenance_basis") or basis
    normal = maintenance.get("normal_mg")
    out = {**maintenance, "new_start_cap": basis.get("start_mg"), "start_mg": basis.get("start_mg"),
           "start_source": basis.get("start_source"), "general_start": basis.get("general_start", False)}
    if normal and maintenance.get("from_order"):
        out.update(reference_mg=normal, from_order=False)
    return out


def _reduce_dose(order, drug, spec, st, inter, gaps, base, basis, facts: ClinicalFacts) -> Finding:
    band = _band(spec, inter)
    transfused = next((q for q in st["TPMT"].problems if q.get("code") == "activity_after_transfusion"), None) \
        if st["TPMT"] in inter else None
    if basis["malignancy"] and band.malignant == "normal_start" and transfused is None:
        # (round-18 H3: not on an intermediate activity measured after a transfusion: it may hide a poor metabolizer)
        # DPWG 2025: TPMT or NUDT15 IM treated for leukaemia: starting with the normal dose can be considered,
        # then the advised dose if toxicity occurs: no reduction now, the advised dose named
        values = {**base, "im_genes": [s.gene for s in inter], "low_f": band.low, "high_f": band.high,
                  "reference": basis["reference_mg"],
                  "advised_mg": basis["reference_mg"] * band.high if basis["reference_mg"] and band.high else None,
                  "other_gaps": [s.values() for s in gaps if s not in inter]}
        return Finding("pgx-im-malignancy-normal-start", order.ref, values, _resolve_ambiguity(st), drug=drug,
                       sources=(band.source, spec.label_source))
    low_f, high_f = band.low, band.high
    assert low_f is not None and high_f is not None, "an intermediate band has low and high (pgx.toml)"
    sources = [band.source, spec.label_source, *_basis_sources(basis, drug)]
    band_low_f, band_high_f = low_f, high_f  # the guideline's own band (the card credits the guideline with it)
    cap = spec.cap
    capped = False
    if cap is not None and cap.malignant == "uncapped" and basis["malignancy"]:
        cap = None  # round-18 M1: mercaptopurine's DPWG 50 % is not a leukaemia cap (DPWG: normal start there)
    if cap is not None and cap.high is not None and cap.high < high_f and len(inter) == 1:
        high_f, capped = cap.high, True  # a more conservative upper limit (knowledge data names its basis)
        sources.append(cap.source)
    values = {**base, "im_genes": [s.gene for s in inter], "low_f": low_f, "high_f": high_f,
              "band_low_f": band_low_f, "band_high_f": band_high_f, "capped": capped,
              # the band rests on a secondary source (thioguanine IM): the card does not credit it to the guideline
              "band_secondary": load().source(band.source).internal,
              "other_gaps": [s.values() for s in gaps if s not in inter]}
    actions = _resolve_ambiguity(st)
    if transfused is not None:
        # round-18 H3: the reduction stays (the minimum precaution); the card names the transfusion, says the true
        # activity may be lower (poor metabolizer) and advises TPMT genotyping (a genotype is not affected)
        values["transfused_activity"] = {"activity": transfused["activity"], "why": transfused["why"]}
        action = _genotype_action(gaps, genes={"TPMT"})
        if action.label == "order_genotype_tpmt":
            action = msgspec.structs.replace(action, label="order_genotype_tpmt_transfused")
        actions.append(action)
        sources += [x for x in _transfusion_sources() if x not in sources]
    elif [s for s in gaps if s.state in ("missing", "unreadable")]:
        actions.append(_genotype_action(gaps))
    reference = basis["reference_mg"]
    if reference is None or order.daily_dose is None:
        # no readable daily dose: the reduced range from the weight still gives the mg figure to aim for
        # why it could not be checked: the order's dose problem as read, else no normal dose for want of a height
        # (the catalogue words dose_problem_code: [meta] macros pgx_dose_problem)
        no_size = not order.dose_problem and basis["kind"] == "no_size"
        values.update(dose_problem=order.dose_problem, dose_problem_code="no_size" if no_size else "",
                      no_weight=no_size and not basis.get("weight"), reference=None, target_reference=reference,
                      target_low=reference * low_f if reference else None,
                      target_high=reference * high_f if reference else None)
        return Finding("pgx-reduce-dose", order.ref, values, actions, drug=drug, sources=tuple(sources))
    if basis["kind"] == "ordered":
        # no usual dose for the indication and size (thioguanine has a per-kg normal dose only in AML, dosing.toml):
        # a band applied to the ordered dose would cut an order already reduced again (issue 17), so no figure
        values.update(reference=None, target_reference=None, target_low=None, target_high=None,
                      dose_problem="", dose_problem_code="no_normal_dose")
        return Finding("pgx-reduce-dose", order.ref, values, actions, drug=drug, sources=tuple(sources))
    ordered = order.daily_dose.mg
    low, high = reference * low_f, reference * high_f
    # an order at or under the band of the normal dose is not cut (not the ordered dose's band when the order is the
    # basis, round-8 H4: the order is then a usual dose, not a reduced one)
    normal = basis.get("normal_mg") or reference
    accept, accept_how = _accept_high(drug, normal, band_low_f, band_high_f, normal * high_f)
    top = basis.get("top_mg")
    if top and top * high_f > accept + 1e-6 and top * high_f < normal - 1e-6:
        # round-8 H4: the service suggests up to high_f of the top of the indication's usual range (a usual dose
        # ordered there); such a suggestion, once followed, is not cut again
        accept, accept_how = top * high_f, "top"
    accept = max(accept, high)
    if basis.get("new_start_band"):
        # round-17 M4: a NEW start where no start regimen applies (IBD, a transplant): CPIC's reduced STARTING dose
        # (30-80 % of the normal dose; this service's more conservative part of it, pgx.toml cap) is one band: an
        # order inside it is accepted, one above it is cut to a dose inside it. The wider acceptance (CPIC's whole
        # band, the top of the usual range) is for established therapy; on a start it made the answer depend on the
        # dose typed (transplant: 175 mg accepted, 200 mg cut to 100 mg). A point figure (DPWG 50 %) keeps its
        # half-tablet tolerance (product policy: the figure rounded to the nearest tablet follows it)
        point, how = _accept_high(drug, normal, band_low_f, band_high_f, high)
        accept, accept_how = (max(point, high), how) if how == "tolerance" else (high, "")
    cap = basis.get("new_start_cap")
    if cap:
        # round-16 M2: a new start where a start regimen applies: the label's starting dose caps the band (the plan
        # takes the smaller), so the order is accepted only up to the smaller of the band's top and the start dose,
        # and an order above it gets the band's figure (never more than the start a normal metabolizer gets)
        if cap < high - 1e-6:
            # round-17 M5: the start dose decides the figure (AASLD 2019: 50 mg/day in autoimmune hepatitis, under
            # the band of a heavier patient's normal dose): the card says so, with the true share of the normal dose
            values["start_capped"] = {"mg": cap, "f": cap / reference, "by": _start_by(basis.get("start_source")),
                                      # round-19 m2: no start of the indication's own (GPA, SLE, unknown): this
                                      # service's general start, from the label's rheumatoid arthritis start
                                      "general": bool(basis.get("general_start")),
                                      "short": "general" if basis.get("general_start") else
                                      _start_by(basis.get("start_source")).removeprefix("the ").removesuffix("'s"),
                                      "indication": load().dosing.indications[basis["indication"]].name,
                                      "below_band": cap < reference * band_low_f - 1e-6}
        high = min(high, cap)
        low = min(low, high)
        if accept > cap + 1e-6:
            # round-20 m2: what accepted the order before the start capped it (the card names it when the order is
            # above the guideline's band of the normal dose: "top", the band of the top of the usual range)
            values["start_over"] = accept_how
            accept, accept_how = max(cap, high), "start"
    values.update(low=low, high=high, reference=reference, accept_high=accept, accept_how=accept_how,
                  accept_f=accept / reference, normal_ref=normal)
    rule = "pgx-dose-in-reduced-range" if ordered <= accept + 1e-6 else "pgx-reduce-dose"
    established = established_dose(facts, order, drug, basis) if rule == "pgx-reduce-dose" else None
    if established is not None:
        # CPIC's and DPWG's bands are starting doses: an unchanged renewal of a dose tolerated at steady state with
        # normal counts is the dose already adjusted to myelosuppression: said, not cut (round-5 M4)
        est = load().pgx.established_dose
        values.update(established=established)
        return Finding("pgx-im-established-dose", order.ref, values, actions, drug=drug,
                       sources=tuple(dict.fromkeys([est.source, *sources, *est.sources])))
    keep = _kept_dose(facts, order, drug, basis) if rule == "pgx-reduce-dose" else None
    if keep is not None:
        # round-18 M4: a renewal that raises a dose taken and tolerated (as pgx-im-established-dose accepts it): the
        # increase is refused, the dose taken is kept (CPIC: the band is a starting dose, then adjusted to
        # myelosuppression), never cut to the starting band below it
        values.update(keep=keep)
        accept = max(accept, keep["mg"])
        values.update(accept_high=accept, accept_f=accept / reference)
    untolerated = values.get("not_tolerated") is not None
    if untolerated and "bsr_2017" not in sources:
        sources.append("bsr_2017")  # round-19 H3: the card cites BSR/BHPR 2017 on a dose held or followed by low counts
    return Finding(rule, order.ref, values, actions, drug=drug, sources=tuple(sources),
                   # round-19 H3: a restart inside the reduced range of a dose held or followed by low counts is still
                   # a warning (never a quiet "within the reduced range" note)
                   indicator="warning" if untolerated and rule == "pgx-dose-in-reduced-range" else None,
                   dose=DoseLimit(rule, high_mg=high, low_mg=low, accept_high_mg=accept, start_band=bool(cap),
                                  keep_mg=keep["mg"] if keep is not None else None))


def _kept_dose(facts: ClinicalFacts, order: MedicationFact, drug: str, basis: dict) -> dict | None:
    """Round-18 M4: the dose a renewal raises, when it is an established, tolerated dose (``established_dose`` of the
    order at the dose taken: every order taken now at that dose, long enough, counts normal): {"mg", "since", ...}.
    None for a new start, a dose lowered or kept, or a dose taken that is not established."""
    taken = order.established_dose
    if order.daily_dose is None or taken is None or not taken_orders(facts, drug, order) \
            or taken.mg >= order.daily_dose.mg - 1e-6:
        return None
    at_taken = msgspec.structs.replace(order, daily_dose=taken)
    established = established_dose(facts, at_taken, drug, basis)
    return None if established is None else {**established, "mg": taken.mg}


def renewal_status(facts: ClinicalFacts, order: MedicationFact, drug: str) -> dict | None:
    """Round-19 m9: what the order a draft renews (priorPrescription / basedOn) shows, for the card to say why the
    renewal is, or is not, dosed as continuing therapy: {"kind": "on_hold", "ref", "reason" (statusReason as sent)},
    {"kind": "stopped", "ref", "ended" (its end date, "" when none is given)} for an ended order of the drug that
    ``rules.evaluate.without_replaced`` did not read as continued (a restart), or {"kind": "not_found", "ref"} when
    no order of that id is in the record sent. None for an order that renews nothing, or continues an order taken
    now (active, completed, stopped by the renewal). Words only: the rules decide with ``taken_orders``."""
    if not order.is_draft or not order.replaces:
        return None

    def short(m: MedicationFact) -> str:
        return short_ref(m.ref)

    renewed = {short(m): m for m in facts.renewed_medications if drug in m.ingredients}
    ended = {short(m): m for m in facts.past_medications if drug in m.ingredients}
    known = {short(m) for m in (*facts.orders, *facts.active_medications, *facts.renewed_medications,
                                *facts.past_medications)}
    for ref in sorted(order.replaces):
        m = renewed.get(ref)
        if m is not None and m.status == "on-hold":
            return {"kind": "on_hold", "ref": ref, "reason": m.status_reason}
    for ref in sorted(order.replaces):
        m = ended.get(ref)
        if m is not None and ref not in renewed and m.status in ("stopped", "completed"):
            undated = m.ended_on is None or m.ended_on == m.authored_on
            return {"kind": "stopped", "ref": ref, "status": m.status,
                    "ended": "" if undated or m.ended_on is None else m.ended_on.isoformat(),
                    "reason": m.status_reason,
                    # round-20 M2: a completed order that ended long before the draft (monitoring.toml)
                    "long_after_days": load().monitoring.cbc.restart_after_days
                    if m.status == "completed" and not undated else None}
    missing = sorted(ref for ref in order.replaces if ref not in known)
    if missing and not renewed:
        return {"kind": "not_found", "ref": missing[0]}
    return None


def _start_by(source: str | None) -> str:
    """Who sets a start dose, as a card names it: "the label's" for an FDA label, else "the " and the source label's
    first word (sources.toml: "AASLD practice guidance: ..." -> "the AASLD")."""
    if not source or source.startswith("fda_"):
        return "the label's"
    return "the " + load().source(source).label.split()[0]


def _half_step(drug: str, order: MedicationFact) -> float:
    """Half the smallest step the order's form can measure (per dose), the same tolerance as for a point figure
    (dosing.toml ``point_dose_tolerance_tablet_steps``, product policy): a poor metabolizer's reduced dose (CPIC:
    one tenth, thrice weekly) written as the figure rounded to the nearest step (5.51 mg -> 0.3 mL = 6 mg of the
    20 mg/mL suspension) follows the advice and is not cut again (review2 M1). Oral suspension where the drug has
    one and the order is not written in tablets; else half a tablet step."""
    dosing = load().dosing
    form = dosing.forms.get(drug)
    tolerance = float(dosing.general.point_dose_tolerance_tablet_steps)
    written = order.daily_dose.form if order.daily_dose is not None else ""
    if form is not None and form.suspension_ml_step is not None and form.suspension_mg_per_ml is not None \
            and written != "tablet":
        return float(form.suspension_ml_step) * float(form.suspension_mg_per_ml) * tolerance
    return float(form.tablet_step_mg if form is not None else 25) * tolerance


def _accept_high(drug: str, reference: float, band_low_f: float, band_high_f: float, target: float) -> tuple[float, str]:
    """The top of the range an order is accepted in (not cut), and how it was set: the guideline's own band
    ("band": CPIC 30-80 %) when the service suggests a more conservative target inside it; for a point figure
    (DPWG 50 %) the figure plus half a tablet step ("tolerance", dosing.toml, product policy)."""
    if band_low_f < band_high_f - 1e-9:
        return max(reference * band_high_f, target), "band"
    dosing = load().dosing
    form = dosing.forms.get(drug)
    step = float(form.tablet_step_mg if form is not None else 25)
    return reference * band_high_f + step * float(dosing.general.point_dose_tolerance_tablet_steps), "tolerance"
