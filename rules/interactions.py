"""Thiopurine interactions, in both directions: the thiopurine is the new
order and the other drug is on record (or in the same draft), or the other
drug is the new order while a thiopurine is active."""
from __future__ import annotations

from fhir_mappers.facts import ClinicalFacts, MedicationFact
from fhir_mappers.terminology import terminology

from .common import drug_name, fmt_mg, round_down, thiopurine_of
from .findings import CancelOrder, ChangeDose, Finding, OrderTest
from .knowledge_base import load


def _pairs(facts: ClinicalFacts, is_other) -> list[tuple[MedicationFact, str, MedicationFact, str]]:
    """(thiopurine med, thiopurine, other med, which is new) for every pair where one side is a selected draft.

    Linear in the medications plus the pairs found: a pair needs a selected draft on one side, so
    a thiopurine that is not one is paired only with the selected drafts of the other drug (the
    order is the one a scan of every pair would give)."""
    meds = facts.orders + facts.active_medications
    others = [o for o in meds if is_other(o)]
    selected_others = [o for o in others if o.is_draft and o.selected]
    out, seen = [], set()
    for t in meds:
        tp = thiopurine_of(t)
        if not tp:
            continue
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


def _step(drug: str) -> float:
    return float(load()["pgx"]["rounding"].get(f"{drug}_step_mg", 25))


def _when(t: MedicationFact) -> str:
    return "ordered now" if t.is_draft else "active"


def xoi_findings(facts: ClinicalFacts) -> list[Finding]:
    spec = load()["interactions"]["xanthine_oxidase_inhibitors"]
    xoi = set(spec["ingredients"])
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(m.ingredients & xoi)):
        other = sorted(o.ingredients & xoi)[0]
        factor = spec["thiopurine_dose_factor"]
        actions = []
        dose_text = f"{round(factor * 100)} % of its dose"
        template = ""
        if t.daily_dose is not None:
            step = _step(tp)
            new_mg = round_down(t.daily_dose.mg * factor, step)
            template = f"{drug_name(other)} with {tp}: severe myelosuppression risk; give {tp} at {{dose}}"
            dose_text = f"{round(factor * 100)} % ({fmt_mg(t.daily_dose.mg)} → {fmt_mg(new_mg)} mg/day)"
            if new_mg >= step and t.ref:
                actions.append(ChangeDose(t.ref, new_mg, f"Reduce {tp} to {fmt_mg(new_mg)} mg/day (25 %)",
                                          factor=factor, drug=tp, step_mg=step))
        contraindicated = other in spec.get("contraindicated_with", [])
        if o.is_draft and o.ref:
            actions.append(CancelOrder(o.ref, f"Cancel the {other} order"))
        detail = (f"{drug_name(other)} inhibits xanthine oxidase, which inactivates {tp}: thioguanine levels rise "
                  f"several-fold and can cause severe, life-threatening myelosuppression. {drug_name(tp)} is "
                  f"{_when(t)}; {other} is {_when(o)}.\n\nIf both are needed, reduce {tp} to **25 %** of the dose "
                  "(the brief; FDA label: one-third to one-quarter) and check the CBC weekly.")
        if contraindicated:
            detail += (f"\n\nThe {other} label **contraindicates** its use with azathioprine or mercaptopurine: "
                       "prefer allopurinol (with the dose reduction) or another urate-lowering option.")
        sources = [spec["source"], *(s for s in spec["sources"] if contraindicated or s != "fda_febuxostat")]
        findings.append(Finding(
            rule_id="interaction-xanthine-oxidase", indicator=spec["indicator"], title="Xanthine oxidase inhibitor",
            summary=f"{drug_name(other)} with {tp}: severe myelosuppression risk; give {tp} at {dose_text}",
            detail=detail, sources=tuple(dict.fromkeys(sources)), actions=actions, dose_summary=template,
            order_ref=t.ref if new == "thiopurine" else o.ref))
    return findings


def warfarin_findings(facts: ClinicalFacts) -> list[Finding]:
    spec = load()["interactions"]["warfarin"]
    drugs = set(spec["ingredients"])
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(m.ingredients & drugs)):
        findings.append(Finding(
            rule_id="interaction-warfarin", indicator=spec["indicator"], title="Warfarin",
            summary=f"{drug_name(tp)} with warfarin: reduced anticoagulant effect; check INR within {spec['inr_within_days']} days",
            detail=(f"{drug_name(tp)} can inhibit the anticoagulant effect of warfarin; the warfarin dose may need to "
                    f"rise substantially ({spec['warfarin_dose_factor_text']}, the brief). {drug_name(tp)} is {_when(t)}; "
                    f"warfarin is {_when(o)}. Check the INR within {spec['inr_within_days']} days and after any "
                    f"{tp} dose change or stop (the INR can rise when {tp} is stopped)."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])),
            actions=[OrderTest(spec["inr_loinc"], spec["inr_display"], f"Order an INR within {spec['inr_within_days']} days",
                               reason=f"warfarin with {tp}", within_days=spec["inr_within_days"])],
            order_ref=t.ref if new == "thiopurine" else o.ref))
    return findings


def _live(m: MedicationFact) -> list[str]:
    cvx = terminology().cvx
    return sorted(c for c in m.vaccine_codes if cvx.get(c, {}).get("live"))


def vaccine_findings(facts: ClinicalFacts) -> list[Finding]:
    spec = load()["interactions"]["live_vaccines"]
    cvx = terminology().cvx
    findings = []
    for t, tp, o, new in _pairs(facts, lambda m: bool(_live(m))):
        live = _live(o)
        names = ", ".join(cvx[c]["name"] for c in live)
        alts = [spec["alternatives"][c] for c in live if c in spec["alternatives"]]
        alt_text = f" Non-live alternative: {', '.join(alts)}." if alts else ""
        findings.append(Finding(
            rule_id="interaction-live-vaccine", indicator=spec["indicator"], title="Live vaccine",
            summary=f"Live vaccine ({names[:40]}) with {tp}: contraindicated; do not give the live vaccine",
            detail=(f"{drug_name(tp)} ({_when(t)}) suppresses immunity; a live vaccine ({names}, {_when(o)}) can cause "
                    f"disseminated infection. Live vaccines are contraindicated during thiopurine therapy.{alt_text}"),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])),
            actions=[CancelOrder(o.ref, "Remove the live vaccine order")] if o.is_draft and o.ref else [],
            order_ref=o.ref if new == "other" else t.ref))
    return findings


def other_findings(facts: ClinicalFacts) -> list[Finding]:
    table = load()["interactions"]["others"]
    findings = []
    for key, spec in table.items():
        drugs = set(spec["ingredients"])
        for t, tp, o, new in _pairs(facts, lambda m, drugs=drugs: bool(m.ingredients & drugs)):
            other = sorted(o.ingredients & drugs)[0]
            findings.append(Finding(
                rule_id=f"interaction-{key.replace('_', '-')}", indicator=spec["indicator"], title=spec["name"],
                summary=f"{drug_name(other)} ({spec['name']}) with {tp}: {spec['effect'][:60]}; monitor CBC",
                detail=(f"{drug_name(other)} ({_when(o)}) with {tp} ({_when(t)}): {spec['effect']}. Check the CBC "
                        "before and during combined use; consider an alternative."),
                sources=(spec["source"],), order_ref=t.ref if new == "thiopurine" else o.ref))
    return findings


def duplicate_findings(facts: ClinicalFacts) -> list[Finding]:
    spec = load()["interactions"]["duplicate"]
    findings = []
    first_of: dict[str, MedicationFact] = {}  # each thiopurine's first medication, in record order
    for m in facts.orders + facts.active_medications:
        if (op := thiopurine_of(m)) and op not in first_of:
            first_of[op] = m
    position = {id(m): i for i, m in enumerate(facts.orders + facts.active_medications)}
    for order in facts.orders:
        tp = thiopurine_of(order)
        if not (tp and order.selected):
            continue
        others = sorted((m for op, m in first_of.items() if op != tp), key=lambda m: position[id(m)])
        if not others:
            continue
        other = thiopurine_of(others[0])
        findings.append(Finding(
            rule_id="duplicate-thiopurine", indicator=spec["indicator"], title="Duplicate thiopurine",
            summary=f"{drug_name(tp)} ordered while {other} is {_when(others[0])}: duplicate thiopurine therapy",
            detail=(f"{drug_name(tp)} and {other} are both thiopurines (azathioprine is a prodrug of mercaptopurine): "
                    "together they add up to an overdose with a high risk of myelosuppression. Stop one."),
            sources=(spec["source"],), actions=[CancelOrder(order.ref, f"Cancel the {tp} order")] if order.ref else [],
            order_ref=order.ref))
    return findings


def interaction_findings(facts: ClinicalFacts) -> list[Finding]:
    return (duplicate_findings(facts) + xoi_findings(facts) + vaccine_findings(facts)
            + warfarin_findings(facts) + other_findings(facts))


def interacting_ingredients() -> frozenset[str]:
    k = load()["interactions"]
    names = set(k["xanthine_oxidase_inhibitors"]["ingredients"]) | set(k["warfarin"]["ingredients"])
    for spec in k["others"].values():
        names |= set(spec["ingredients"])
    return frozenset(names)


def is_live_vaccine(m: MedicationFact) -> bool:
    return bool(_live(m))
