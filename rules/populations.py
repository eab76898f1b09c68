"""Special populations: hypersensitivity, pregnancy, breastfeeding, renal impairment, the elderly."""
from __future__ import annotations

from fhir_mappers.facts import ClinicalFacts

from .common import drug_name, thiopurine_orders
from .dose import _matches
from .findings import CancelOrder, Finding
from .knowledge_base import load
from .monitoring import latest

LOINC = "http://loinc.org"


def _age(facts: ClinicalFacts) -> int | None:
    if facts.patient is None or facts.patient.birth_date is None:
        return None
    b, t = facts.patient.birth_date, facts.today
    return t.year - b.year - ((t.month, t.day) < (b.month, b.day))


def _condition(facts: ClinicalFacts, snomed: list[str], icd10: list[str]) -> str | None:
    spec = {"snomed": snomed, "icd10": icd10}
    for c in facts.conditions:
        if _matches(spec, c.codes):
            return c.display or "a recorded condition"
    return None


def _status(facts: ClinicalFacts, loinc: str):
    return next((o for o in facts.status_observations if o.loinc == loinc), None)


def is_pregnant(facts: ClinicalFacts) -> str | None:
    spec = load()["populations"]["pregnancy"]
    obs = _status(facts, spec["pregnancy_status_loinc"])
    if obs is not None:
        pregnant = any(k.split("|")[1] in spec["pregnant_snomed"] for k in obs.values) or obs.text.strip() == "pregnant"
        if pregnant:
            return (f"pregnancy status: pregnant ({obs.when.date().isoformat() if obs.when else 'undated'}"
                    f"{', PRELIMINARY' if obs.preliminary else ''})")
        return None  # the newest status says not pregnant / unknown
    cond = _condition(facts, spec["condition_snomed"], spec["condition_icd10"])
    return f"active condition: {cond}" if cond else None


def is_breastfeeding(facts: ClinicalFacts) -> str | None:
    spec = load()["populations"]["breastfeeding"]
    obs = _status(facts, spec["status_loinc"])
    if obs is not None:
        yes = obs.flag is True or obs.text.strip() in ("yes", "breastfeeding", "breast feeding") or \
            any(k.endswith("|LA33-6") or k.endswith("|373066001") for k in obs.values)
        return f"breastfeeding status: yes ({obs.when.date().isoformat() if obs.when else 'undated'})" if yes else None
    cond = _condition(facts, spec["condition_snomed"], spec["condition_icd10"])
    return f"active condition: {cond}" if cond else None


def population_findings(facts: ClinicalFacts) -> list[Finding]:
    orders = thiopurine_orders(facts)
    if not orders:
        return []
    kb = load()["populations"]
    order, drug = orders[0]
    name = drug_name(drug)
    out: list[Finding] = []

    hs = kb["hypersensitivity"]
    for allergy in facts.allergies:
        hit = allergy.ingredients & set(hs["ingredients"])
        if hit:
            out.append(Finding(
                rule_id="hypersensitivity", indicator=hs["indicator"], title="Thiopurine hypersensitivity",
                summary=f"{name} contraindicated: recorded allergy/intolerance to {', '.join(sorted(hit))}",
                detail=(f"The record lists an allergy or intolerance to {', '.join(sorted(hit))} ({allergy.display or 'no detail'}). "
                        "Hypersensitivity to azathioprine or mercaptopurine is a contraindication (FDA label); "
                        "reactions can recur and be severe. Do not re-challenge without specialist advice."),
                sources=tuple(dict.fromkeys([hs["source"], *hs["sources"]])),
                actions=[CancelOrder(o.ref, f"Cancel the {d} order") for o, d in orders if o.ref][:1],
                order_ref=order.ref))
            break

    why = is_pregnant(facts)
    if why:
        spec = kb["pregnancy"]
        out.append(Finding(
            rule_id="pregnancy", indicator=spec["indicator"], title="Pregnancy", priority=10,
            summary=f"Pregnant patient: {drug} may be continued when benefit outweighs risk; counsel",
            detail=(f"Pregnancy recorded ({why}). Azathioprine may be continued in pregnancy when the benefit "
                    "outweighs the risk (the brief; ACR 2020 reproductive health guideline: compatible with "
                    "pregnancy); do not start mycophenolate or methotrexate instead. Counsel the patient; monitor "
                    "blood counts."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])), order_ref=order.ref))

    why = is_breastfeeding(facts)
    if why:
        spec = kb["breastfeeding"]
        out.append(Finding(
            rule_id="breastfeeding", indicator=spec["indicator"], title="Breastfeeding",
            summary=f"Breastfeeding: the {drug} label and the brief advise against; ACR 2020 considers it compatible",
            detail=(f"Breastfeeding recorded ({why}). The FDA label advises deciding between nursing and the drug "
                    "(metabolites pass into milk) and the brief lists breastfeeding as a contraindication; newer "
                    "rheumatology guidance (ACR 2020) considers azathioprine compatible with breastfeeding. "
                    "Discuss with the patient and document the decision."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])), order_ref=order.ref))

    spec = kb["renal"]
    egfr = latest(facts, "egfr", load()["monitoring"]["cbc"]["result_max_age_days"])
    aki = _condition(facts, spec["aki_snomed"], spec["aki_icd10"])
    if (egfr is not None and egfr.value < spec["egfr_below"]) or aki:
        what = f"eGFR {egfr.value:g} mL/min/1.73m² ({egfr.when.date().isoformat()})" if egfr is not None and egfr.value < spec["egfr_below"] else f"{aki}"
        out.append(Finding(
            rule_id="renal-impairment", indicator=spec["indicator"], title="Renal impairment",
            summary=f"{name} with renal impairment ({what[:50]}): use lower doses, monitor CBC",
            detail=(f"{what}. Patients with renal impairment, particularly oliguric patients, may have delayed "
                    "clearance of azathioprine metabolites: give lower doses and monitor blood counts (FDA label; "
                    "the brief)."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])), order_ref=order.ref))

    spec = kb["elderly"]
    age = _age(facts)
    if age is not None and age >= spec["age_at_least"]:
        out.append(Finding(
            rule_id="elderly", indicator=spec["indicator"], title="Older patient", priority=45,
            summary=f"Patient aged {age}: start {drug} at the low end of the range; more adverse effects",
            detail=(f"Age {age}. Older patients have more adverse effects from thiopurines (decreased renal, hepatic "
                    "and marrow reserve): start at the low end of the dose range and monitor closely (FDA label; "
                    "the brief)."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])), order_ref=order.ref))
    return out
