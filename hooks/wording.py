"""The catalogue's wording (``rules/knowledge/catalogue.toml``), beside the cards that carry it.

Every clinician-facing sentence lives in the catalogue: per rule, Jinja2 templates for the summary
(alternatives, longest first: the first that fits 140 characters is used; words are chosen, never cut),
the detail and the suggestion labels; and the shared tables: ``[groups]`` (what a data group is called
and which check it serves: the one table of group labels), ``[fhir_outcomes]``, ``[meta]`` macros, the
dose-plan line and the merged summary. Rule metadata (title, indicator, priority, sources) is
``rules/catalogue.py``.

Templates are compiled once (one per distinct source) and rendered with Jinja2's public API
(``Template.render``); the start-up check (``check``) renders every one with its entry's sample values
(strict: a missing value or knowledge path is an error).
"""
from __future__ import annotations

import msgspec

import logging
import marshal
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import jinja2.meta

from rules.catalogue import FILE_LABEL, catalogue, guideline_source, indicator_of, merged_spec
from rules.findings import SUMMARY_MAX, Finding
from rules.knowledge_base import load
from rules.knowledge_schema import KnowledgeError

_WS = re.compile(r"[ \t]+")
log = logging.getLogger("aza_cds.catalogue")



class PlainText:
    """A catalogue template that is plain text (no Jinja2 syntax): what it renders to, whatever the values,
    rendered once at load by Jinja2 itself (``_compiled``). ``render`` as a Template's, for callers that render."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, *args: Any, **kwargs: Any) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"PlainText({self.text!r})"


Text = jinja2.Template | PlainText  # a catalogue template as compiled at load


def fmt_mg(mg: Any) -> str:
    mg = float(mg)
    if abs(mg - round(mg)) < 1e-6:
        return f"{mg:.0f}"
    return f"{mg:.2f}".rstrip("0").rstrip(".") if mg < 10 else f"{mg:.1f}".rstrip("0").rstrip(".")


_WHOLE_MG_FROM = 5.0  # range bounds at or above this are shown in whole mg (round-5 m1)
_HALF_TABLET_MG = 12.5  # half the smallest thiopurine tablet (25 mg): an orderable dose kept when it is a bound


def _bound_low(lo: float) -> float:
    up = math.ceil(lo - 1e-6)
    half = math.ceil(lo / _HALF_TABLET_MG - 1e-6) * _HALF_TABLET_MG
    return half if half < up else up


def _bound_high(hi: float) -> float:
    down = math.floor(hi + 1e-6)
    half = math.floor(hi / _HALF_TABLET_MG + 1e-6) * _HALF_TABLET_MG
    return half if half > down else down


def mg_span(lo: Any, hi: Any) -> str:
    """A calculated dose range for display, "lo-hi" (round-5 m1: no "43.2-72" that no tablet gives): bounds of
    5 mg or more in whole mg, rounded inward (the low bound up, the high bound down), so that an order reads
    inside the printed range exactly when it is inside the calculated one (26 mg is below 26.25-35, and below
    "27-35"); a half-tablet dose (a multiple of 12.5 mg) that is itself inside the range stays a bound (37.5-50,
    not 38-50, when 37.5 mg is within). The advised dose is not changed: only its printing. Bounds too close to
    round inward (26.2-26.8), and small doses, are printed as computed."""
    lo_f, hi_f = float(lo), float(hi)
    if lo_f >= _WHOLE_MG_FROM:
        lo_r, hi_r = _bound_low(lo_f), _bound_high(hi_f)
        if lo_r < hi_r:
            return f"{fmt_mg(lo_r)}-{fmt_mg(hi_r)}"
    return f"{fmt_mg(lo_f)}-{fmt_mg(hi_f)}"


def mg_upto(hi: Any) -> str:
    """The high bound of a range without a low one ("up to 72"), rounded down as in ``mg_span``."""
    hi_f = float(hi)
    return fmt_mg(_bound_high(hi_f)) if hi_f >= _WHOLE_MG_FROM else fmt_mg(hi_f)


def _mgkg(x: Any) -> str:
    return f"{float(x):.1f}"


def _pct(x: Any) -> str:
    return f"{float(x) * 100:.0f} %"


def _num(x: Any) -> str:
    return f"{float(x):g}"


def _cap(s: Any) -> str:
    s = str(s)
    return s[:1].upper() + s[1:]


def _article(word: Any) -> str:
    """Round-17 m6: the word with its indefinite article ("an azathioprine", "a mercaptopurine"): "an" before a
    vowel letter (the drug names read here begin with their vowel sound)."""
    w = str(word)
    return ("an " if w[:1].lower() in "aeiou" and w else "a ") + w


def _and(items: Any) -> str:
    items = list(dict.fromkeys(str(i) for i in items))  # each once (round-8 m4)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


@dataclass(frozen=True)
class Entry:
    """A rule's templates."""

    rule_id: str
    title: str
    summary: tuple[Text, ...]
    detail: Text
    labels: Mapping[str, Text]
    sample: Mapping[str, Any]


@dataclass(frozen=True)
class Wording:
    entries: Mapping[str, Entry]
    plan_line: Text
    plan_line_names: tuple[str, ...]  # the names plan_line looks up in its context (p...), found by Jinja2
    merged_summary: tuple[Text, ...]
    conflict_line: Text  # results of one date and time that disagree
    preliminary_prefix: str
    future_prefix: Text  # round-17 H1: a finding raised by a result dated after today (rules.future): summary start
    future_line: Text  # ... and its detail line (dates, results and the laboratory's flags as sent; verify)
    sample_plan: Mapping[str, Any]
    sample_action: Mapping[str, Any]
    macros: Any  # the [meta] macros module (s.* in templates)
    template_globals: Mapping[str, Any]  # k, s and Jinja2's own: in every context (_run renders it as it is)
    groups: Mapping[str, Mapping[str, str]]  # data group -> {what, check}
    fhir_outcomes: Mapping[str, str]

    def __getitem__(self, rule_id: str) -> Entry:
        return self.entries[rule_id]


_DICT_ATTRIBUTES = frozenset(dir(dict))  # what ``getattr(d, name)`` finds on a plain dict: its methods, nothing else


class CatalogueEnvironment(jinja2.Environment):
    """The catalogue's Jinja2 environment. The templates read the findings' values, plain dicts, as attributes
    (``p.regimen``). ``Environment.getattr`` (public, the hook compiled templates call for ``x.name``; Jinja2's own
    ``SandboxedEnvironment`` overrides it too) tries the attribute first and falls back to the item, so each such
    look-up on a dict raised and caught an AttributeError (about 120 per card answer). A plain dict has no
    attribute but its type's (``_DICT_ATTRIBUTES``), so the answer is known without trying: the dict's method for
    those names (``v.get``), else its item, else undefined, exactly as the base class answers. Anything that is
    not a plain dict is left to the base class."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


@jinja2.pass_eval_context
def _join_once(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    """Jinja2's ``join``, naming each item once: a list joined into card text never repeats an item (round-8 m4:
    "Non-live alternative: inactivated influenza vaccine, inactivated influenza vaccine")."""
    if attribute is None and not isinstance(value, (str, jinja2.Undefined)) and hasattr(value, "__iter__"):
        value = list(value)  # a list, tuple or a filter's generator (map, select): read once, here
        try:
            value = list(dict.fromkeys(value))
        except TypeError:  # unhashable items: as given
            pass
    return jinja2.filters.do_join(eval_ctx, value, d, attribute)


def _env(raw: Mapping[str, Any]) -> jinja2.Environment:
    env = CatalogueEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                               trim_blocks=True, lstrip_blocks=True)
    groups = raw.get("groups", {})
    outcomes = raw.get("fhir_outcomes", {})
    reasons = {rid: r.dose_reason for rid, r in catalogue().entries.items()}
    env.filters.update(join=_join_once, mg=fmt_mg, mg_span=mg_span, mg_upto=mg_upto, mgkg=_mgkg, pct=_pct, num=_num, cap=_cap, and_list=_and, article=_article,
                       reason=lambda rid: reasons.get(rid, rid),
                       group=lambda key: groups.get(key, {}).get("what", key),
                       group_check=lambda key: groups.get(key, {}).get("check", "it"),
                       fhir_outcome=lambda c: outcomes.get(c, "the EHR's FHIR server could not be read"),
                       tick=lambda x: f"`{x}`")
    env.globals["k"] = load()  # the knowledge, typed: k.dosing.general.new_start_mg_per_kg
    env.globals["s"] = env.from_string(raw["meta"].get("macros", "")).module
    return env


def _compiled(env: jinja2.Environment, source: str) -> Text:
    """A template's compiled form; a plain text (every Jinja2 delimiter starts with ``{``) is rendered once, here,
    by Jinja2 itself (its newline handling included), and kept as the text it renders to."""
    t = env.from_string(source)
    return PlainText(t.render()) if "{" not in source else t


@cache
def _catalogue_env() -> jinja2.Environment:
    """The one environment every catalogue template (rules' wording and [phrases]) is compiled in: the [meta]
    macros are compiled once, not once per phrase."""
    return _env(catalogue().raw)


@cache
def wording() -> Wording:
    raw = catalogue().raw
    meta = raw["meta"]
    env = _catalogue_env()
    compiled: dict[str, Text] = {}

    def compile_(source: str, where: str) -> Text:
        # one compiled template per distinct source: the shared labels repeat in every entry
        t = compiled.get(source)
        if t is None:
            try:
                t = compiled[source] = _compiled(env, source)
            except jinja2.TemplateSyntaxError as exc:
                raise KnowledgeError(f"{FILE_LABEL} [{where}]: template syntax error: {exc.message} "
                                     f"(template line {exc.lineno})") from None
        return t

    entries = {}
    for rule_id in raw["rules"]:
        spec = merged_spec(raw, rule_id)
        where = f"rules.{rule_id}"
        labels = {**meta.get("labels", {}), **spec.get("labels", {})}
        summary = spec["summary"] if isinstance(spec["summary"], list) else [spec["summary"]]
        entries[rule_id] = Entry(
            rule_id=rule_id, title=spec["title"], summary=tuple(compile_(s, where) for s in summary),
            detail=compile_(spec["detail"], where), labels={k: compile_(v, where) for k, v in labels.items()},
            sample=dict(spec.get("sample", {})),
        )
    return Wording(
        entries=entries, plan_line=compile_(meta["plan_line"], "meta"),
        plan_line_names=tuple(sorted(jinja2.meta.find_undeclared_variables(env.parse(meta["plan_line"])))),
        merged_summary=tuple(compile_(s, "meta") for s in meta["merged_summary"]),
        conflict_line=compile_(meta["same_time_conflict_line"], "meta"),
        preliminary_prefix=meta["preliminary_prefix"], future_prefix=compile_(meta["future_prefix"], "meta"),
        future_line=compile_(meta["future_line"], "meta"), sample_plan=dict(meta["sample_plan"]),
        sample_action=dict(meta["sample_action"]), macros=env.globals["s"], template_globals=dict(env.globals),
        groups=raw.get("groups", {}), fhir_outcomes=raw.get("fhir_outcomes", {}),
    )


@cache
def _phrase_template(name: str) -> Text:
    source = catalogue().raw.get("phrases", {}).get(name)
    if source is None:
        raise KnowledgeError(f"{FILE_LABEL} [phrases]: missing key {name!r}")
    return _compiled(_catalogue_env(), source)


def phrase(name: str, **values: Any) -> str:
    """A sentence of catalogue.toml [phrases] (the hooks' words outside a rule's card), on one line."""
    return _one_line(_phrase_template(name), {**wording().template_globals, **values})


PHRASES = ("not_prefetched", "not_prefetched_no_server", "beyond_pages_what", "beyond_pages_why", "too_many_pages_why",
           "truncated_what", "truncated_why", "label_change_dose", "label_cancel", "label_order_test", "label_other",
           "footer_sources", "footer_line", "wording_failed")


def group_label(key: str) -> str:
    """What the clinician calls a data group (prefetch key): catalogue.toml [groups.<key>] what."""
    return wording().groups.get(key, {}).get("what", key)


# --------------------------------------------------------------- rendering

class Rendered(msgspec.Struct, frozen=True):
    rule_id: str
    title: str
    indicator: str
    summary: str
    detail: str
    short: str | None  # the shortest summary alternative (for merged cards; None when not asked for)


def _context(values: dict[str, Any], guideline: str) -> dict[str, Any]:
    """A finding's template context, the globals (``k``, ``s``...) included: every template of the finding renders
    with it as it is (``_run``)."""
    ctx = {**wording().template_globals, "guideline": guideline, "guideline_label": _guideline_label(guideline),
           "plan": None, "v": values}
    ctx.update(values)
    drug = values.get("drug")
    if isinstance(drug, str):
        ctx["Drug"] = _cap(drug)
    return ctx


@cache
def _guideline_label(guideline: str) -> str:
    """The label of a pharmacogenomic guideline profile's source (knowledge data: found once per profile)."""
    return load().source(guideline_source(guideline)).label


def _run(t: Text, ctx: dict) -> str:
    """``t.render(ctx)`` for a context that holds the globals already (``_context``): Jinja2's public
    ``Template.make_module(vars, shared=True)`` renders with the dict as it is, without copying it and the
    globals into a new one for every template (a finding renders a dozen). A plain text was rendered at load."""
    if isinstance(t, PlainText):
        return t.text
    return str(t.make_module(ctx, shared=True))


def _text(t: Text, ctx: dict) -> str:
    text = _run(t, ctx)
    if "\t" in text or "  " in text:  # runs of blanks inside lines: one space
        lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    else:
        lines = [line.strip() for line in text.split("\n")]
    out = "\n".join(lines)
    if "\n\n\n" in out:
        out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()


def _one_line(t: Text, ctx: dict) -> str:
    return " ".join(_run(t, ctx).split())


def choose_summary(alternatives: list[str], fallback: str) -> str:
    """The one place the 140-character limit is enforced: the longest alternative that fits."""
    for s in alternatives:
        if s and len(s) <= SUMMARY_MAX:
            return s
    return fallback


def render(f: Finding, guideline: str = "cpic", *, shortest: bool = True, memo: dict | None = None) -> Rendered:
    """The card text of a finding. A template that fails on unforeseen values (the start-up check renders
    every one with sample values) still gives a card: its title, saying the wording failed.
    ``shortest=False``: the summary alternatives are rendered only until one fits, and ``short`` is None
    (only merged info cards use it). ``memo``: a dict shared by the findings of one answer (``_plan_text``)."""
    try:
        return _render(f, guideline, shortest, memo)
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
        return _failed(f, exc)


def render_summary(f: Finding, guideline: str = "cpic", *, shortest: bool = True) -> Rendered:
    """Only the summary (and ``short``) of a finding's card, for a card that is listed by its summary alone (a
    card merged away above the card limit): no detail is rendered (``detail`` is ""). A summary template that
    fails gives the summary ``render`` gives then."""
    try:
        return _render(f, guideline, shortest, None, detail=False)
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
        return _failed(f, exc)


def _failed(f: Finding, exc: Exception) -> Rendered:
    log.error("card wording failed", extra={"rule_id": f.rule_id, "error": type(exc).__name__})
    title = catalogue()[f.rule_id].title
    text = phrase("wording_failed", title=title, rule_id=f.rule_id)
    return Rendered(f.rule_id, title, indicator_of(f), choose_summary([text], title), text, title)


def _render(f: Finding, guideline: str, shortest: bool = True, memo: dict | None = None,
            detail: bool = True) -> Rendered:
    w = wording()
    entry = w[f.rule_id]
    ctx = _context({**f.values, "drug": f.drug or f.values.get("drug", "")}, guideline)
    title = entry.title
    prefix = ""
    if f.values.get("preliminary") is True:  # built on a preliminary result: the summary says so first
        prefix = w.preliminary_prefix
        title = prefix + title
    future = f.values.get("future_dated")
    if future:  # round-17 H1: raised by a result dated after today (rules.future): the summary says so first
        prefix = _one_line(w.future_prefix, {**ctx, "fd": future}) + " " + prefix
    alternatives = []
    summary = None
    for t in entry.summary:  # longest first: the first that fits is the summary
        a = _one_line(t, ctx)
        if a:
            alternatives.append(prefix + a)
            if summary is None and len(alternatives[-1]) <= SUMMARY_MAX:
                summary = alternatives[-1]
                if not shortest:
                    break
    short = min(alternatives, key=len, default=title) if shortest else None
    if not detail:
        return Rendered(f.rule_id, entry.title, indicator_of(f), summary or title, "", short)
    text = _text(entry.detail, ctx)
    if future:
        text = _one_line(w.future_line, {**ctx, "fd": future}) + "\n\n" + text
    if f.values.get("same_time_conflicts"):  # results of one date and time disagree: the worst was used
        text += "\n\n" + _one_line(w.conflict_line, {**ctx, "conflicts": f.values["same_time_conflicts"]})
    plan = f.values.get("plan")
    if plan:
        text += "\n\n" + _plan_text(w, {**ctx, "p": plan}, memo)
    return Rendered(f.rule_id, entry.title, indicator_of(f), summary or title, text, short)


def _plan_text(w: Wording, ctx: dict, memo: dict | None) -> str:
    """The order's dose-plan line. Every finding about an order carries the same plan (an equal copy), and the line
    reads nothing else from the context (``plan_line_names``: the names it looks up, found by Jinja2 at load), so
    within one answer (``memo``, one per ``render_cards`` call) it is rendered once per distinct plan: the values it
    looks up are compared by ``_memo_key``; a value that has none is rendered every time."""
    if memo is None:
        return _text(w.plan_line, ctx)
    key = _memo_key(tuple((name in ctx, ctx.get(name)) for name in w.plan_line_names))
    if key is None:
        return _text(w.plan_line, ctx)
    if key not in memo:
        memo[key] = _text(w.plan_line, ctx)
    return memo[key]


def _memo_key(values: tuple) -> bytes | None:
    """The values as ``marshal`` writes them, or None when they are not all plain data. ``marshal.dumps`` (the
    stdlib, in C) takes only the exact built-in types (str, int, float, bool, None, lists, tuples, dicts... never a
    subclass or another object) and writes each with its type and its exact value, so equal keys are values that
    render alike (1, 1.0 and True, or 0.0 and -0.0, give different keys). Format version 2: it writes no
    back-references (version 3 on marks objects by their reference count), so equal values give equal keys
    whichever objects they share."""
    try:
        return marshal.dumps(values, 2)
    except ValueError:  # not plain data
        return None


def activity_text(r) -> str:
    """A TPMT activity reading (``rules.tpmt_activity.ActivityReading``) as the cards word it, with why
    it could not be judged when it could not (logs, tests)."""
    s = wording().macros
    text = " ".join(str(s.tpmt_activity(r.values())).split())
    return text + (" could not be judged: " + " ".join(str(s.tpmt_unjudged(r.unjudgeable)).split())
                   if r.unjudgeable else "")


def label(f: Finding, key: str, action_values: dict[str, Any], guideline: str = "cpic") -> str:
    entry = wording()[f.rule_id]
    ctx = _context({**f.values, "drug": f.drug or f.values.get("drug", ""), "a": action_values}, guideline)
    return _one_line(entry.labels[key], ctx)


@cache
def _asks_action_expression(source: str) -> Any:
    return _catalogue_env().compile_expression(source, undefined_to_none=False)


def asks_action(f: Finding) -> bool:
    """Whether the finding's card asks the prescriber to act (check by hand, could not be checked): the catalogue's
    ``asks_action`` (true, or a Jinja2 expression on the finding's values). An expression that fails on unforeseen
    values counts as asking (a note is never hidden for a wording error)."""
    spec = catalogue()[f.rule_id].asks_action
    if isinstance(spec, bool):
        return spec
    try:
        ctx = _context({**f.values, "drug": f.drug or f.values.get("drug", "")}, "cpic")
        return bool(_asks_action_expression(spec)(ctx))
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, ZeroDivisionError):
        return True


def merged_summary(parts: list[str]) -> str:
    """Summary of an info card that carries several findings: as many of them as fit."""
    w = wording()
    ctx = {**w.template_globals, "parts": parts, "n": len(parts)}
    alternatives = [_one_line(t, ctx) for t in w.merged_summary]
    return choose_summary(alternatives, alternatives[-1])


def regimen_text(regimen) -> str:
    """A regimen in the catalogue's words (suggestion labels and Dosage.text)."""
    r = {"per_dose": regimen.per_dose_mg, "alt": regimen.alt_mg, "every_days": regimen.every_days,
         "days_per_week": regimen.days_per_week, "form": regimen.form, "ml": regimen.ml,
         "avg": regimen.avg_daily_mg, "kind": regimen.kind}
    return " ".join(str(wording().macros.regimen({"regimen": r, "high": regimen.per_dose_mg,
                                                  "days_per_week": regimen.days_per_week})).split())


# --------------------------------------------------------------- start-up check

def check(guidelines=None) -> None:
    """Render every template of every entry with its sample values, for each guideline profile; raise
    KnowledgeError (one line) naming every entry that does not render or whose shortest summary is too long."""
    w = wording()
    problems = []
    for name in PHRASES:
        try:
            phrase(name, label="x", pages=5, entries=2, read=1, rule_id="x", version="1", profile="CPIC", title="x")
        except (jinja2.TemplateError, KnowledgeError) as exc:
            problems.append(f"{FILE_LABEL} [phrases]: key {name!r}: {' '.join(str(exc).split())}")
    for rule_id, e in w.entries.items():
        where = f"{FILE_LABEL} [rules.{rule_id}]"
        for guideline in guidelines or load().pgx.profiles:
            values = {**e.sample}
            if values.pop("with_plan", False):
                values["plan"] = w.sample_plan
            drug = values.get("drug", "azathioprine")
            try:
                r = _render(Finding(rule_id, "MedicationRequest/sample", values, drug=drug), guideline)
                if len(r.short or "") > SUMMARY_MAX:
                    problems.append(f"{where}: key 'summary': even the shortest summary is over {SUMMARY_MAX} "
                                    f"characters: {r.short!r}")
                r = _render(Finding(rule_id, "MedicationRequest/sample", {**values, "preliminary": True}, drug=drug),
                            guideline)
                if len(r.short or "") > SUMMARY_MAX:
                    problems.append(f"{where}: key 'summary': the shortest summary with the preliminary prefix is "
                                    f"over {SUMMARY_MAX} characters: {r.short!r}")
                for key in e.labels:
                    label(Finding(rule_id, "", values, drug=drug), key, dict(w.sample_action), guideline)
                spec = catalogue()[rule_id].asks_action
                if isinstance(spec, str):  # the expression compiles and evaluates on the sample values
                    _asks_action_expression(spec)(_context({**values, "drug": drug}, guideline))
            except jinja2.TemplateError as exc:
                problems.append(f"{where} ({guideline}): template does not render with the sample values: "
                                f"{' '.join(str(exc).split())}")
    if problems:
        raise KnowledgeError("; ".join(problems))
