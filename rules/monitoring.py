"""Monitoring: CBC and liver tests due, cytopenias, liver tests, metabolites, TPMT activity."""
from __future__ import annotations

from datetime import timedelta

from fhir_mappers.facts import ClinicalFacts, Measurement

from .common import drug_name, fmt_mg, thiopurine_orders
from .findings import Finding, OrderTest
from .knowledge_base import load

CBC = ("wbc", "neutrophils", "lymphocytes", "platelets", "hemoglobin")
LABEL = {"wbc": "white cells", "neutrophils": "neutrophils", "lymphocytes": "lymphocytes", "platelets": "platelets",
         "mcv": "MCV", "alt": "ALT", "ast": "AST", "tgn": "6-TGN", "mmp": "6-MMP"}
UNIT = {"wbc": "×10⁹/L", "neutrophils": "×10⁹/L", "lymphocytes": "×10⁹/L", "platelets": "×10⁹/L", "mcv": "fL",
        "alt": "U/L", "ast": "U/L", "tgn": "pmol/8×10⁸ RBC", "mmp": "pmol/8×10⁸ RBC"}


def _fmt(x: float) -> str:
    return f"{x:g}"


def latest(facts: ClinicalFacts, analyte: str, max_age_days: int | None = None) -> Measurement | None:
    for m in facts.labs.get(analyte, []):
        if m.when is None:
            continue
        if max_age_days is not None and m.when.date() < facts.today - timedelta(days=max_age_days):
            return None
        return m
    return None


def _early_phase(facts: ClinicalFacts, order, drug: str, days: int) -> tuple[bool, str]:
    """New start, dose change now, or a thiopurine order authored within ``days``."""
    active = [m for m in facts.active_medications if drug in m.ingredients]
    if not active and order.prior_therapy:
        return False, "renewal of earlier therapy"  # priorPrescription / basedOn / earlier orders / dispenses
    if not active:
        return True, "new start"
    if order.daily_dose and any(m.daily_dose and abs(m.daily_dose.mg - order.daily_dose.mg) > 1e-6 for m in active):
        return True, "dose change"
    recent = [m for m in active if m.authored_on and m.authored_on >= facts.today - timedelta(days=days)]
    if recent:
        return True, f"started or changed on {recent[0].authored_on.isoformat()}"
    return False, "established therapy"


def cbc_due_findings(facts: ClinicalFacts) -> list[Finding]:
    if "labs" in facts.unavailable:
        return []
    spec = load()["monitoring"]["cbc"]
    findings = []
    for order, drug in thiopurine_orders(facts):
        early, why = _early_phase(facts, order, drug, spec["early_phase_days"])
        window = spec["weekly_window_days"] if early else spec["routine_window_days"]
        dates = [m.when.date() for a in CBC for m in facts.labs.get(a, []) if m.when]
        last = max(dates) if dates else None
        if last is not None and last >= facts.today - timedelta(days=window):
            continue
        last_text = f"last CBC {last.isoformat()}" if last else "no CBC on record"
        schedule = "weekly for the first 8 weeks" if early else "at least every 3 months"
        findings.append(Finding(
            rule_id="monitoring-cbc-due", indicator="warning", title="CBC monitoring due",
            summary=f"{drug_name(drug)} ({why}): CBC due, {last_text}; check CBC and liver tests",
            detail=(f"Monitoring on {drug}: CBC {schedule} after a start or dose change, then at least every 3 months "
                    f"(the brief; FDA label; BSR 2017). This order is a **{why}**, so a CBC is due within "
                    f"{window} days; {last_text}. Check liver tests with it."),
            sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])),
            actions=[OrderTest(spec["cbc_loinc"], spec["cbc_display"], "Order a CBC", reason=f"{drug} monitoring"),
                     OrderTest(spec["lft_loinc"], spec["lft_display"], "Order liver tests", reason=f"{drug} monitoring")],
            order_ref=order.ref))
    return findings


def _value_line(m: Measurement) -> str:
    flag = " PRELIMINARY" if m.preliminary else ""  # a preliminary result is used, and every card on it says so
    return f"{LABEL[m.analyte]} {_fmt(round(m.value, 2))} {UNIT[m.analyte]}{flag} ({m.when.date().isoformat()})"


def lab_findings(facts: ClinicalFacts) -> list[Finding]:
    orders = thiopurine_orders(facts)
    if not orders:
        return []
    kb = load()["monitoring"]
    age = kb["cbc"]["result_max_age_days"]
    drug = orders[0][1]
    name = drug_name(drug)
    findings = []
    severe, low = [], []
    for analyte in ("neutrophils", "wbc", "platelets"):
        m = latest(facts, analyte, age)
        if m is None:
            continue
        if m.value < kb["severe_cytopenia"][f"{analyte}_below"]:
            severe.append(m)
        elif m.value < kb["cytopenia"][f"{analyte}_below"]:
            low.append(m)
    lym = latest(facts, "lymphocytes", age)
    lymphopenia = lym is not None and lym.value < kb["cytopenia"]["lymphocytes_below"]
    mcv = latest(facts, "mcv", age)
    macro = mcv is not None and mcv.value > kb["cytopenia"]["mcv_above"]
    if severe:
        s = kb["severe_cytopenia"]
        findings.append(Finding(
            rule_id="cytopenia-severe", indicator="critical", title="Severe cytopenia",
            summary=f"Severe cytopenia ({', '.join(_value_line(m).split(' (')[0] for m in severe)}): stop {drug}, urgent review",
            detail=("Grade 3 or worse (CTCAE v5): " + "; ".join(_value_line(m) for m in severe)
                    + f". Withhold {drug} and review urgently (bone marrow suppression; check TPMT/NUDT15 and interacting drugs)."),
            sources=tuple(dict.fromkeys([s["source"], *s["sources"]])), order_ref=orders[0][0].ref))
    if low or lymphopenia or macro:
        c = kb["cytopenia"]
        parts = [_value_line(m) for m in low] + ([_value_line(lym)] if lymphopenia else []) + ([_value_line(mcv)] if macro else [])
        actions = []
        if low:
            advice = f"withhold {drug} and discuss with the specialist (BSR thresholds)"
        elif lymphopenia:
            advice = f"reduce the {drug} dose (lymphocytes < {_fmt(c['lymphocytes_below'])} ×10⁹/L, the brief)"
        else:
            advice = "check B12/folate; macrocytosis may reflect thiopurine toxicity"
        short = ", ".join(p.split(" (")[0] for p in parts)
        findings.append(Finding(
            rule_id="cytopenia", indicator="warning", title="Cytopenia",
            summary=f"{name}: {short[:70]}; {advice.split(' (')[0][:50]}",
            detail=(f"Results below the BSR 2017 action thresholds: {'; '.join(parts)}. Advice: {advice}."
                    + ("" if not severe else " (Severe values are on a separate card.)")),
            sources=tuple(dict.fromkeys([c["source"], *c["sources"]])), actions=actions, order_ref=orders[0][0].ref))
    liver = kb["liver"]
    bad = []
    for analyte in ("alt", "ast"):
        m = latest(facts, analyte, age)
        if m is None:
            continue
        over_uln = m.ref_high is not None and m.value > liver["uln_multiple_above"] * m.ref_high
        if m.value > liver["alt_ast_above"] or over_uln:
            bad.append(m)
    if bad:
        findings.append(Finding(
            rule_id="liver-tests", indicator="warning", title="Raised liver enzymes",
            summary=f"{name}: {', '.join(_value_line(m).split(' (')[0] for m in bad)}; review for hepatotoxicity",
            detail=(f"{'; '.join(_value_line(m) for m in bad)}: above {liver['alt_ast_above']} U/L or twice the "
                    f"laboratory's upper limit (BSR 2017). Thiopurines can cause hepatotoxicity, incl. veno-occlusive "
                    f"disease: withhold {drug} and discuss with the specialist."),
            sources=(liver["source"],), order_ref=orders[0][0].ref))
    met = kb["metabolites"]
    tgn, mmp = latest(facts, "tgn", age), latest(facts, "mmp", age)
    sources = tuple(dict.fromkeys([met["source"], *met["sources"]]))
    if (tgn and tgn.value > met["tgn_above"]) or (mmp and mmp.value > met["mmp_above"]):
        high = [m for m in (tgn, mmp) if m and m.value > met[f"{m.analyte}_above"]]
        findings.append(Finding(
            rule_id="metabolites-high", indicator="warning", title="Thiopurine metabolites high",
            summary=f"{name}: {', '.join(_value_line(m).split(' (')[0] for m in high)}: toxicity risk, consider a lower dose",
            detail=(f"{'; '.join(_value_line(m) for m in high)}. 6-TGN above {met['tgn_above']} raises the risk of "
                    f"myelotoxicity; 6-MMP above {met['mmp_above']} the risk of hepatotoxicity (BSG 2019; laboratory "
                    "ranges). Consider a dose reduction and repeat the metabolites."),
            sources=sources, order_ref=orders[0][0].ref))
    elif tgn and tgn.value < met["tgn_below"]:
        findings.append(Finding(
            rule_id="metabolites-low", indicator="info", title="6-TGN low", priority=40,
            summary=f"{name}: 6-TGN {_fmt(tgn.value)} below {met['tgn_below']}: check adherence or underdosing",
            detail=(f"{_value_line(tgn)}, below the therapeutic range ({met['tgn_below']}-{met['tgn_above']} for IBD; "
                    "paediatric targets 100-300 per the brief). Consider non-adherence or underdosing before calling "
                    "the drug ineffective."),
            sources=sources, order_ref=orders[0][0].ref))
    return findings


def tpmt_activity_status(facts: ClinicalFacts) -> tuple[str | None, str]:
    """A CPIC-like phenotype from the newest TPMT enzyme activity: (phenotype or "High", evidence),
    or (None, "") when there is none or it cannot be judged (``rules.tpmt_activity`` says why)."""
    from .tpmt_activity import latest_judged

    r = latest_judged(facts)
    if r is None:
        return None, ""
    return r.reading, r.evidence


def tpmt_high_findings(facts: ClinicalFacts) -> list[Finding]:
    orders = thiopurine_orders(facts)
    status, evidence = tpmt_activity_status(facts)
    if not orders or status != "High":
        return []
    spec = load()["monitoring"]["tpmt_activity"]
    return [Finding(
        rule_id="tpmt-activity-high", indicator="info", title="High TPMT activity", priority=35,
        summary=f"{drug_name(orders[0][1])}: high TPMT activity; a higher dose may be needed (check metabolites)",
        detail=(f"{evidence}. High TPMT activity inactivates thiopurines faster: risk of under-treatment; a higher "
                "dose may be needed, guided by thiopurine metabolites."),
        sources=tuple(dict.fromkeys([spec["source"], *spec["sources"]])), order_ref=orders[0][0].ref)]


__all__ = ["cbc_due_findings", "lab_findings", "tpmt_activity_status", "tpmt_high_findings", "fmt_mg"]
