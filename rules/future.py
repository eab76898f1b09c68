"""Results dated after today can raise a concern, never clear one (round-17 H1).

``rules.plausibility.future_dated`` sets such results aside (round-14 H2): they never make a check current (a CBC
dated next year never satisfies "CBC due") and are never read as normal. But the value itself is usually real (a
wrong year, a time-zone error, a mis-keyed collection date): a neutrophil count of 0.3 flagged ``LL`` dated next
year is a neutrophil count of 0.3. As the docs say of old data, such data "can raise a concern but never clear
one": the rules that can only RAISE a concern from a result (``RAISING``: a cytopenia, raised liver tests, high
metabolites, a positive pregnancy test, a live vaccine given, a low eGFR) are run again on the set-aside results
alone (``future_only``), and each finding they give that the current data did not give already is kept, at its own
severity, marked ``values["future_dated"]`` (the dates as sent and the results quoted with the laboratory's flags):
the card says the result is dated after today and must be verified (catalogue.toml [meta] future_prefix and
future_line). No rule that could clear or lower a concern (monitoring due, dose, PGx) reads these results.
"""
from __future__ import annotations

from dataclasses import replace

import msgspec
from datetime import date, datetime

from fhir_mappers.facts import ClinicalFacts, Measurement, ResultText
from fhir_mappers.fhirjson import clip

from .context import CallContext
from .findings import Finding
from .interactions import vaccine_timing_findings
from .monitoring import lab_findings
from .plausibility import date_as_sent, dated_after, implausible_labs
from .populations import population_findings

# the findings a set-aside result may raise: each rests on a result that shows a concern, never on the absence of one
ACTIVITY = "tpmt_activity"
RAISING = frozenset({"cytopenia-severe", "cytopenia", "liver-tests", "metabolites-high", "pregnancy",
                     "breastfeeding", "thiopurine-after-live-vaccine", "renal-impairment"})


def future_only(facts: ClinicalFacts) -> ClinicalFacts | None:
    """``facts`` (before ``future_dated``) with only the results dated after today among its labs, result texts,
    status observations and vaccines given (everything else as sent): None when there are none."""
    today = facts.today

    def after(when) -> bool:
        return dated_after(when, today)

    labs = {a: ms_ for a, ms in facts.labs.items() if (ms_ := [m for m in ms if after(m.when)])}
    texts = {a: rs_ for a, rs in facts.result_texts.items() if (rs_ := [r for r in rs if after(r.when)])}
    status = [o for o in facts.status_observations if after(o.when)]
    imms = [v for v in facts.immunizations if after(v.authored_on)]
    if not (labs or texts or status or imms):
        return None
    return replace(facts, labs=labs, result_texts=texts, absent_results={}, status_observations=status,
                   immunizations=imms, gaps=[])


def _quoted(r: dict) -> str:
    """A result a card rests on, as sent, with the laboratory's flags ("neutrophils 0.3 [LL]")."""
    value = r.get("as_sent") if r.get("value") is None else f"{r.get('comparator') or ''}{r['value']:g}"
    flag = r.get("flag_code") or ""
    return f"{r.get('analyte', '')} {value}" + (f" [{flag}]" if flag else "")


def _flags(facts: ClinicalFacts) -> list[str]:
    """Every set-aside result flagged by the laboratory, quoted with its flags (the card quotes them)."""
    out = []
    for ms in facts.labs.values():
        for m in ms:
            if isinstance(m, Measurement) and (m.flags or m.interpretation):
                out.append(f"{m.analyte} {m.comparator}{m.sent_value if m.sent_value is not None else m.value:g} "
                           f"[{', '.join(m.flags or (m.interpretation,))}]")
    for rs in facts.result_texts.values():
        for r in rs:
            if isinstance(r, ResultText) and (r.flags or r.interpretation):
                out.append(f"{r.analyte} '{clip(r.value_text or r.text, 40)}' [{', '.join(r.flags or (r.interpretation,))}]")
    return out


def _dates(facts: ClinicalFacts) -> list[str]:
    whens: list[datetime | date | None] = [m.when for ms in facts.labs.values() for m in ms]
    whens += [r.when for rs in facts.result_texts.values() for r in rs]
    whens += [o.when for o in facts.status_observations] + [v.authored_on for v in facts.immunizations]
    return sorted({date_as_sent(w) for w in whens if w is not None})


def _activity_restored(sent: ClinicalFacts, dated: ClinicalFacts) -> ClinicalFacts | None:
    """``dated`` (the facts the rules ran on) with the TPMT enzyme activities dated after today of ``sent`` put back
    (``ACTIVITY``): None when there are none."""
    labs = [m for m in sent.labs.get(ACTIVITY, []) if dated_after(m.when, sent.today)]
    texts = [r for r in sent.result_texts.get(ACTIVITY, []) if dated_after(r.when, sent.today)]
    if not (labs or texts):
        return None
    newest_first = lambda xs: sorted(xs, key=lambda x: x.when.timestamp() if x.when else 0.0, reverse=True)  # noqa: E731
    return replace(dated, labs={**dated.labs, ACTIVITY: newest_first([*labs, *dated.labs.get(ACTIVITY, [])])},
                   result_texts={**dated.result_texts,
                                 ACTIVITY: newest_first([*texts, *dated.result_texts.get(ACTIVITY, [])])})


def future_activity_raised(sent: ClinicalFacts, dated: ClinicalFacts, findings: list[Finding], *,
                           weight_max_age_days: int, guideline: str) -> list[Finding]:
    """A TPMT enzyme activity dated after today that reads poor metabolizer (deficient) raises the poor-metabolizer
    card (``rules.pgx``) when the current data does not already give it for that order: the PGx rules run again
    with that activity put back, and only a ``pgx-poor-metabolizer`` finding they give is kept, marked
    ``values["future_dated"]`` (round-17 H1; a genotype so dated: rules.pgx, round-16 M3 and round-17 M1).
    Round-19 M5 (one class with a genotype or phenotype so dated, rules.pgx): one that reads intermediate where the
    current TPMT results read better (normal), or where there is no current TPMT result (round-20 M1), raises the
    intermediate-metabolizer finding (its band: the worse reading wins until verified) when no TPMT/NUDT15 finding of the order already sets a band; the card names the
    current results it conflicts with. Never a normal reading, nor one no worse than the current results: a
    set-aside result raises, it never clears."""
    restored = _activity_restored(sent, dated)
    if restored is None:
        return []
    from .pgx import RANK, current_conflicts, pgx_findings, statuses  # rules.pgx imports rules.plausibility

    have = {(f.order_ref, f.rule_id) for f in findings}
    now, then = statuses(dated)["TPMT"], statuses(restored)["TPMT"]
    # round-20 M1: no current TPMT result at all counts as "better" too (nothing current clears the set-aside reading)
    worse = then.state == "known" and (now.state != "known" or RANK.get(then.phenotype, 0) > RANK.get(now.phenotype, 0))
    conflicts = current_conflicts({"TPMT": now}, [{"gene": "TPMT", "reads": then.phenotype}]) if worse else []
    banded = {f.order_ref for f in findings if f.rule_id in _BANDED or f.withholds}
    out = []
    for f in pgx_findings(restored, weight_max_age_days=weight_max_age_days, guideline=guideline):
        if (f.order_ref, f.rule_id) in have:
            continue
        if f.rule_id != "pgx-poor-metabolizer" and not (
                worse and f.rule_id in _IM_RULES and then.is_intermediate and f.order_ref not in banded):
            continue
        aside = [m for m in restored.labs.get(ACTIVITY, []) if dated_after(m.when, sent.today)]
        texts = [r for r in restored.result_texts.get(ACTIVITY, []) if dated_after(r.when, sent.today)]
        results = [f"TPMT activity {m.comparator}{m.sent_value if m.sent_value is not None else m.value:g} "
                   f"{m.unit_text or m.unit}" + (f" [{', '.join(m.flags or (m.interpretation,))}]"
                                                if m.flags or m.interpretation else "") for m in aside]
        results += [f"TPMT activity '{clip(r.value_text or r.text, 40)}'" for r in texts]
        whens: list[datetime | None] = [m.when for m in aside] + [r.when for r in texts]
        dates = sorted({date_as_sent(w) for w in whens if w is not None})
        values = {**f.values, "future_dated": {"dates": dates, "results": results, "flags": [],
                                               **({"conflicts": conflicts} if conflicts else {})}}
        # an intermediate reading to verify is never an info note (rules.pgx ``_future_reduce``)
        out.append(msgspec.structs.replace(f, values=values, indicator="warning" if f.rule_id in _IM_RULES
                                           else f.indicator))
    return out


# round-19 m5: the data-incomplete gap (its key: rules.plausibility.future_dated) of the results a raised finding rests on
_GAP_KEYS = {"cytopenia-severe": "future_cbc", "cytopenia": "future_cbc", "liver-tests": "future_liver",
             "metabolites-high": "future_metabolites", "pregnancy": "future_pregnancy",
             "breastfeeding": "future_pregnancy", "thiopurine-after-live-vaccine": "future_immunization",
             "renal-impairment": "future_renal"}


def raised_gaps(findings: list[Finding]) -> frozenset[tuple[str, str]]:
    """(gap key, date as sent) of each set-aside result a finding raised (``values["future_dated"]``): the
    data-incomplete card says such a result was used only to raise that concern, never "not used ... the checks ran
    without it" beside the card it raised (round-19 m5; rules.gaps)."""
    out: set[tuple[str, str]] = set()
    for f in findings:
        fd = f.values.get("future_dated")
        if not isinstance(fd, dict):
            continue
        if f.rule_id.startswith("pgx-"):
            activity = any(str(r).startswith("TPMT activity") for r in fd.get("results") or ())
            key: str | None = "future_tpmt_activity" if activity else "future_genotype"
        else:
            key = _GAP_KEYS.get(f.rule_id)
        if key is None:
            continue
        rested = [str(r["date"]) for r in f.values.get("results") or () if isinstance(r, dict) and r.get("date")]
        out |= {(key, d) for d in rested or fd.get("dates") or ()}
    return frozenset(out)


# round-19 M5: the intermediate-metabolizer findings (rules.pgx ``_reduce_dose``) and those that set a TPMT/NUDT15
# band or stop the order: an order that has one already is not given a second band from a set-aside activity
_IM_RULES = frozenset({"pgx-reduce-dose", "pgx-dose-in-reduced-range", "pgx-im-established-dose",
                       "pgx-im-malignancy-normal-start"})
_BANDED = _IM_RULES | {"pgx-poor-metabolizer"}


def future_raised(facts: ClinicalFacts, findings: list[Finding]) -> list[Finding]:
    """The findings (``RAISING``) the results dated after today in ``facts`` (before ``future_dated``) would raise
    that ``findings`` (from the current data) do not already give for that order: each marked
    ``values["future_dated"]`` ({"dates", "flags"}), its card saying the result is dated after today: verify."""
    aside = future_only(facts)
    if aside is None:
        return []
    aside = implausible_labs(aside)  # a value no patient can have raises nothing, whatever its date
    ctx = CallContext(aside)
    raised = lab_findings(aside, ctx) + population_findings(aside, ctx) + vaccine_timing_findings(aside)
    have = {(f.order_ref, f.rule_id) for f in findings}
    if any(f.rule_id == "cytopenia-severe" for f in findings):
        have |= {(f.order_ref, "cytopenia") for f in findings if f.rule_id == "cytopenia-severe"}
    dates, flags = _dates(aside), _flags(aside)
    out = []
    for f in raised:
        if f.rule_id not in RAISING or (f.order_ref, f.rule_id) in have:
            continue
        values = dict(f.values)
        if f.rule_id == "thiopurine-after-live-vaccine":
            values["days_since"] = 0  # given "after today": not days ago; the card says the date as sent
        rested = [r for r in values.get("results") or () if isinstance(r, dict)]
        results = [_quoted(r) for r in rested]
        quoted = {r.get("analyte") for r in rested}
        values["future_dated"] = {"dates": dates, "results": results,
                                  "flags": [x for x in flags if x.split(" ")[0] not in quoted]}
        out.append(Finding(f.rule_id, f.order_ref, values, f.actions, f.indicator, f.sources, f.dose, f.stops_order,
                           f.withholds, f.drug))
    return out


def _ahead(values: dict, today: str) -> tuple[list[str], list[str]]:
    """(dates, results quoted) of what a finding's values rest on that is dated after ``today`` (an ISO date): the
    results it quotes (``results``: the monitoring rules' values), a pregnancy test (``test``), the eGFR or
    creatinine of the renal card (``date``, ``computed``). Dates are the local dates as sent."""
    dates: list[str] = []
    results: list[str] = []
    for r in values.get("results") or ():
        if isinstance(r, dict) and isinstance(when := r.get("date"), str) and when[:10] > today:
            dates.append(when)
            results.append(_quoted(r))
    for key in ("test", "computed"):
        item = values.get(key)
        if isinstance(item, dict) and isinstance(when := item.get("date"), str) and when[:10] > today:
            dates.append(when)
    when = values.get("date")
    if isinstance(when, str) and when[:10] > today:
        dates.append(when)
    return sorted(set(dates)), results


def ahead_marked(facts: ClinicalFacts, findings: list[Finding]) -> list[Finding]:
    """Round-19: a date-only result dated tomorrow is kept as a current result (``rules.plausibility``: the time-zone
    tolerance; it is already tomorrow east of the service), so ``future_raised`` never sees it, and a concern it
    raises (``RAISING``: a low neutrophil count dated tomorrow) went out unmarked while the same count dated the day
    after was marked. Every ``RAISING`` finding that rests on a result dated after today's date now carries the same
    ``values["future_dated"]`` marker ("DATED ... (AFTER TODAY), verify:"), with ``kept`` (it was read as current:
    the card says so rather than "not counted as current"). Severity and actions are unchanged."""
    today = facts.today.isoformat()
    out = []
    for f in findings:
        if f.rule_id in RAISING and not f.values.get("future_dated"):
            dates, results = _ahead(f.values, today)
            if dates:
                f = msgspec.structs.replace(f, values={**f.values, "future_dated": {
                    "dates": dates, "results": results, "flags": [], "kept": True}})
        out.append(f)
    return out
