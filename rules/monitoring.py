"""Monitoring: CBC and liver tests due, cytopenias, liver tests, metabolites, TPMT activity."""
from __future__ import annotations

import dataclasses

import msgspec

from datetime import date, timedelta
from functools import cache

from fhir_mappers.facts import AbsentResult, ClinicalFacts, Measurement, ResultText
from fhir_mappers.observations import ANALYTE_LABELS

from .common import (CodeMatcher, above, below, dose_not_tolerated, is_new_start, lab_flag, short_ref, taken_orders,
                     therapy_unknown, thiopurine_of)
from .context import CallContext, context_of
from .findings import Action, CancelOrder, Finding, OrderTest
from .knowledge_base import load
from .knowledge_schema import ThioguanineLiver

CBC = ("wbc", "neutrophils", "lymphocytes", "platelets", "hemoglobin")
LIVER = ("alt", "ast")  # the liver tests whose date says when the liver tests were last done
# the liver results judged (round-5 H1: the labels name ALP and bilirubin beside the transaminases)
LIVER_JUDGED = ("alt", "ast", "bilirubin", "alp")


# the direction in which a result is worse (for choosing among results of the same date and time):
# low blood counts and eGFR; high liver enzymes, creatinine, MCV and metabolites (toxicity)
WORSE_LOW = frozenset({"wbc", "neutrophils", "lymphocytes", "platelets", "hemoglobin", "egfr"})


def latest(facts: ClinicalFacts, analyte: str, max_age_days: int | None = None) -> Measurement | None:
    """The newest dated result; of several with that same date and time, the worst (a normal result never
    hides an abnormal one of the same time; ``disagreeing`` gives the others, the card says so)."""
    results = facts.labs.get(analyte, [])
    i = next((i for i, m in enumerate(results) if m.when is not None), None)
    if i is None:
        return None  # no dated result
    when = results[i].when
    if when is None or max_age_days is not None and when.date() < facts.today - timedelta(days=max_age_days):
        return None
    same = [m for m in results[i:] if m.when == when]  # the ones before i are undated
    return min(same, key=lambda m: m.value) if analyte in WORSE_LOW else max(same, key=lambda m: m.value)


class CalculatedCount(Measurement, frozen=True):
    """An absolute neutrophil count the rules calculated: white cells x neutrophil percentage of the same
    specimen (same date and time), when the laboratory sent no absolute count (round-5 H5). Cards say so."""

    wbc: float = 0.0
    percent: float = 0.0


def neutrophil_count(facts: ClinicalFacts, max_age_days: int | None = None) -> Measurement | None:
    """The absolute neutrophil count a card rests on: the newest one sent, or, when the newest white cell count
    has a neutrophil percentage of the same date and time and no absolute count of that time or newer, the count
    calculated from the two (WBC x % / 100). A limit result ("< 1.0") is never multiplied (not a number)."""
    m = latest(facts, "neutrophils", max_age_days)
    w = latest(facts, "wbc", max_age_days)
    p = latest(facts, "neutrophils_percent", max_age_days)
    if w is None or p is None or w.when is None or p.when != w.when or w.comparator or p.comparator:
        return m
    if m is not None and m.when is not None and m.when >= w.when:
        return m  # the laboratory's own absolute count of that CBC (or a newer one)
    if p.unit != "%" or w.unit != "10*9/L":
        return m
    return CalculatedCount("neutrophils", round(w.value * p.value / 100.0, 3), "10*9/L", w.when, p.source_ref,
                           preliminary=w.preliminary or p.preliminary, wbc=w.value, percent=p.value)


def neutrophil_gap(facts: ClinicalFacts) -> dict | None:
    """The newest white cell count (within the result age) has no absolute neutrophil count of its date and time,
    sent or calculable: a data gap (the CBC is not complete; a check that could not be done is never dropped).
    A dict for the data-incomplete card, or None: its ``problem`` (a code and values) is worded by the catalogue
    (catalogue.toml [meta] macros gap_why)."""
    if "labs" in facts.unavailable:
        return None
    age = load().monitoring.cbc.result_max_age_days
    w = latest(facts, "wbc", age)
    if w is None or w.when is None:
        return None
    n = neutrophil_count(facts, age)
    if n is not None and n.when is not None and n.when >= w.when:
        return None
    if reported(facts, "neutrophils", age, n) is not None:
        return None  # an absolute count sent in a form not read: the mapper's gap already names it
    p = latest(facts, "neutrophils_percent", age)
    when = w.when.date().isoformat()
    what = "absolute neutrophil count"
    problem: dict
    if p is not None and p.when is not None and p.when.date() >= w.when.date():
        # only a percentage of the same day: no absolute count sent, and none calculated (a limit value, or not the
        # same specimen time)
        problem = {"code": "anc_percent_only", "comparator": p.comparator, "percent": p.value,
                   "date": p.when.date().isoformat(), "wbc_date": when,
                   "flag": p.interpretation if p.interpretation not in ("", "<", ">") else "",
                   "limit": bool(p.comparator or w.comparator)}
        what = f"absolute neutrophil count (only {p.comparator}{p.value:g} % sent)"
    elif _low_wbc(w):
        problem = {"code": "anc_missing_low_wbc", "wbc_date": when}
    else:
        # a count without a differential (a CBC ordered without one) and a white cell count that is not low:
        # nothing was sent that the rules could not read, and the cytopenia rule has judged the white cells
        return None
    return {"what": what, "why": "", "problem": problem, "key": "neutrophils", "outcome": "", "sent": ""}


def _low_wbc(w: Measurement) -> bool:
    """A white cell count below the laboratory's lower limit or flagged low by it: the neutrophils need checking."""
    return (w.ref_low is not None and w.value < w.ref_low) or lab_flag(w) in ("low", "critical_low")


def disagreeing(facts: ClinicalFacts, m: Measurement) -> list[Measurement]:
    """Other results of ``m``'s analyte with the same date and time whose values differ from it."""
    ms = [x for x in facts.labs.get(m.analyte, []) if m.when is not None and x.when == m.when]
    return [x for x in ms if x is not m and abs(x.value - m.value) > 1e-9]


def _start(m) -> tuple[date | None, bool]:
    """(earliest known start of the therapy this order carries, earlier therapy of unknown date shown?).
    ``MedicationFact.prior_therapy`` (fhir_mappers: priorPrescription, basedOn, earlier orders, dispenses)."""
    pt = m.prior_therapy
    dates = [d for d in (m.authored_on, pt.since if pt else None) if d]
    return (min(dates) if dates else None), bool(pt and pt.since is None)


class _ActiveTherapy(msgspec.Struct, frozen=True):
    """The active orders of one drug, summed up once per call (every order of the call is compared
    with them: per order that was a scan of every active order, quadratic in a large record)."""

    present: bool
    low_mg: float | None  # lowest and highest daily dose among them
    high_mg: float | None
    undated: bool  # one shows earlier therapy of unknown date
    earliest: date | None  # the earliest known start among them


def _active_therapy(facts: ClinicalFacts, drug: str) -> _ActiveTherapy:
    active = taken_orders(facts, drug)  # round-17 H4: an order a draft renews is therapy taken
    doses = [m.daily_dose.mg for m in active if m.daily_dose]
    starts = [_start(m) for m in active]
    dated = [d for d, _ in starts if d]
    return _ActiveTherapy(bool(active), min(doses, default=None), max(doses, default=None),
                          any(undated for _, undated in starts), min(dated, default=None))


def _early_phase(facts: ClinicalFacts, order, drug: str, days: int,
                 therapy: _ActiveTherapy | None = None) -> tuple[bool, str, str]:
    """(early phase?, why, since): a new start, a dose change now, or therapy started within ``days``.
    A renewal of established therapy is not a start and does not restart the weekly phase: neither an
    order whose history (``prior_therapy``) shows earlier therapy, nor a recent order beside an older one.
    ``therapy``: ``_active_therapy(facts, drug)``, when the caller has it."""
    active = therapy or _active_therapy(facts, drug)
    if not active.present and therapy_unknown(facts, order):
        return True, "therapy_unknown", ""  # medications not obtained: the weekly phase, as for a start
    if not active.present and order.prior_therapy is None:
        return True, "new_start", ""
    if order.daily_dose and active.low_mg is not None and active.high_mg is not None and (
            active.low_mg < order.daily_dose.mg - 1e-6 or active.high_mg > order.daily_dose.mg + 1e-6):
        return True, "dose_change", ""
    if order.is_draft and any(m.status == "on-hold" for m in taken_orders(facts, drug, order)):
        # round-19 H3: an order on hold, renewed now, is a restart (a therapy change: the Imuran label's closer CBC),
        # never the continuation of established therapy
        return True, "restart_hold", ""
    own, own_undated = _start(order) if order.prior_therapy else (None, False)
    if active.undated or own_undated:
        return False, "established", ""  # earlier therapy whose date the record does not give: not a start
    dated = [d for d in (active.earliest, own) if d]
    if dated and min(dated) >= facts.today - timedelta(days=days):
        return True, "recent_start", min(dated).isoformat()
    return False, "established", ""


def _windows(early: bool) -> tuple[int, int]:
    """(CBC window, liver-test window) in days: weekly / two-weekly in the early phase, else routine."""
    spec = load().monitoring.cbc
    if early:
        return spec.weekly_window_days, spec.lft_early_window_days
    return spec.routine_window_days, spec.routine_window_days


def monitoring_windows(facts: ClinicalFacts, ctx: CallContext | None = None) -> tuple[int, int, str]:
    """(CBC window, liver-test window, why) for the call's first thiopurine order: the windows
    ``cbc_due_findings`` uses, for views that show when tests fall due (the SMART app's picture)."""
    orders = context_of(facts, ctx).thiopurine_orders
    if not orders:
        return (*_windows(False), "established")
    order, drug = orders[0]
    early, why, _ = _early_phase(facts, order, drug, load().monitoring.cbc.early_phase_days)
    return (*_windows(early), why)


def _last(facts: ClinicalFacts, analytes) -> str:
    dates = [m.when.date() for a in analytes for m in facts.labs.get(a, []) if m.when]
    return max(dates).isoformat() if dates else ""


def cbc_state(facts: ClinicalFacts) -> tuple[str, dict | None, list[dict]]:
    """(date of the last complete blood count, the newest partial count after it, counts sent without a result
    after it). Complete (monitoring.toml [cbc] complete_count, round-8 H2): each group of counts was read as a
    number: a white cell or neutrophil count AND a platelet count. The CBC is as old as the older of the two (the
    latest date each was read; counts of one sample reported on two days still make one CBC). Haemoglobin, MCV or
    lymphocytes alone never make the CBC up to date. The partial count: the newest date after it with any count
    read, {"date", "read": the counts read that day, "missing": the groups with none that day}; the absent ones:
    dataAbsentReason or cancelled results of the counts (the newest of each) after it."""
    spec = load().monitoring.cbc
    by_date: dict[date, set[str]] = {}
    for a in spec.count_analytes:
        for m in facts.labs.get(a, []):
            if m.when is not None:
                by_date.setdefault(m.when.date(), set()).add(a)
    newest = [max((d for d, got in by_date.items() if got.intersection(g)), default=None) for g in spec.complete_count]
    last = None if None in newest else min(d for d in newest if d is not None)
    partial = None
    newer = [d for d in by_date if last is None or d > last]
    if newer:
        d = max(newer)
        got = by_date[d]
        partial = {"date": d.isoformat(), "read": [a for a in spec.count_analytes if a in got],
                   "missing": [list(g) for g in spec.complete_count if not got.intersection(g)]}
    absent = [{"analyte": r.analyte, "date": r.when.date().isoformat() if r.when else "", "status": r.status,
               "reason": r.reason, "value": r.value_text}
              for a in spec.count_analytes for r in facts.absent_results.get(a, [])[:1]
              if last is None or r.when is None or r.when.date() > last]
    return (last.isoformat() if last else ""), partial, absent


def absent_count_gaps(facts: ClinicalFacts) -> list[dict]:
    """Blood counts sent with dataAbsentReason, or with status cancelled (round-8 H2): data gaps quoting the reason
    or the status, for the counts of monitoring.toml [cbc] absent_gap_analytes, within result_max_age_days, when
    no readable value of that count of the same time or later exists (one per count: the newest). Dicts for the
    data-incomplete card: the ``problem`` (code ``count_absent``, as sent) is worded by the catalogue (gap_why)."""
    if "labs" in facts.unavailable or not facts.absent_results:
        return []
    spec = load().monitoring.cbc
    oldest = facts.today - timedelta(days=spec.result_max_age_days)
    out = []
    for analyte in spec.absent_gap_analytes:
        for r in facts.absent_results.get(analyte, []):
            if r.when is not None and r.when.date() < oldest:
                continue
            m = neutrophil_count(facts) if analyte == "neutrophils" else latest(facts, analyte)
            if m is not None and (r.when is None or (m.when is not None and m.when >= r.when)):
                continue  # a readable count of that time or later: the absent one changes nothing
            out.append(_absent_gap(r))
            break
    return out


def _absent_gap(r: AbsentResult) -> dict:
    problem = {"code": "count_absent", "date": r.when.date().isoformat() if r.when else "", "ref": r.source_ref,
               "cancelled": r.status == "cancelled", "value_text": r.value_text if r.status == "cancelled" else "",
               "reason": r.reason}
    sent = f"no value: {r.reason}" if r.reason else f"status {r.status}"
    return {"what": ANALYTE_LABELS.get(r.analyte, r.analyte), "why": "", "problem": problem,
            "key": r.analyte, "outcome": "", "sent": sent, "bound_only": False}


def _unread(facts: ClinicalFacts, analytes) -> str:
    """Results of these analytes that were sent but could not be read (a ResultText: no number, a unit not
    converted): the newest date, "undated", or "" when there are none. The CBC-due card must not call such a
    record "no CBC on record" (round-6 m1): results were sent, they could not be used."""
    sent = [t for a in analytes for t in facts.result_texts.get(a, [])]
    if not sent:
        return ""
    dates = [t.when.date() for t in sent if t.when]
    return max(dates).isoformat() if dates else "undated"


def _future(facts: ClinicalFacts, key: str) -> str:
    """The dates (as sent) of results of this kind dated after today and set aside (round-14 H2): "" when none."""
    return ", ".join(dict.fromkeys(g.sent for g in facts.gaps if g.key == key))


def cbc_due_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    if "labs" in facts.unavailable:
        return []
    orders = context_of(facts, ctx).thiopurine_orders
    if not orders:
        return []
    spec = load().monitoring.cbc
    findings = []
    (last_cbc, partial_cbc, absent_cbc), last_lft = cbc_state(facts), _last(facts, LIVER)
    cutoff = facts.today.isoformat()
    therapies: dict[str, _ActiveTherapy] = {}
    for order, drug in orders:
        therapy = therapies.get(drug) or therapies.setdefault(drug, _active_therapy(facts, drug))
        early, why, since = _early_phase(facts, order, drug, spec.early_phase_days, therapy)
        cbc_window, lft_window = _windows(early)
        cbc_due = not last_cbc or last_cbc < (facts.today - timedelta(days=cbc_window)).isoformat()
        lft_due = not last_lft or last_lft < (facts.today - timedelta(days=lft_window)).isoformat()
        # round-18 m6: a CBC dated after today's date but within the time-zone tolerance (rules.plausibility: kept)
        # that alone makes the CBC current is said, with the CBC before it: verify its date
        ahead = _dated_ahead(facts, last_cbc, cbc_window) if not cbc_due else None
        if not (cbc_due or lft_due or ahead):
            continue
        actions: list[Action] = []
        if cbc_due:
            actions.append(OrderTest(spec.cbc_loinc, spec.cbc_display, label="order_cbc", reason=spec.reason))
        if lft_due:
            actions.append(OrderTest(spec.lft_loinc, spec.lft_display, label="order_lft", reason=spec.reason))
        last_abnormal = _last_abnormal(facts, order, drug, ctx) if cbc_due else []
        findings.append(Finding("monitoring-cbc-due", order.ref,
                                {"last_abnormal": last_abnormal,
                                 "early": early, "why": why, "since": since, "cbc_due": cbc_due, "lft_due": lft_due,
                                 "last_cbc": last_cbc, "last_lft": last_lft, "cbc_window": cbc_window,
                                 "lft_window": lft_window, "today": cutoff,
                                 "unread_cbc": _unread(facts, CBC), "unread_lft": _unread(facts, LIVER),
                                 # round-14 H2: results dated after today, set aside (rules.plausibility): named
                                 "future_cbc": _future(facts, "future_cbc"), "future_lft": _future(facts, "future_liver"),
                                 # what the newest count lacked, only when the CBC is due (round-8 H2)
                                 **({"partial_cbc": partial_cbc} if partial_cbc and cbc_due else {}),
                                 **({"absent_cbc": absent_cbc} if absent_cbc and cbc_due else {}),
                                 **({"dated_ahead": ahead} if ahead else {})},
                                actions, drug=drug, indicator=None if cbc_due or lft_due else "info"))
    return findings


def _dated_ahead(facts: ClinicalFacts, last_cbc: str, window: int) -> dict | None:
    """Round-18 m6: the CBC that makes the check current is dated after today's date (kept by the time-zone
    tolerance of rules.plausibility) and without the counts so dated the CBC would be due: {"date", "previous"}."""
    if not last_cbc or last_cbc[:10] <= facts.today.isoformat():
        return None
    labs = {a: [m for m in ms if m.when is None or m.when.date() <= facts.today] for a, ms in facts.labs.items()}
    previous = cbc_state(dataclasses.replace(facts, labs=labs))[0]
    if previous and previous >= (facts.today - timedelta(days=window)).isoformat():
        return None
    return {"date": last_cbc, "previous": previous}


def _last_abnormal(facts: ClinicalFacts, order, drug: str, ctx: CallContext | None = None) -> list[dict]:
    """The last blood counts, too old for the cytopenia cards (``result_max_age_days``), that were abnormal: the
    CBC-due card quotes them (a renewal after a severe count is not routine monitoring). Severe: CTCAE grade 3
    or a laboratory critical-low flag; low: the BSR 2017 action thresholds (not in leukaemia maintenance)."""
    kb = load().monitoring
    old_before = facts.today - timedelta(days=kb.cbc.result_max_age_days)
    leukaemia = _leukaemia(facts, order, drug, ctx)
    out = []
    for analyte in ("neutrophils", "wbc", "platelets", "hemoglobin", "lymphocytes"):
        m = neutrophil_count(facts) if analyte == "neutrophils" else latest(facts, analyte)
        if m is None or m.when is None or m.when.date() >= old_before:
            continue  # none, or recent enough for the cytopenia cards
        severe_at = _severe_at(analyte, leukaemia) if analyte != "lymphocytes" else None
        low_at = getattr(kb.cytopenia, f"{analyte}_below", None)
        if (severe_at is not None and below(m, severe_at)) or lab_flag(m) == "critical_low":
            out.append({**_value(m), "severity": "severe"})
        elif not leukaemia and low_at is not None and below(m, low_at):
            out.append({**_value(m), "severity": "low"})
    return out


def _value(m: Measurement) -> dict:
    # a preliminary result is used, and every card on it says so (value line and summary); a limit result
    # keeps its comparator ("<15", never "15") and the laboratory's flag travels with it
    out = {"analyte": m.analyte, "value": round(m.value, 2), "date": m.when.date().isoformat() if m.when else "",
           "ref_high": m.ref_high, "preliminary": m.preliminary, "comparator": m.comparator,
           "flag": lab_flag(m), "flag_code": m.interpretation if m.interpretation not in ("<", ">") else ""}
    if isinstance(m, CalculatedCount):
        out["calculated"] = {"wbc": m.wbc, "percent": m.percent}  # the card says it was calculated, from what
    return out


def reported(facts: ClinicalFacts, analyte: str, max_age_days: int, m: Measurement | None) -> ResultText | None:
    """The newest result of ``analyte`` that could not be used as a number (a unit this service does not convert,
    no unit, words), when it is not older than the newest usable one ``m``: a card quotes it as sent."""
    r = next((r for r in facts.result_texts.get(analyte, []) if r.when is not None), None)
    if r is None or r.when is None or r.when.date() < facts.today - timedelta(days=max_age_days):
        return None
    if m is not None and m.when is not None and r.when < m.when:
        return None
    return r


def _as_reported(r: ResultText) -> dict:
    """A result a card quotes as the laboratory sent it (value and unit), with the laboratory's flag."""
    return {"analyte": r.analyte, "value": None, "as_sent": r.value_text or r.text[:60], "date": r.when.date().isoformat() if r.when else "",
            "ref_high": None, "preliminary": r.preliminary, "comparator": "", "flag": lab_flag(r),
            "flag_code": r.interpretation, "unit_text": r.unit_text, "upper_bound": r.upper_bound}


def conflicts(facts: ClinicalFacts, ms: list) -> list[dict]:
    """Results of the same date and time that disagree with the ones a card rests on (the card says so)."""
    return [{"analyte": m.analyte, "value": round(m.value, 2), "date": m.when.date().isoformat() if m.when else "",
             "comparator": m.comparator, "others": [round(x.value, 2) for x in others],
             "others_comparators": [x.comparator for x in others]} for m in ms
            if isinstance(m, Measurement) and (others := disagreeing(facts, m))]


def _results(ms: list, facts: ClinicalFacts | None = None) -> dict:
    """Card values of results: Measurements, and ResultTexts quoted as reported."""
    out: dict = {"results": [_value(m) if isinstance(m, Measurement) else _as_reported(m) for m in ms],
                 "preliminary": any(m.preliminary for m in ms)}
    if facts is not None and (found := conflicts(facts, ms)):
        out["same_time_conflicts"] = found
    return out


def lab_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    orders = context_of(facts, ctx).thiopurine_orders
    if not orders:
        return []
    kb = load().monitoring
    age = kb.cbc.result_max_age_days
    order, drug = orders[0]
    findings = []
    severe: list = []
    low: list = []
    # leukaemia maintenance (ALL, AML: dosing.toml malignancy_drugs): the dose is titrated to counts (mercaptopurine
    # label 2.1: "adjust dose to maintain desirable ANC"); the BSR/BHPR 2017 DMARD thresholds (rheumatology) do not
    # apply there. The severe cytopenia card (CTCAE grade 3, laboratory critical flags) does.
    leukaemia = _leukaemia(facts, order, drug, ctx)
    for analyte in ("neutrophils", "wbc", "platelets", "hemoglobin"):
        m = neutrophil_count(facts, age) if analyte == "neutrophils" else latest(facts, analyte, age)
        r = reported(facts, analyte, age, m)
        if r is not None and lab_flag(r) == "critical_low":
            severe.append(r)  # flagged critical by the laboratory, in a unit not converted: quoted as reported
            continue
        if r is not None and r.upper_bound is not None and r.upper_bound < _severe_at(analyte, leukaemia):
            # a number sent without a unit ("<0.5"): at most this in any unit the count is reported in, so below
            # the severe threshold whatever the laboratory meant (round-7 M2; never read as normal)
            severe.append(r)
            continue
        if m is None:
            if r is not None and r.upper_bound is not None and analyte != "hemoglobin" \
                    and r.upper_bound < getattr(kb.cytopenia, f"{analyte}_below"):
                low.append(r)  # below the BSR/BHPR 2017 threshold whatever the unit (the bound as above)
            continue
        if below(m, _severe_at(analyte, leukaemia)) or lab_flag(m) == "critical_low":
            severe.append(m)
        elif analyte != "hemoglobin" and below(m, getattr(kb.cytopenia, f"{analyte}_below")):
            low.append(m)
    lym = latest(facts, "lymphocytes", age)
    lymphopenia = lym is not None and below(lym, kb.cytopenia.lymphocytes_below)
    # round-19 m3: the severe card names the other counts below the BSR/BHPR 2017 thresholds too (white cells 2.4
    # and platelets 88 beside neutrophils 0.9 appeared on no card): one card, every low count on it
    also_low = [] if leukaemia else low + ([lym] if lymphopenia and lym else [])
    if leukaemia or severe:
        # leukaemia: no BSR thresholds; severe: one card per problem, the stop supersedes the milder BSR withhold
        # about the same blood count (macrocytosis, a problem of its own, keeps its card)
        low, lymphopenia = [], False
    mcv = latest(facts, "mcv", age)
    macro = mcv is not None and above(mcv, kb.cytopenia.mcv_above)
    if severe:
        # stop on severe cytopenia (brief; FDA label): the stop supersedes every dose advice on the order
        values = _results(severe, facts)
        if also_low:
            values["also_low"] = _results(also_low)["results"]
        findings.append(Finding("cytopenia-severe", order.ref, values,
                                [CancelOrder(order.ref, drug)] if order.ref and order.is_draft else [],
                                stops_order=True, drug=drug, sources=("bsr_2017",) if also_low else ()))
    if low or lymphopenia or macro:
        # BSR/BHPR 2017: WBC, neutrophils, platelets and lymphocytes < 0.5 alike: withhold until discussed with
        # the specialist team (not a dose reduction)
        advice = "withhold" if low or lymphopenia else "macrocytosis"
        findings.append(Finding("cytopenia", order.ref, {**_results(low + ([lym] if lymphopenia and lym else []) + ([mcv] if macro and mcv else []), facts),
                                                         "advice": advice,
                                                         "also_severe": bool(severe)},
                                withholds=advice == "withhold", drug=drug))
    findings += _liver_findings(facts, order, drug, ctx)
    met = kb.metabolites
    tgn, mmp = latest(facts, "tgn", age), latest(facts, "mmp", age)
    high: list = [m for m in (tgn, mmp) if m and above(m, getattr(met, f"{m.analyte}_above"))]
    for analyte, m in (("tgn", tgn), ("mmp", mmp)):  # flagged high by the laboratory, not converted: as reported
        r = reported(facts, analyte, age, m)
        if r is not None and lab_flag(r) in ("high", "critical_high", "critical"):
            high = [x for x in high if x is not m] + [r]
    if high:
        findings.append(Finding("metabolites-high", order.ref, _results(high, facts), drug=drug))
    elif tgn and below(tgn, met.tgn_below):
        findings.append(Finding("metabolites-low", order.ref, _results([tgn]), drug=drug))
    return findings


def _uln(facts: ClinicalFacts, m: Measurement) -> tuple[float, bool]:
    """(upper limit of normal, the laboratory's own?) of a liver result: the laboratory's referenceRange.high,
    else the default of monitoring.toml [liver] (ALP: the child's limit under 16 years)."""
    if m.ref_high is not None and m.ref_high > 0:
        return m.ref_high, True
    liver = load().monitoring.liver
    if m.analyte == "bilirubin":
        return liver.bilirubin_default_uln, False
    if m.analyte == "alp":
        b = facts.patient.birth_date if facts.patient else None
        t = facts.today
        years = None if b is None else t.year - b.year - ((t.month, t.day) < (b.month, b.day))
        child = years is not None and years < liver.alp_child_below_years
        return (liver.alp_default_uln_child if child else liver.alp_default_uln), False
    return liver.transaminase_default_uln, False


def _liver_value(facts: ClinicalFacts, m: Measurement | ResultText) -> dict:
    """A liver result's card values, with its upper limit and the multiple of it (a number result only)."""
    if not isinstance(m, Measurement):
        return _as_reported(m)
    uln, own = _uln(facts, m)
    out = {**_value(m), "uln": round(uln, 2), "uln_lab": own, "times_uln": round(m.value / uln, 1) if uln else None,
           "unit": m.unit}
    if m.sent_value is not None and m.unit_text and m.unit_text != m.unit:
        out["sent"] = {"value": m.sent_value, "unit": m.unit_text}  # quoted as the laboratory sent it (4.0 mg/dL)
    return out


def _liver_findings(facts: ClinicalFacts, order, drug: str, ctx: CallContext | None) -> list[Finding]:
    """Liver tests (Imuran label, Hepatotoxicity: ALP, bilirubin and/or transaminases; Purixan 5.2): ALT/AST
    above the BSR 2017 threshold, total bilirubin above 1.5 x and ALP above 2.5 x the upper limit (CTCAE v5
    grade 2), or flagged critical by the laboratory. A transaminase >= 3 x with bilirubin > 2 x the upper limit
    (Hy's law pattern, FDA DILI guidance 2009) is the severe card: critical, stop (not in autoimmune hepatitis,
    where it may be the disease: urgent hepatology review instead)."""
    liver = load().monitoring.liver
    age = load().monitoring.cbc.result_max_age_days
    bad: list = []
    latest_of: dict[str, Measurement] = {}
    for analyte in LIVER_JUDGED:
        m = latest(facts, analyte, age)
        r = reported(facts, analyte, age, m)
        if r is not None and lab_flag(r) in ("critical_high", "critical"):
            bad.append(r)  # flagged critical by the laboratory, not converted: quoted as reported
            continue
        if m is None:
            continue
        latest_of[analyte] = m
        uln, _ = _uln(facts, m)
        if lab_flag(m) in ("critical_high", "critical"):
            bad.append(m)
        elif analyte in ("alt", "ast"):
            if above(m, liver.alt_ast_above) or (m.ref_high is not None and above(m, liver.uln_multiple_above * m.ref_high)):
                bad.append(m)
        elif above(m, uln * (liver.bilirubin_uln_multiple_above if analyte == "bilirubin" else liver.alp_uln_multiple_above)):
            bad.append(m)
    if not bad:
        return []
    bili = latest_of.get("bilirubin")
    hys = bili is not None and above(bili, liver.hys_bilirubin_uln_multiple * _uln(facts, bili)[0]) and any(
        (t := latest_of.get(a)) is not None and above(t, liver.hys_transaminase_uln_multiple * _uln(facts, t)[0] - 1e-9)
        for a in ("alt", "ast"))
    aih = _aih_phase(facts, order, drug, ctx)
    if aih == "start":
        # before the first dose, raised liver tests in autoimmune hepatitis are the disease (EASL 2015): the baseline
        # that treatment is to normalise, never a reason to withhold the drug; bilirubin has its own start rule
        # (aih-start-bilirubin: below 100 umol/L)
        enzymes = [m for m in bad if m.analyte != "bilirubin"]
        return [Finding("aih-liver-baseline", order.ref, _results(enzymes, facts), drug=drug)] if enzymes else []
    values = {**_results(bad, facts), "aih": aih, "hys": hys,
              "liver": [_liver_value(facts, m) for m in bad]}
    stop = hys and not aih
    return [Finding("liver-tests", order.ref, values,
                    [CancelOrder(order.ref, drug)] if stop and order.ref and order.is_draft else [],
                    indicator="critical" if stop else None, stops_order=stop, withholds=not aih, drug=drug)]


def _severe_at(analyte: str, leukaemia: bool) -> float:
    """The severe cytopenia threshold of ``analyte``: CTCAE v5 grade 3; in leukaemia maintenance grade 4 for
    neutrophils and white cells (monitoring.toml [severe_cytopenia])."""
    spec = load().monitoring.severe_cytopenia
    if leukaemia and analyte == "neutrophils":
        return spec.leukaemia_neutrophils_below
    if leukaemia and analyte == "wbc":
        return spec.leukaemia_wbc_below
    return getattr(spec, f"{analyte}_below")


def restart_not_tolerated_findings(facts: ClinicalFacts, findings: list[Finding],
                                   ctx: CallContext | None = None) -> list[Finding]:
    """Round-20 H1: a thiopurine draft that renews or restarts therapy that was not a tolerated dose
    (``rules.common.dose_not_tolerated``: an order on hold with no reason or one that may name a toxicity, or a count
    since the therapy began below the BSR 2017 action limits or flagged low) gets a card of its own, whatever the
    genotype: the Imuran label (WARNINGS, Cytopenias: reduce the dose or temporarily withdraw when counts fall or
    stay low), BSR/BHPR 2017 (withhold, discuss with the specialist team) and CPIC 2018 (adjust to myelosuppression).
    Not the same dose again without the specialist's review; a reduced restart is the specialist's figure (no source
    gives a percentage: no dose limit, no one-click dose); CBC weekly after it, as after a start. One order, one
    answer: none where a card already says it (a TPMT/NUDT15 or allopurinol finding with ``not_tolerated``), nor in
    leukaemia maintenance (counts titrated, protocol restarts: mercaptopurine label 2.1)."""
    out: list[Finding] = []
    for order, drug in context_of(facts, ctx).thiopurine_orders:
        if not order.is_draft or any(f.order_ref == order.ref and f.values.get("not_tolerated") for f in findings):
            continue
        if _leukaemia(facts, order, drug, ctx):
            continue
        nt = dose_not_tolerated(facts, drug, order)
        from_drug = ""
        if nt is None:
            # round-21 H2: a switch to another thiopurine from a dose that was not tolerated is a restart after that
            # toxicity (azathioprine is converted to mercaptopurine: the two share it; Imuran label)
            for other in _switched_from(facts, order, drug):
                nt = dose_not_tolerated(facts, other, order)
                if nt is not None:
                    from_drug = other
                    break
        if nt is None:
            continue
        taken = [] if from_drug else [m.daily_dose.mg for m in taken_orders(facts, drug, order) if m.daily_dose]
        ordered = order.daily_dose.mg if order.daily_dose else None
        before = max(taken, default=None)
        reduced = ordered is not None and before is not None and ordered < before - 1e-6
        out.append(Finding("restart-not-tolerated", order.ref,
                           {"not_tolerated": nt, "ordered": ordered, "taken_mg": before, "reduced": reduced,
                            "held": bool(nt["held"]), "from_drug": from_drug,
                            "weekly_days": load().monitoring.cbc.early_phase_days},
                           indicator="info" if reduced else None, drug=drug))
    return out


def _switched_from(facts: ClinicalFacts, order, drug: str) -> list[str]:
    """The other thiopurines whose orders ``order`` names as the ones it replaces (priorPrescription / basedOn)."""
    if not order.replaces:
        return []
    named = {short_ref(r) for r in order.replaces}
    out: list[str] = []
    for m in (*facts.active_medications, *facts.renewed_medications, *facts.past_medications):
        tp = thiopurine_of(m)
        if tp and tp != drug and tp not in out and m.ref and short_ref(m.ref) in named:
            out.append(tp)
    return out


def _leukaemia(facts: ClinicalFacts, order, drug: str, ctx: CallContext | None = None) -> bool:
    """The order treats ALL or AML with this thiopurine (dosing.toml ``malignancy_drugs``); the indication is the
    call's (``CallContext.indication``: the Conditions are matched once per call, not once per rule)."""
    ind, _ = context_of(facts, ctx).indication(order)
    return drug in load().dosing.indications[ind].malignancy_drugs


def _is_start(facts: ClinicalFacts, order, drug: str) -> bool:
    """No order of the drug taken now and no earlier therapy the request shows (``rules.common.is_new_start``)."""
    return is_new_start(facts, order, drug)


def _aih_phase(facts: ClinicalFacts, order, drug: str, ctx: CallContext | None) -> str:
    """"" (not autoimmune hepatitis), "start" (AIH, a first thiopurine order: liver results are the disease),
    "unknown" (AIH, the medications could not be obtained), "on_treatment" (AIH, therapy continues)."""
    if context_of(facts, ctx).indication(order)[0] != "autoimmune_hepatitis":
        return ""
    if therapy_unknown(facts, order):
        return "unknown"
    return "start" if _is_start(facts, order, drug) else "on_treatment"


def aih_start_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    """Autoimmune hepatitis, a first thiopurine order: the bilirubin start condition (EASL 2015: start
    azathioprine when bilirubin is below 6 mg/dL, 100 umol/L). A high bilirubin is a warning (delay the
    start); no current bilirubin is said, with the test to order (a check not done is never dropped)."""
    orders = context_of(facts, ctx).thiopurine_orders
    if not orders or "labs" in facts.unavailable:
        return []
    spec = load().monitoring.aih
    out = []
    for order, drug in orders:
        if _aih_phase(facts, order, drug, ctx) != "start":
            continue
        m = latest(facts, "bilirubin", spec.bilirubin_max_age_days)
        readable = m is not None and m.unit == "umol/L"
        if readable and m is not None and not (m.value >= spec.bilirubin_below_umol or m.comparator in (">", ">=")):
            continue  # below the start threshold: the condition is met
        state = "high" if readable else "missing"
        values = {"state": state, "days": spec.bilirubin_max_age_days, **(_results([m], facts) if m else {"results": []})}
        if m is not None and not readable:
            values["as_sent"] = {"value": m.value, "unit": m.unit_text, "date": m.when.date().isoformat() if m.when else ""}
        actions: list[Action] = [] if state == "high" else [OrderTest(spec.bilirubin_loinc, spec.bilirubin_display,
                                                         label="order_bilirubin", reason=spec.reason)]
        out.append(Finding("aih-start-bilirubin", order.ref, values, actions,
                           indicator="warning" if state == "high" else None, drug=drug))
    return out


def _platelet_fall(facts: ClinicalFacts, spec: ThioguanineLiver) -> dict | None:
    """The newest platelet count if it is low (BSR threshold) or has fallen by the knowledge's fraction from
    the previous count within the window; else None."""
    window = facts.today - timedelta(days=spec.platelet_window_days)
    counts = [m for m in facts.labs.get("platelets", []) if m.when is not None and m.when.date() >= window]
    if not counts:
        return None
    newest = latest(facts, "platelets", spec.platelet_window_days)
    if newest is None:
        return None
    earlier = [m for m in counts if m.when is not None and newest.when is not None and m.when < newest.when]
    low = below(newest, load().monitoring.cytopenia.platelets_below)
    previous = max(earlier, key=lambda m: m.value) if earlier else None
    fell = previous is not None and not newest.comparator.startswith(">") and \
        newest.value <= previous.value * (1 - spec.platelet_fall_fraction) + 1e-9
    if not (low or fell):
        return None
    return {"value": newest.value, "date": newest.when.date().isoformat() if newest.when else "", "low": low,
            "previous": previous.value if previous else None,
            "previous_date": previous.when.date().isoformat() if previous and previous.when else ""}


@cache
def _thioguanine_liver_matchers() -> tuple[CodeMatcher, CodeMatcher]:
    """monitoring.toml [thioguanine_liver] code lists (toxicity, signs), read once."""
    spec = load().monitoring.thioguanine_liver
    return (CodeMatcher(frozenset(spec.toxicity_snomed), tuple(spec.toxicity_icd10)),
            CodeMatcher(frozenset(spec.sign_snomed), tuple(spec.sign_icd10)))


def _thioguanine_since(facts: ClinicalFacts, order, drug: str) -> date | None:
    """The earliest date the record shows this thioguanine therapy: the order's history (``prior_therapy.since``:
    earlier orders, dispenses, statements) and the active and past orders of the drug."""
    dates = [m.authored_on for m in (*facts.active_medications, *facts.past_medications)
             if drug in m.ingredients and m.authored_on]
    if order.prior_therapy is not None and order.prior_therapy.since is not None:
        dates.append(order.prior_therapy.since)
    return min(dates) if dates else None


def thioguanine_liver_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    """Thioguanine long term (Tabloid label, WARNINGS: not recommended for maintenance or similar long-term
    continuous treatment: liver toxicity, veno-occlusive disease, portal hypertension, nodular regenerative
    hyperplasia). One finding per thioguanine order (round-5 H3: the label's warning itself, not only its signs):
    a continued order (a renewal, or an active order / history of the drug; also when the medications could not be
    obtained) or a first order for an indication other than the leukaemias the label's courses treat (IBD: used
    as continuous therapy) is a warning; falling platelets, splenomegaly or ascites are added (assess); a diagnosis
    of veno-occlusive disease, portal hypertension or varices on record is critical (discontinue). A first order in
    AML or ALL giving its duration says nothing unless such a diagnosis is on record; a first ALL or AML order with
    no duration gets an info note (round-8 m5, round-9 M1: a course, not continuous use; monitoring.toml
    open_course_*)."""
    spec = load().monitoring.thioguanine_liver
    ctx = context_of(facts, ctx)
    out = []
    for order, drug in ctx.thiopurine_orders:
        if drug != "thioguanine":
            continue
        unknown = therapy_unknown(facts, order)
        start = _is_start(facts, order, drug) and not unknown
        malignancy = _leukaemia(facts, order, drug, ctx)
        toxic, sign = _thioguanine_liver_matchers()
        toxicity = [c.display or "?" for c, codes in ctx.condition_codes if toxic.read(codes)]
        ind, _how = ctx.indication(order)
        open_course = start and malignancy and not toxicity and ind in spec.open_course_indications
        if start and malignancy and not toxicity and (order.bounded or not open_course):
            # a first order in AML or ALL with its duration: a course (the label's indication), not maintenance
            continue
        # leukaemia itself lowers platelets: a first course's note names no platelets or signs (low noise)
        signs = [] if open_course else [c.display or "?" for c, codes in ctx.condition_codes if sign.read(codes)]
        platelets = None if open_course else _platelet_fall(facts, spec)
        since = None if start else _thioguanine_since(facts, order, drug)
        stop = bool(toxicity)
        values = {"toxicity": toxicity, "signs": signs, "platelets": platelets, "stop": stop,
                  # a first order in ALL / AML with no duration (round-8 m5, round-9 M1): an info note, the label does not recommend
                  # maintenance or long-term continuous use
                  "phase": "unknown" if unknown else "open_course" if open_course else "start" if start else "continuing",
                  "since": since.isoformat() if since else "",
                  "months": (facts.today - since).days * 12 // 365 if since else None,
                  "indication": "" if ind == "unknown" else load().dosing.indications[ind].name,
                  "malignancy": malignancy}
        out.append(Finding("thioguanine-open-course" if open_course else "thioguanine-liver-toxicity", order.ref, values,
                           [CancelOrder(order.ref, drug)] if stop and order.ref and order.is_draft else [],
                           indicator="critical" if stop else None, stops_order=stop, drug=drug,
                           sources=(spec.open_course_source,) if open_course and spec.open_course_source else ()))
    return out


def tpmt_activity_status(facts: ClinicalFacts, ctx: CallContext | None = None) -> tuple[str | None, dict]:
    """A CPIC-like phenotype from the newest judgeable TPMT enzyme activity (``rules.tpmt_activity``: the most
    severe of the unit's cut-offs, the laboratory's range and its interpretation): (phenotype or "High",
    evidence values), or (None, {}) when there is none (an unjudgeable result is named by ``rules.pgx``)."""
    r = context_of(facts, ctx).latest_judged
    if r is None:
        return None, {}
    return r.reading, r.values()


def tpmt_high_findings(facts: ClinicalFacts, ctx: CallContext | None = None) -> list[Finding]:
    ctx = context_of(facts, ctx)
    orders = ctx.thiopurine_orders
    if not orders:
        return []
    status, evidence = tpmt_activity_status(facts, ctx)
    if status != "High":
        return []
    return [Finding("tpmt-activity-high", orders[0][0].ref, {"activity": evidence}, drug=orders[0][1])]


__all__ = ["absent_count_gaps", "cbc_state", "cbc_due_findings", "lab_findings", "neutrophil_count", "neutrophil_gap", "tpmt_activity_status", "tpmt_high_findings", "latest", "reported",
           "aih_start_findings", "thioguanine_liver_findings"]
