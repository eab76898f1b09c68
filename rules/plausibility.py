"""Laboratory values no patient can have (issue 18: plausibility at the boundary).

``monitoring.toml`` ``[plausible]`` names, per analyte, the range outside which a value is a
recording error (negative counts, a white cell count of 10⁹ ×10⁹/L). Such a value is taken out of the
facts before any rule reads it, and a data gap quotes it, so the data-incomplete card says which result
was not used (never read as normal, never as severe). The mappers read values as sent; meaning is
decided here. Height and weight have their own limits in ``dosing.toml`` (``rules/common.py``).

Results dated after the evaluation day (round-14 H2, ``future_dated``) are set aside here too, for the same
reason: a date no result already taken can have is a recording error, not a clinical finding.
"""
from __future__ import annotations

import msgspec

from dataclasses import replace
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from operator import attrgetter
from typing import Any

from fhir_mappers.facts import AbsentResult, ClinicalFacts, DataGap, Measurement, ResultText
from fhir_mappers.observations import ANALYTE_LABELS

from .knowledge_base import load


def implausible_labs(facts: ClinicalFacts) -> ClinicalFacts:
    """``facts`` without laboratory values outside ``[plausible]``, each named in a data gap."""
    plausible = load().monitoring.plausible
    limits = plausible.limits() if plausible is not None else {}
    gaps: list[DataGap] = []
    labs = {}
    for analyte, values in facts.labs.items():
        limit = limits.get(analyte)
        if limit is None or all(limit[0] <= m.value <= limit[1] for m in values):
            labs[analyte] = values
            continue
        low, high = limit
        kept = []
        for m in values:
            if low <= m.value <= high:
                kept.append(m)
            else:
                when = f" ({m.when.date().isoformat()})" if m.when else ""
                gaps.append(DataGap(f"{ANALYTE_LABELS.get(analyte, analyte)}{when}",
                                    f"{m.value:g} {m.unit} is not a plausible value (outside {low:g}-{high:g} {m.unit}): "
                                    "treated as a recording error", analyte))
        labs[analyte] = kept
    if not gaps:
        return facts
    return replace(facts, labs=labs, gaps=[*facts.gaps, *gaps])


# ------------------------------------------------------------------ results dated after the evaluation day
# Round-14 H2 / m1. A result dated after the evaluation day cannot be a result already taken: a wrong year, a
# scheduled order's date, a time-zone bug. It is data quality, decided here (the rules' layer, on the rules' own
# ``facts.today``: the CLI's --today, else the service's date), not in a mapper: the mappers read dates as sent.
# Tolerance (clock skew, time zones): a result counts as after today only when the moment it names is later than
# the end of the evaluation day in the latest time zone on Earth (UTC-12, "anywhere on Earth"): at or after 12:00
# UTC on the day after today. A date with no time is read, as everywhere in the reader, as 00:00 UTC of that day:
# a date-only result dated tomorrow is kept (it is already tomorrow in time zones east of the service's), one
# dated the day after tomorrow or later is set aside.
FUTURE_NOTE = "dated after today"  # GeneResult.note of a gene result set aside (rules.pgx names it so)
_LATEST_ZONE_END = time(12, 0, tzinfo=timezone.utc)
# what a set-aside result is, by analyte (its category names it on the data-incomplete card; the key groups it)
_CBC = frozenset({"wbc", "neutrophils", "neutrophils_percent", "lymphocytes", "platelets", "hemoglobin", "mcv"})
_LIVER = frozenset({"alt", "ast", "alp", "bilirubin", "albumin"})
_RENAL = frozenset({"egfr", "creatinine"})
# categories whose loss leaves a safety check undone (the data-incomplete card is then a warning)
SERIOUS_FUTURE = frozenset({"future_cbc", "future_liver", "future_renal", "future_tpmt_activity", "future_metabolites",
                            "future_genotype", "future_weight", "future_pregnancy", "future_immunization"})


def future_cutoff(today: date) -> datetime:
    """The first moment after the evaluation day everywhere on Earth: 12:00 UTC on the day after ``today``."""
    return datetime.combine(today + timedelta(days=1), _LATEST_ZONE_END)


def dated_after(when: datetime | date | None, today: date) -> bool:
    """``when`` is after the evaluation day (with the time-zone tolerance above); an undated result is not."""
    if when is None:
        return False
    if not isinstance(when, datetime):
        when = datetime.combine(when, time(0, 0, tzinfo=timezone.utc))
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when >= future_cutoff(today)


def date_as_sent(when: datetime | date) -> str:
    """The date of a result as sent: the day for a date (read as 00:00 UTC), else the date and time with its offset."""
    if not isinstance(when, datetime):
        return when.isoformat()
    if when.utcoffset() == timedelta(0) and (when.hour, when.minute, when.second) == (0, 0, 0):
        return when.date().isoformat()
    return when.isoformat(timespec="minutes")


def _lab_category(analyte: str) -> tuple[str, str]:
    if analyte in _CBC:
        return "future_cbc", "CBC"
    if analyte in _LIVER:
        return "future_liver", "liver tests"
    if analyte in _RENAL:
        return "future_renal", "eGFR/creatinine"
    if analyte == "tpmt_activity":
        return "future_tpmt_activity", "TPMT activity"
    if analyte in ("tgn", "mmp"):
        return "future_metabolites", "thiopurine metabolites (6-TGN, 6-MMP)"
    if analyte == "hcg":
        return "future_pregnancy", "pregnancy test (hCG)"
    return f"future_{analyte}", ANALYTE_LABELS.get(analyte, analyte)


def _quote(value: str, limit: int = 40) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _measure_text(m: Measurement) -> str:
    # round-17 H1: the laboratory's flags are quoted as sent ("[LL]")
    flags = f" [{', '.join(m.flags or (m.interpretation,))}]" if m.flags or m.interpretation else ""
    if m.sent_value is not None and m.unit_text:
        return f"{ANALYTE_LABELS.get(m.analyte, m.analyte)} {m.comparator}{m.sent_value:g} {_quote(m.unit_text, 20)}{flags}"
    return f"{ANALYTE_LABELS.get(m.analyte, m.analyte)} {m.comparator}{m.value:g} {m.unit}".rstrip() + flags


def future_dated(facts: ClinicalFacts) -> ClinicalFacts:
    """``facts`` without the results dated after the evaluation day (``dated_after``): lab values, result texts,
    absent results, weights, heights, status observations (pregnancy, breastfeeding) and vaccines given. Each is
    named in a data gap, one per kind of result and date as sent ("CBC dated 2027-03-01, after today"), quoting the
    values as sent; the rules then run as if it were absent (a CBC dated next year never makes the CBC up to date).
    A TPMT / NUDT15 result so dated is kept as an unreadable result (note ``FUTURE_NOTE``): never a phenotype, and
    never "no result on record" (rules.pgx names it), and named in a data gap too."""
    today = facts.today
    cutoff = future_cutoff(today)

    def after(when: datetime | date) -> bool:  # ``dated_after``, with the cut-off found once per call
        if type(when) is datetime and when.tzinfo is not None:  # the reader's dates: aware datetimes
            # a local date before today is before the cut-off whatever its UTC offset (under 24 hours): the
            # usual case is decided on the date alone (comparing two aware times asks each for its offset by name)
            return when.date() >= today and when >= cutoff
        return dated_after(when, today)

    found: dict[tuple[str, str, str], list[str]] = {}  # (key, what, date as sent) -> values as sent

    def aside(key: str, what: str, when: datetime | date, text: str, ref: str) -> None:
        found.setdefault((key, what, date_as_sent(when)), []).append(text + (f" ({ref})" if ref else ""))

    def keep_measures(values: list[Measurement]) -> list[Measurement]:
        kept = []
        for m in values:
            if m.when is not None and after(m.when):
                key, what = _lab_category(m.analyte)
                aside(key, what, m.when, _measure_text(m), m.source_ref)
            else:
                kept.append(m)
        return kept

    changes: dict = {}
    labs = {a: keep_measures(v) for a, v in facts.labs.items()}
    if any(len(labs[a]) != len(v) for a, v in facts.labs.items()):
        changes["labs"] = {a: v for a, v in labs.items() if v}
    texts: dict[str, list[ResultText]] = {}
    for a, rts in facts.result_texts.items():
        for t in rts:
            if t.when is not None and after(t.when):
                key, what = _lab_category(a)
                flags = f" [{', '.join(t.flags or (t.interpretation,))}]" if t.flags or t.interpretation else ""
                aside(key, what, t.when, f"{ANALYTE_LABELS.get(a, a)} '{_quote(t.value_text or t.text)}'{flags}",
                      t.source_ref)
            else:
                texts.setdefault(a, []).append(t)
    if sum(map(len, texts.values())) != sum(map(len, facts.result_texts.values())):
        changes["result_texts"] = texts
    absent: dict[str, list[AbsentResult]] = {}
    for a, ars in facts.absent_results.items():
        for r in ars:
            if r.when is not None and after(r.when):
                key, what = _lab_category(a)
                how = f"no value: {r.reason}" if r.reason else f"status {r.status}"
                aside(key, what, r.when, f"{ANALYTE_LABELS.get(a, a)} ({how})", r.source_ref)
            else:
                absent.setdefault(a, []).append(r)
    if sum(map(len, absent.values())) != sum(map(len, facts.absent_results.values())):
        changes["absent_results"] = absent
    def keep(items: list, when_of: Callable[[Any], datetime | date | None], set_aside: Callable[[Any], None],
             name: str) -> None:
        """``items`` without those dated after today (each handed to ``set_aside``), as ``changes[name]``."""
        kept = []
        for x in items:
            when = when_of(x)
            if when is not None and after(when):
                set_aside(x)
            else:
                kept.append(x)
        if len(kept) != len(items):
            changes[name] = kept

    def size_aside(key: str, what: str) -> Callable[[Any], None]:
        def set_aside(m: Any) -> None:
            aside(key, what, m.when, f"{m.sent_value if m.sent_value is not None else m.value:g} "
                                     f"{_quote(m.unit_text or m.unit, 20)}", m.source_ref)
        return set_aside

    keep(facts.weights, _when_of, size_aside("future_weight", "body weight"), "weights")
    keep(facts.heights, _when_of, size_aside("future_height", "height"), "heights")

    def status_aside(o: Any) -> None:
        what = {"82810-3": "pregnancy status", "63895-7": "breastfeeding status"}.get(o.loinc, f"status {o.loinc}")
        value = o.text or ("yes" if o.flag else "no" if o.flag is False else ", ".join(sorted(o.values)))
        aside("future_pregnancy", what, o.when, f"'{_quote(value)}'", o.source_ref)

    keep(facts.status_observations, _when_of, status_aside, "status_observations")
    keep(facts.immunizations, attrgetter("authored_on"),
         lambda v: aside("future_immunization", "vaccine given", v.authored_on, f"'{_quote(v.display)}'", v.ref),
         "immunizations")
    genes = []
    for g in facts.gene_results:
        if g.when is not None and after(g.when) and g.note != FUTURE_NOTE:
            aside("future_genotype", f"{g.gene} result", g.when, f"'{_quote(g.value)}'", g.source_ref)
            genes.append(msgspec.structs.replace(g, kind="unreadable", note=FUTURE_NOTE))
        else:
            genes.append(g)
    if found:
        changes["gene_results"] = genes
    if not found:
        return facts
    gaps = [DataGap(f"{what} dated {when}, after today", _future_why(values, today), key, sent=when)
            for (key, what, when), values in found.items()]
    return replace(facts, **changes, gaps=[*facts.gaps, *gaps])


_when_of = attrgetter("when")


# how a set-aside result's gap ends; one that a finding raised (rules.future) is worded otherwise (round-19 m5)
FUTURE_WHY_TAIL = "; set aside, the checks ran without it"


def _future_why(values: list[str], today: date) -> str:
    shown = "; ".join(values[:6]) + (f"; and {len(values) - 6} more" if len(values) > 6 else "")
    return (f"{shown}: dated after today ({today.isoformat()}), so not a result already taken (a wrong year, a "
            f"scheduled date, a time-zone error?){FUTURE_WHY_TAIL}")
