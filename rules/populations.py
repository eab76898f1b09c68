"""Special populations: hypersensitivity, pregnancy, breastfeeding, renal impairment, the elderly."""
from __future__ import annotations

from functools import cache

from fhir_mappers.facts import ClinicalFacts

from .common import CodeMatcher, below
from .context import CallContext, context_of
from .findings import Action, CancelOrder, DoseLimit, Finding
from .knowledge_base import load
from .monitoring import conflicts, latest

RULE_IDS = ("hypersensitivity", "pregnancy", "breastfeeding", "renal-impairment", "elderly")


def _age(facts: ClinicalFacts) -> int | None:
    if facts.patient is None or facts.patient.birth_date is None:
        return None
    b, t = facts.patient.birth_date, facts.today
    return t.year - b.year - ((t.month, t.day) < (b.month, b.day))


@cache
def _matcher(section: str, snomed_key: str, icd10_key: str) -> CodeMatcher:
    """populations.toml's code lists of one condition, read once."""
    spec = load()["populations"][section]
    return CodeMatcher(frozenset(spec[snomed_key]), tuple(spec[icd10_key]))


def _condition(facts: ClinicalFacts, matcher: CodeMatcher) -> str | None:
    for c in facts.conditions:
        if matcher(c.codes):
            return c.display or "?"
    return None


def _status(facts: ClinicalFacts, loinc: str):
    return next((o for o in facts.status_observations if o.loinc == loinc), None)


def _date(obs) -> str:
    return obs.when.date().isoformat() if obs.when else ""


def is_pregnant(facts: ClinicalFacts) -> dict | None:
    spec = load()["populations"]["pregnancy"]
    obs = _status(facts, spec["pregnancy_status_loinc"])
    if obs is not None:
        pregnant = any(k.split("|")[1] in spec["pregnant_snomed"] for k in obs.values) or obs.text.strip() == "pregnant"
        if pregnant:  # a preliminary status is used, and the card says so
            return {"by": "status", "date": _date(obs), "preliminary": obs.preliminary}
        return None  # the newest status says not pregnant / unknown
    cond = _condition(facts, _matcher("pregnancy", "condition_snomed", "condition_icd10"))
    return {"by": "condition", "condition": cond, "preliminary": False} if cond else None


def is_breastfeeding(facts: ClinicalFacts) -> dict | None:
    spec = load()["populations"]["breastfeeding"]
    obs = _status(facts, spec["status_loinc"])
    if obs is not None:
        yes = obs.flag is True or obs.text.strip() in ("yes", "breastfeeding", "breast feeding") or \
            any(k.endswith("|LA33-6") or k.endswith("|373066001") for k in obs.values)
        return {"by": "status", "date": _date(obs), "preliminary": obs.preliminary} if yes else None
    cond = _condition(facts, _matcher("breastfeeding", "condition_snomed", "condition_icd10"))
    return {"by": "condition", "condition": cond, "preliminary": False} if cond else None


def population_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    orders = context_of(facts, ctx).thiopurine_orders
    if not orders:
        return []
    kb = load()["populations"]
    order, drug = orders[0]
    out: list[Finding] = []

    hs = kb["hypersensitivity"]
    for allergy in facts.allergies:
        hit = allergy.ingredients & set(hs["ingredients"])
        if hit:
            cancels: list[Action] = [CancelOrder(o.ref, d) for o, d in orders if o.ref]
            out.append(Finding("hypersensitivity", order.ref, {"allergens": sorted(hit), "display": allergy.display},
                               cancels[:1], stops_order=True, drug=drug))
            break
    why = is_pregnant(facts)
    if why:
        out.append(Finding("pregnancy", order.ref, why, drug=drug))
    why = is_breastfeeding(facts)
    if why:
        out.append(Finding("breastfeeding", order.ref, why, drug=drug))
    spec = kb["renal"]
    egfr = latest(facts, "egfr", load()["monitoring"]["cbc"]["result_max_age_days"])
    aki = _condition(facts, _matcher("renal", "aki_snomed", "aki_icd10"))
    low_egfr = egfr is not None and below(egfr, spec["egfr_below"])
    if low_egfr or aki:
        values: dict = {"egfr": egfr.value if low_egfr and egfr else None,
                        "egfr_comparator": egfr.comparator if low_egfr and egfr else "",  # "<15", never "15"
                        "egfr_no_unit": bool(low_egfr and egfr and not egfr.unit_text),  # read by its LOINC code
                  "date": egfr.when.date().isoformat() if low_egfr and egfr and egfr.when else "",
                  "condition": aki}
        if low_egfr and egfr:
            values["same_time_conflicts"] = conflicts(facts, [egfr])
        out.append(Finding("renal-impairment", order.ref, values, drug=drug,
                           dose=DoseLimit("renal-impairment", qualitative=True)))
    age = _age(facts)
    if age is not None and age >= kb["elderly"]["age_at_least"]:
        out.append(Finding("elderly", order.ref, {"age": age}, drug=drug))
    return out
