"""Dose by indication and body weight, new starts, and the weight itself."""
from __future__ import annotations

from fhir_mappers.facts import ClinicalFacts, ConditionFact, MedicationFact

from .common import drug_name, fmt_mg, fmt_mgkg, recent_weight, round_down, thiopurine_orders, usable_weight
from .findings import ChangeDose, Finding, OrderTest
from .knowledge_base import load

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def _matches(spec: dict, codes: frozenset[str]) -> bool:
    for key in codes:
        system, _, code = key.partition("|")
        if system == SNOMED and code in spec.get("snomed", []):
            return True
        if system.startswith("http://hl7.org/fhir/sid/icd-10") and any(code.upper().startswith(p) for p in spec.get("icd10", [])):
            return True
    return False


def indication(order: MedicationFact, conditions: list[ConditionFact]) -> tuple[str, str]:
    """(indication key, how it was found). The order's reasonCode wins; then
    active Conditions in the knowledge file's order (most specific first)."""
    table = load()["dosing"]["indications"]
    keys = [k for k in table if k != "unknown"]
    for k in keys:
        if _matches(table[k], order.reason_codes):
            return k, "the order's reason"
    for k in keys:
        if any(_matches(table[k], c.codes) for c in conditions):
            return k, "an active condition"
    return "unknown", "no indication on record"


def malignancy(order: MedicationFact, conditions: list[ConditionFact], drug: str) -> tuple[str, str, dict] | None:
    """(key, how found, spec with max_mg_per_kg) when an ALL/AML indication on record covers this drug."""
    for key, spec in load()["dosing"].get("malignancy", {}).items():
        if drug not in spec["drugs"]:
            continue
        how = ("the order's reason" if _matches(spec, order.reason_codes) else
               "an active condition" if any(_matches(spec, c.codes) for c in conditions) else "")
        if how:
            return key, how, spec
    return None


def is_new_start(facts: ClinicalFacts, order: MedicationFact, drug: str) -> bool:
    """No active order of the drug and no earlier therapy the request shows (priorPrescription,
    basedOn, earlier orders, dispenses: ``order.prior_therapy``, read by fhir_mappers)."""
    return not order.prior_therapy and not any(drug in m.ingredients for m in facts.active_medications)


def schedule_error_findings(facts: ClinicalFacts) -> list[Finding]:
    """A thiopurine ordered once weekly (or rarer): a schedule error, not a low daily dose."""
    spec = load()["dosing"]["schedule"]
    out = []
    for order, drug in thiopurine_orders(facts):
        if not order.schedule_problem:
            continue
        out.append(Finding(
            rule_id="dose-schedule-error", indicator=spec["indicator"], title="Dosing schedule wrong for the drug",
            summary=f"{drug_name(drug)} ordered {order.schedule_problem}: thiopurines are given daily; correct the schedule",
            detail=(f"The order reads **{order.schedule_problem}**. {drug_name(drug)} is given once daily (or the daily "
                    "dose divided), never once weekly: a weekly schedule usually comes from a methotrexate-style order "
                    "and a single large dose risks severe toxicity. It was **not** averaged into a daily dose; the "
                    "dose-per-kg and pharmacogenomic checks need the corrected daily dose. Correct the order."),
            sources=tuple(dict.fromkeys([spec["source"], *spec.get("sources", [])])), order_ref=order.ref))
    return out


def weight_findings(facts: ClinicalFacts, max_age_days: int) -> list[Finding]:
    if not thiopurine_orders(facts) or "weight" in facts.unavailable:
        return []
    general = load()["dosing"]["general"]
    low, high = general["weight_plausible_kg"]
    w = recent_weight(facts, max_age_days)
    if w is not None and not (low <= w.value <= high):
        return [Finding(
            rule_id="weight-implausible", indicator="warning", title="Implausible body weight",
            summary=f"Recorded body weight {fmt_mg(w.value)} kg is implausible; mg/kg dose not checked",
            detail=(f"The latest body weight ({fmt_mg(w.value)} kg, {w.when.date().isoformat()}) is outside "
                    f"{fmt_mg(low)}-{fmt_mg(high)} kg and is treated as a recording error. The dose per kg was "
                    "**not** checked: correct the weight or check the dose by hand."),
            sources=(general["weight_plausible_source"],),
            actions=[OrderTest("29463-7", "Body weight", "Record a current body weight")],
        )]
    if w is None:
        last = f" (last: {facts.weights[0].when.date().isoformat()})" if facts.weights and facts.weights[0].when else ""
        return [Finding(
            rule_id="weight-missing", indicator="info", title="No recent body weight", priority=30,
            summary=f"No body weight in the last {max_age_days} days: thiopurine dose per kg could not be checked",
            detail=(f"Thiopurine doses are weight-based (mg/kg/day). No body weight from the last {max_age_days} "
                    f"days was found{last}, so the mg/kg dose was not checked. Record a current weight."),
            sources=(general["weight_max_age_source"], "fda_azathioprine_dosing"),
            actions=[OrderTest("29463-7", "Body weight", "Record a current body weight")],
        )]
    return []


def dose_findings(facts: ClinicalFacts, max_age_days: int) -> list[Finding]:
    kb = load()
    dosing = kb["dosing"]
    general = dosing["general"]
    findings = []
    weight = usable_weight(facts, max_age_days)
    for order, drug in thiopurine_orders(facts):
        if order.daily_dose is None and order.schedule_problem:
            continue  # said by dose-schedule-error
        if order.daily_dose is None:
            findings.append(Finding(
                rule_id="dose-unreadable", indicator="warning", title="Dose could not be read",
                summary=f"{drug_name(drug)} dose could not be read: check the daily dose by hand",
                detail=(f"The {drug} order's daily dose could not be computed: {order.dose_problem or 'unknown reason'}. "
                        "Dose-per-kg, pharmacogenomic and interaction dose checks need it: check them by hand."),
                sources=("fda_azathioprine_dosing",), order_ref=order.ref))
            continue
        ordered = order.daily_dose.mg
        if drug == "azathioprine":
            ind, how = indication(order, facts.conditions)
            spec = dosing["indications"][ind]
        elif (mal := malignancy(order, facts.conditions, drug)) is not None:
            ind, how, spec = mal
        elif drug in dosing.get("other_drugs", {}):
            ind, how, spec = "unknown", "usual maximum", dosing["other_drugs"][drug]
        else:
            continue
        new_start = is_new_start(facts, order, drug)
        max_per_kg = spec.get("new_start_max_mg_per_kg", spec["max_mg_per_kg"]) if new_start else spec["max_mg_per_kg"]
        sources = tuple(dict.fromkeys([spec["source"], *spec.get("sources", [])]))
        name = spec.get("name", drug)
        if weight is not None:
            per_kg = ordered / weight.value
            if per_kg > max_per_kg + 1e-9:
                top = round_down(max_per_kg * weight.value, 25)
                critical = per_kg > max_per_kg * general["critical_factor"]
                findings.append(Finding(
                    rule_id="dose-above-range", indicator="critical" if critical else "warning",
                    title="Dose above the range for the indication",
                    summary=(f"{drug_name(drug)} {fmt_mg(ordered)} mg/day = {fmt_mgkg(per_kg)} mg/kg/day, above "
                             f"{fmt_mgkg(max_per_kg)} mg/kg/day for {name}: reduce to {fmt_mg(top)} mg/day"),
                    detail=(f"Ordered {fmt_mg(ordered)} mg/day for {fmt_mg(weight.value)} kg "
                            f"(weight of {weight.when.date().isoformat()}) = **{fmt_mgkg(per_kg)} mg/kg/day**. "
                            f"Range for {name} ({how}): {spec.get('range_text', '')}. "
                            + ("More than 1.5 times the maximum. " if critical else "")
                            + f"Suggested: {fmt_mg(top)} mg/day, the top of the range rounded down to 25 mg steps."),
                    sources=sources + ((general["critical_factor_source"],) if critical else ()),
                    actions=[ChangeDose(order.ref, top, f"Change to {drug} {fmt_mg(top)} mg once daily",
                                        cap_mg=max_per_kg * weight.value, drug=drug)] if order.ref and top >= 25 else [],
                    order_ref=order.ref))
                continue
        if new_start and drug == "azathioprine" and not spec.get("no_start_titration") and "new_start_max_mg_per_kg" not in spec:
            start_mg = spec.get("start_mg", general["new_start_mg"])
            start_per_kg = spec.get("start_mg_per_kg", general["new_start_mg_per_kg"])
            threshold = max(start_mg, start_per_kg * weight.value) if weight is not None else start_mg
            if ordered > threshold + 1e-9:
                findings.append(Finding(
                    rule_id="dose-new-start", indicator="info", title="New start above the starting dose", priority=20,
                    summary=(f"Azathioprine new start at {fmt_mg(ordered)} mg/day: start at {fmt_mg(start_mg)} mg/day "
                             "and titrate after 6-8 weeks"),
                    detail=(f"No active azathioprine before this order. For {name}: {spec.get('range_text', '')}. "
                            f"The brief: start 50 mg/day (or 1 mg/kg/day), titrate after 6-8 weeks; judge response after "
                            f"a 12-week trial. Starting above {fmt_mg(threshold)} mg/day raises early toxicity before "
                            "blood counts show how the patient tolerates it."),
                    sources=tuple(dict.fromkeys([general["new_start_source"], *sources])),
                    order_ref=order.ref))
    return findings
