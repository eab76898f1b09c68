"""The patient's thiopurine picture for the SMART app: what the rules read from the facts of one
call (gene states, dose per kg against the indication's range, the monitoring thresholds, the
interacting medicines, when tests fall due), as plain values. The same facts and the same
knowledge the cards use; nothing here decides anything the rules do not.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fhir_mappers.facts import ClinicalFacts, Measurement, MedicationFact

from . import pgx
from .common import drug_spec, thiopurine_of, usable_weight
from .context import CallContext
from .evaluate import without_replaced
from .interactions import interacting_ingredients, medications
from .knowledge_base import load
from .monitoring import cbc_state, monitoring_windows
from .plausibility import dated_after, future_dated

# analyte -> (section of monitoring.toml, key, "below"/"above", label): the cut-offs the rules use
_THRESHOLDS = {
    "wbc": [("cytopenia", "wbc_below"), ("severe_cytopenia", "wbc_below")],
    "neutrophils": [("cytopenia", "neutrophils_below"), ("severe_cytopenia", "neutrophils_below")],
    "lymphocytes": [("cytopenia", "lymphocytes_below")],
    "platelets": [("cytopenia", "platelets_below"), ("severe_cytopenia", "platelets_below")],
    "hemoglobin": [("severe_cytopenia", "hemoglobin_below")],
    "mcv": [("cytopenia", "mcv_above")],
    "alt": [("liver", "alt_ast_above")],
    "ast": [("liver", "alt_ast_above")],
    "tgn": [("metabolites", "tgn_below"), ("metabolites", "tgn_above")],
    "mmp": [("metabolites", "mmp_above")],
}
CHARTED = ("wbc", "neutrophils", "lymphocytes", "platelets", "hemoglobin", "mcv", "alt", "ast", "tgn", "mmp")
_LIVER = ("alt", "ast")


def _when(d: date | datetime | None) -> str:
    return d.isoformat() if d else ""


def thresholds(analyte: str) -> list[dict]:
    mon = load().monitoring
    out = []
    for section, key in _THRESHOLDS.get(analyte, []):
        spec = getattr(mon, section)
        out.append({"value": getattr(spec, key), "direction": "below" if key.endswith("_below") else "above",
                    "severity": "severe" if section == "severe_cytopenia" else "action",
                    "source": spec.source})
    return out


def _series(ms: list[Measurement], today: date | None = None) -> list[dict]:
    """The results oldest first. ``today``: each is marked ``after_today`` when its date as sent is after today's
    date (a result the time-zone tolerance keeps as current, rules.plausibility; the cards say "verify" of it)."""
    return [{"value": m.value, "unit": m.unit, "when": _when(m.when), "comparator": m.comparator,
             "preliminary": m.preliminary, "source_ref": m.source_ref,
             **({"after_today": True} if today is not None and m.when is not None and m.when.date() > today else {})}
            for m in reversed(ms)]  # oldest first


def _set_aside(ms: list[Measurement], today: date) -> list[dict]:
    """Round-19: the results dated after today that ``future_dated`` sets aside (the cards never read them as current;
    a concern they show is raised and marked, rules.future), oldest first, each marked ``after_today``: the app lists
    them apart from the chart of current values, never as one of them."""
    aside = [m for m in ms if dated_after(m.when, today)]
    return [{**x, "after_today": True} for x in _series(aside)]


def _weight_at(facts: ClinicalFacts, day: date | None) -> Measurement | None:
    """The weight recorded nearest before ``day`` (else the newest): for the mg/kg of past orders."""
    if day is not None:
        for w in facts.weights:  # newest first
            if w.when is not None and w.when.date() <= day:
                return w
    return facts.weights[0] if facts.weights else None


def _dose(order: MedicationFact, drug: str, facts: ClinicalFacts, ctx: CallContext, weight_days: int) -> dict:
    ind, how = ctx.indication(order)
    spec = load().dosing.indications[ind]
    current = order.is_draft or order.status == "active"
    weight = usable_weight(facts, weight_days) if current else _weight_at(facts, order.authored_on)
    mg = order.daily_dose.mg if order.daily_dose else None
    return {"ref": order.ref, "display": order.display, "drug": drug, "status": order.status,
            "draft": order.is_draft, "date": _when(order.authored_on), "ended": _when(order.ended_on),
            "mg_per_day": mg, "dose_text": order.daily_dose.text if order.daily_dose else "",
            "dose_problem": order.dose_problem,
            "weight_kg": weight.value if weight else None, "weight_date": _when(weight.when) if weight else "",
            "mg_per_kg_day": round(mg / weight.value, 2) if mg and weight else None,
            "indication": spec.name or ind, "indication_how": how,
            "max_mg_per_kg_day": spec.max_mg_per_kg, "range_text": spec.range_text,
            "range_source": spec.source}


def _meaning(status: pgx.GeneStatus, drug: str | None, guideline: str) -> dict:
    """The guideline's starting-dose advice for this gene state and the thiopurine ordered, as values
    from pgx.toml (the same entries the dose rules use): a band of the normal dose, or what to do."""
    if status.state != "known" or not drug:
        return {}
    spec = drug_spec(drug, guideline)
    if status.is_poor:
        poor = spec.poor
        if poor is None:
            return {"drug": drug, "action": "", "fraction": None, "malignant_fraction": None, "source": ""}
        return {"drug": drug, "action": poor.action, "fraction": poor.fraction,
                "malignant_fraction": poor.malignant_fraction, "source": poor.source}
    if status.is_intermediate:
        band = getattr(spec, f"{status.gene.lower()}_im", None) or spec.one_im
        if band is None:
            return {"drug": drug, "action": "reduce", "low": None, "high": None, "source": ""}
        return {"drug": drug, "action": "reduce", "low": band.low, "high": band.high, "source": band.source}
    if status.phenotype == "Normal Metabolizer":
        return {"drug": drug, "action": "normal", "source": guideline_profile_source(guideline)}
    return {}


def guideline_profile_source(guideline: str) -> str:
    return load().pgx.profiles[guideline].source


def _genes(facts: ClinicalFacts, ctx: CallContext, guideline: str) -> list[dict]:
    st = pgx.statuses(facts, ctx)
    drug = next((d for _, d in ctx.thiopurine_orders), None) or next(
        (d for m in facts.active_medications if (d := thiopurine_of(m))), None)
    out = []
    for gene, status in st.items():
        results = [{"kind": r.kind, "value": r.value, "when": _when(r.when), "note": r.note,
                    "preliminary": r.preliminary, "source_ref": r.source_ref}
                   for r in facts.gene_results if r.gene == gene]
        for e in status.evidence:
            if e.get("kind") == "activity":
                results.append({"kind": "activity", "value": str(e.get("activity", "")), "when": "", "note": "",
                                "preliminary": False, "source_ref": ""})
        out.append({"gene": gene, "state": status.state, "phenotype": status.phenotype,
                    "guideline": guideline.upper(), "results": results, "problems": status.problems,
                    "meaning": _meaning(status, drug, guideline),
                    "preliminary": status.preliminary})
    return out


def _due(facts: ClinicalFacts, analytes: tuple[str, ...], window: int, last: date | None = None) -> dict:
    """When the tests were last done and fall due. ``last``: given (the CBC: the last complete count, round-8 H2,
    ``rules.monitoring.cbc_state``), else the newest result of ``analytes``."""
    if last is None:
        dates = [m.when.date() for a in analytes for m in facts.labs.get(a, [])[:1] if m.when]
        last = max(dates) if dates else None
    return {"last": _when(last), "due": _when(last + timedelta(days=window)) if last else "",
            "window_days": window, "overdue": bool(last and last + timedelta(days=window) < facts.today)}


def _complete_cbc(facts: ClinicalFacts) -> date | None:
    """The date of the last complete blood count (a white cell or neutrophil count and a platelet count), as the
    CBC-due card reads it; None when there is none."""
    last = cbc_state(facts)[0]
    return date.fromisoformat(last) if last else None


def picture(facts: ClinicalFacts, *, guideline: str = "cpic", weight_max_age_days: int = 90) -> dict[str, Any]:
    sent = facts
    facts = future_dated(facts)  # round-14 H2: as the cards: a result dated after today is not charted as current
    today = facts.today
    ctx = CallContext(facts)
    meds = medications(facts)
    doses = [_dose(m, drug, facts, ctx, weight_max_age_days) for m, drug in meds.thiopurines]
    doses += [_dose(m, drug, facts, ctx, weight_max_age_days)
              for m in facts.past_medications if (drug := thiopurine_of(m))]
    doses.sort(key=lambda d: d["date"] or "9999")
    interacting = interacting_ingredients()
    others = [{"ref": m.ref, "display": m.display, "status": m.status, "draft": m.is_draft,
               "ingredients": sorted(m.ingredients & interacting)}
              for m in meds.all if m.ingredients & interacting and not thiopurine_of(m)]
    cbc = load().monitoring.cbc
    # the windows the CBC-due card uses, on the orders as the rules read them (round-19: a draft renewing an order
    # stopped before it is a restart, rules.evaluate.without_replaced)
    cbc_window, lft_window, phase = monitoring_windows(without_replaced(facts))
    return {
        "today": facts.today.isoformat(),
        "guideline": guideline.upper(),
        "patient": {"birth_date": _when(facts.patient.birth_date), "sex": facts.patient.sex} if facts.patient else None,
        "genes": _genes(facts, ctx, guideline),
        "doses": doses,
        "weights": _series(facts.weights, today),
        # round-19: results dated after today (set aside by the rules) are shown apart (``after_today``), never charted
        "weights_after_today": _set_aside(sent.weights, today),
        "labs": {a: {"series": _series(facts.labs.get(a, []), today), "thresholds": thresholds(a),
                     "after_today": _set_aside(sent.labs.get(a, []), today)} for a in CHARTED},
        "interacting": others,
        "monitoring": {"cbc": _due(facts, (), cbc_window, _complete_cbc(facts)), "liver": _due(facts, _LIVER, lft_window),
                       "phase": phase, "sources": list(cbc.sources)},
        "conditions": [c.display for c in facts.conditions],
        "gaps": [{"what": g.what, "why": g.why} for g in facts.gaps],
    }
