"""The rule catalogue (``knowledge/catalogue.toml``): one entry per rule id, and its wording.

Each entry: title, default indicator, priority (among info cards, lower first),
sources (clinician-facing, primary first), supersedes (rule ids it makes
redundant on the same order), Jinja2 templates for the summary (alternatives,
longest first: the first that fits 140 characters is used; words are chosen,
never cut), the detail and the suggestion labels, and override reason codes.

``check()`` runs at start-up: every emitted rule id has an entry, every source
exists, every template renders with the entry's sample values (strict: a
missing value or knowledge path is an error) and the shortest summary fits.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jinja2
import jinja2.meta
import jinja2.runtime
import jinja2.utils

from .findings import SUMMARY_MAX, Finding
from .knowledge_base import KNOWLEDGE_DIR, load

CATALOGUE_FILE = KNOWLEDGE_DIR / "catalogue.toml"
_WS = re.compile(r"[ \t]+")


def fmt_mg(mg: Any) -> str:
    mg = float(mg)
    if abs(mg - round(mg)) < 1e-6:
        return f"{mg:.0f}"
    return f"{mg:.2f}".rstrip("0").rstrip(".") if mg < 10 else f"{mg:.1f}".rstrip("0").rstrip(".")


def _mgkg(x: Any) -> str:
    return f"{float(x):.1f}"


def _pct(x: Any) -> str:
    return f"{float(x) * 100:.0f} %"


def _num(x: Any) -> str:
    return f"{float(x):g}"


def _cap(s: Any) -> str:
    s = str(s)
    return s[:1].upper() + s[1:]


def _and(items: Any) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


@dataclass(frozen=True)
class Entry:
    rule_id: str
    title: str
    indicator: str
    priority: int
    sources: tuple[str, ...]
    supersedes: tuple[str, ...]
    summary: tuple[jinja2.Template, ...]
    detail: jinja2.Template
    labels: dict[str, jinja2.Template]
    override_reasons: tuple[str, ...]
    sample: dict[str, Any]


class _Context(jinja2.runtime.Context):
    """Jinja2's template context with a fast path for the calls the templates make most: a macro
    (``s.regimen(p)``, ``span(lo, hi)``) and a built-in method (``v.get('x')``). ``Context.call``
    finds out per call whether the callable wants the context, eval context or environment passed
    first; a macro always takes the eval context, a built-in method never takes any."""

    @jinja2.utils.internalcode
    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja2's own signature)
        t = type(__obj)
        if t is not jinja2.runtime.Macro and t is not _BUILTIN_METHOD:
            return super().call(__obj, *args, **kwargs)
        kwargs.pop("_block_vars", None)
        kwargs.pop("_loop_vars", None)
        try:
            if t is _BUILTIN_METHOD:
                return __obj(*args, **kwargs)
            return __obj(__self.eval_ctx, *args, **kwargs)
        except StopIteration:
            return __self.environment.undefined("value was undefined because a callable raised a"
                                                " StopIteration exception")


_BUILTIN_METHOD: type = type({}.get)  # builtin_function_or_method


class _Environment(jinja2.Environment):
    """Jinja2's environment with a fast path for ``x.name`` on a plain dict (the findings' values, the
    knowledge files): Jinja2 tries ``getattr`` first and, for a dict, pays for an AttributeError before
    the item lookup. The result is the same: a dict's own attributes (``items``, ``keys``...) still win."""

    context_class = _Context

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


_DICT_ATTRIBUTES = frozenset(a for a in dir(dict) if hasattr({}, a))


@dataclass(frozen=True)
class Catalogue:
    version: str
    entries: dict[str, Entry]
    override_reasons: dict[str, str]  # code -> display
    override_system: str
    plan_line: jinja2.Template
    merged_summary: tuple[jinja2.Template, ...]
    stop_supersedes: tuple[str, ...]
    sample_plan: dict[str, Any]
    raw: dict[str, Any]
    macros: Any = None  # the [meta] macros module (s.* in templates)
    conflict_line: Any = None  # [meta] same_time_conflict_line: results of one date and time that disagree
    template_globals: dict[str, Any] = field(default_factory=dict)  # k, s and Jinja2's own, in every context
    plan_line_names: tuple[str, ...] = ()  # the names plan_line looks up in its context (p...)

    def __getitem__(self, rule_id: str) -> Entry:
        return self.entries[rule_id]


def _env(raw: dict) -> jinja2.Environment:
    env = _Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                             trim_blocks=True, lstrip_blocks=True)
    groups = raw.get("groups", {})
    outcomes = raw.get("fhir_outcomes", {})
    reasons = {rid: spec.get("dose_reason", spec.get("title", rid)) for rid, spec in raw["rules"].items()}
    env.filters.update(mg=fmt_mg, mgkg=_mgkg, pct=_pct, num=_num, cap=_cap, and_list=_and,
                       reason=lambda rid: reasons.get(rid, rid),
                       group=lambda key: groups.get(key, {}).get("what", key),
                       group_check=lambda key: groups.get(key, {}).get("check", "it"),
                       fhir_outcome=lambda c: outcomes.get(c, "the EHR's FHIR server could not be read"),
                       tick=lambda x: f"`{x}`")
    env.globals["k"] = load().files
    env.globals["s"] = env.from_string(raw["meta"].get("macros", "")).module
    return env


@cache
def catalogue() -> Catalogue:
    raw = tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    meta = raw["meta"]
    env = _env(raw)
    compiled: dict[str, jinja2.Template] = {}

    def compile_(source: str) -> jinja2.Template:
        # one compiled template per distinct source: the shared labels repeat in every entry
        # (540 templates, 119 distinct; compiling them was most of the service's start-up)
        t = compiled.get(source)
        if t is None:
            t = compiled[source] = env.from_string(source)
        return t

    entries = {}
    rules_raw = raw["rules"]
    for rule_id, spec in rules_raw.items():
        base = rules_raw.get(spec["extends"], {}) if "extends" in spec else {}
        spec = {**base, **spec}
        labels = {**meta.get("labels", {}), **spec.get("labels", {})}
        summary = spec["summary"] if isinstance(spec["summary"], list) else [spec["summary"]]
        entries[rule_id] = Entry(
            rule_id=rule_id, title=spec["title"], indicator=spec["indicator"], priority=int(spec.get("priority", 50)),
            sources=tuple(spec["sources"]), supersedes=tuple(spec.get("supersedes", [])),
            summary=tuple(compile_(s) for s in summary), detail=compile_(spec["detail"]),
            labels={k: compile_(v) for k, v in labels.items()},
            override_reasons=tuple(spec.get("override_reasons", meta["default_override_reasons"])),
            sample=dict(spec.get("sample", {})),
        )
    reasons = raw["override_reasons"]
    return Catalogue(
        version=meta["version"], entries=entries,
        override_reasons={k: v for k, v in reasons.items() if k != "system"}, override_system=reasons["system"],
        plan_line=compile_(meta["plan_line"]),
        merged_summary=tuple(compile_(s) for s in meta["merged_summary"]),
        stop_supersedes=tuple(meta["stop_supersedes"]), sample_plan=dict(meta["sample_plan"]), raw=raw,
        macros=env.globals["s"], conflict_line=compile_(meta["same_time_conflict_line"]),
        template_globals=dict(env.globals),
        plan_line_names=tuple(sorted(jinja2.meta.find_undeclared_variables(env.parse(meta["plan_line"])))),
    )


# --------------------------------------------------------------- rendering

@dataclass(frozen=True)
class Rendered:
    rule_id: str
    title: str
    indicator: str
    summary: str
    detail: str
    short: str | None  # the shortest summary alternative (for merged cards; None when not asked for)


def indicator_of(f: Finding) -> str:
    return f.indicator or catalogue()[f.rule_id].indicator


def priority_of(f: Finding) -> int:
    return catalogue()[f.rule_id].priority


def _context(values: dict[str, Any], guideline: str) -> dict[str, Any]:
    """A finding's template context, Jinja2's globals (``k``, ``s``...) included, so that every template
    of the finding renders with it as it is (``_run``), without the copy ``Template.render`` makes."""
    kb = load()
    ctx = {**catalogue().template_globals, "guideline": guideline,
           "guideline_label": kb.source(guideline_source(guideline)).label, "plan": None, "v": values}
    ctx.update(values)
    drug = values.get("drug")
    if isinstance(drug, str):
        ctx["Drug"] = _cap(drug)
    return ctx


def guideline_source(guideline: str) -> str:
    return load()["pgx"]["profiles"][guideline]["source"]


def _run(t: jinja2.Template, ctx: dict) -> str:
    """``t.render(ctx)`` for a context from ``_context`` (which holds the globals already): the same
    output and errors, without copying the context and the globals into a new dict for every template."""
    env = t.environment
    try:
        return env.concat(t.root_render_func(env.context_class(env, ctx, t.name, t.blocks)))
    except Exception:
        env.handle_exception()


def _text(t: jinja2.Template, ctx: dict) -> str:
    text = _run(t, ctx)
    if "\t" in text or "  " in text:  # runs of blanks inside lines: one space
        lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    else:
        lines = [line.strip() for line in text.split("\n")]
    out = "\n".join(lines)
    if "\n\n\n" in out:
        out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()


def _one_line(t: jinja2.Template, ctx: dict) -> str:
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
        import logging

        logging.getLogger("aza_cds.catalogue").error("card wording failed", extra={"rule_id": f.rule_id,
                                                                                  "error": type(exc).__name__})
        entry = catalogue()[f.rule_id]
        text = (f"{entry.title}: this card's wording could not be rendered; review the order by hand "
                f"(rule {f.rule_id}).")
        return Rendered(f.rule_id, entry.title, indicator_of(f), choose_summary([text], entry.title), text, entry.title)


def _render(f: Finding, guideline: str, shortest: bool = True, memo: dict | None = None) -> Rendered:
    cat = catalogue()
    entry = cat[f.rule_id]
    ctx = _context({**f.values, "drug": f.drug or f.values.get("drug", "")}, guideline)
    title = entry.title
    prefix = ""
    if f.values.get("preliminary") is True:  # built on a preliminary result: the summary says so first
        prefix = cat.raw["meta"]["preliminary_prefix"]
        title = prefix + title
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
    detail = _text(entry.detail, ctx)
    if f.values.get("same_time_conflicts"):  # results of one date and time disagree: the worst was used
        detail += "\n\n" + _one_line(cat.conflict_line, {**ctx, "conflicts": f.values["same_time_conflicts"]})
    plan = f.values.get("plan")
    if plan:
        detail += "\n\n" + _plan_text(cat, {**ctx, "p": plan}, memo)
    return Rendered(f.rule_id, entry.title, indicator_of(f), summary or title, detail, short)


def _plan_text(cat: Catalogue, ctx: dict, memo: dict | None) -> str:
    """The order's dose-plan line. Every finding about an order carries the same plan, and the line reads
    nothing else from the context (``plan_line_names``: the names it looks up, found by Jinja2 at load), so
    within one answer (``memo``, one per ``render_cards`` call) it is rendered once per distinct plan. Only
    plain JSON-like values are compared (by ``repr``, which tells 1, 1.0 and True apart); anything else is
    rendered every time."""
    if memo is None:
        return _text(cat.plan_line, ctx)
    looked_up = tuple(ctx.get(name, _ABSENT) for name in cat.plan_line_names)
    key = repr(looked_up) if _plain(looked_up) else None
    if key is None:
        return _text(cat.plan_line, ctx)
    if key not in memo:
        memo[key] = _text(cat.plan_line, ctx)
    return memo[key]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _plain(x: Any) -> bool:
    """Only str, numbers, booleans, None, lists, tuples and dicts with str keys of them (or _ABSENT)."""
    stack = [x]
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _SCALARS:
            continue
        if t is dict:
            if not all(type(k) is str for k in x):
                return False
            stack.extend(x.values())
        elif t is list or t is tuple:
            stack.extend(x)
        else:
            return False
    return True


_SCALARS = frozenset({str, int, float, bool, type(None), _Absent})


def activity_text(r) -> str:
    """A TPMT activity reading (``rules.tpmt_activity.ActivityReading``) as the cards word it, with why
    it could not be judged when it could not (logs, tests)."""
    s = catalogue().macros
    text = " ".join(str(s.tpmt_activity(r.values())).split())
    return text + (" could not be judged: " + " ".join(str(s.tpmt_unjudged(r.unjudgeable)).split())
                   if r.unjudgeable else "")


def label(f: Finding, key: str, action_values: dict[str, Any], guideline: str = "cpic") -> str:
    entry = catalogue()[f.rule_id]
    ctx = _context({**f.values, "drug": f.drug or f.values.get("drug", ""), "a": action_values}, guideline)
    return _one_line(entry.labels[key], ctx)


def merged_summary(parts: list[str]) -> str:
    """Summary of an info card that carries several findings: as many of them as fit."""
    cat = catalogue()
    ctx = {**cat.template_globals, "parts": parts, "n": len(parts)}
    alternatives = [_one_line(t, ctx) for t in cat.merged_summary]
    return choose_summary(alternatives, alternatives[-1])


def sources_of(f: Finding) -> list[str]:
    """Clinician-facing source keys of a finding, primary first (internal ones, like the product brief, stay
    in the knowledge files)."""
    kb = load()
    keys = list(dict.fromkeys([*catalogue()[f.rule_id].sources, *f.sources]))
    keys = _own_label(f, keys)
    return [k for k in keys if not kb.source(k).internal]


_IMURAN = "fda_azathioprine"  # the azathioprine (Imuran) label and its named parts (fda_azathioprine_*)


def _own_label(f: Finding, keys: list[str]) -> list[str]:
    """A card cites the label of the drug it is about: on a mercaptopurine or thioguanine card the
    azathioprine (Imuran) label gives way to that drug's own (Purixan, Tabloid); a febuxostat
    contraindication card cites the febuxostat (Uloric) label first, not the Imuran label."""
    if f.rule_id == "interaction-xanthine-oxidase" and f.values.get("contraindicated"):
        keys = [k for k in keys if not k.startswith(_IMURAN)]
        own = load()["pgx"]["drugs"].get(f.drug, {}).get("label_source")
        return list(dict.fromkeys(["fda_febuxostat", *keys, *([own] if own and f.drug != "azathioprine" else [])]))
    if f.drug in ("", "azathioprine"):
        return keys
    own = load()["pgx"]["drugs"].get(f.drug, {}).get("label_source")
    if not own:
        return keys
    return list(dict.fromkeys(own if k.startswith(_IMURAN) else k for k in keys))


# --------------------------------------------------------------- start-up check

def check(emitted: set[str]) -> None:
    """Raise ValueError naming every problem of the catalogue."""
    cat = catalogue()
    kb = load()
    problems = []
    for rule_id in sorted(emitted - set(cat.entries)):
        problems.append(f"rule id {rule_id!r} is emitted but has no catalogue entry")
    for rule_id, e in cat.entries.items():
        if e.indicator not in ("info", "warning", "critical"):
            problems.append(f"{rule_id}: bad indicator {e.indicator!r}")
        for key in e.sources:
            if key not in kb.sources:
                problems.append(f"{rule_id}: unknown source {key!r}")
        if not [k for k in e.sources if k in kb.sources and not kb.sources[k].internal]:
            problems.append(f"{rule_id}: no clinician-facing source")
        for code in e.override_reasons:
            if code not in cat.override_reasons:
                problems.append(f"{rule_id}: unknown override reason {code!r}")
        for other in e.supersedes:
            if other not in cat.entries:
                problems.append(f"{rule_id}: supersedes unknown rule {other!r}")
        for guideline in kb["pgx"]["profiles"]:
            values = {**e.sample}
            if values.pop("with_plan", False):
                values["plan"] = cat.sample_plan
            try:
                r = _render(Finding(rule_id, "MedicationRequest/sample", values, drug=values.get("drug", "azathioprine")),
                            guideline)
                if len(r.short or "") > SUMMARY_MAX:
                    problems.append(f"{rule_id}: even the shortest summary is over {SUMMARY_MAX} characters: {r.short!r}")
                r = _render(Finding(rule_id, "MedicationRequest/sample", {**values, "preliminary": True},
                                    drug=values.get("drug", "azathioprine")), guideline)
                if len(r.short or "") > SUMMARY_MAX:
                    problems.append(f"{rule_id}: the shortest summary with the preliminary prefix is over "
                                    f"{SUMMARY_MAX} characters: {r.short!r}")
                for key in e.labels:
                    label(Finding(rule_id, "", values, drug=values.get("drug", "azathioprine")), key,
                          cat.raw["meta"]["sample_action"], guideline)
            except jinja2.TemplateError as exc:
                problems.append(f"{rule_id} ({guideline}): template does not render with the sample values: {exc}")
    for rule_id in cat.stop_supersedes:
        if rule_id not in cat.entries:
            problems.append(f"stop_supersedes names unknown rule {rule_id!r}")
    if problems:
        raise ValueError("rule catalogue: " + "; ".join(problems))


# --------------------------------------------------------------- README table

def readme_table() -> str:
    """The README's rule table, generated from the catalogue (a test keeps the README current)."""
    cat = catalogue()
    kb = load()
    rows = ["| rule id | title | trigger | indicator | sources (clinician-facing) | supersedes |",
            "| --- | --- | --- | --- | --- | --- |"]
    for rule_id, e in cat.entries.items():
        srcs = "; ".join(kb.source(k).label for k in e.sources if not kb.source(k).internal)
        trigger = cat.raw["rules"][rule_id].get("trigger", "")
        rows.append(f"| `{rule_id}` | {e.title} | {trigger} | {e.indicator} | {srcs} | "
                    f"{', '.join(f'`{s}`' for s in e.supersedes) or '—'} |")
    return "\n".join(rows)


def regimen_text(regimen) -> str:
    """A regimen in the catalogue's words (suggestion labels and Dosage.text)."""
    r = {"per_dose": regimen.per_dose_mg, "alt": regimen.alt_mg, "every_days": regimen.every_days,
         "days_per_week": regimen.days_per_week, "form": regimen.form, "ml": regimen.ml,
         "avg": regimen.avg_daily_mg, "kind": regimen.kind}
    return " ".join(str(_macros().regimen({"regimen": r, "high": regimen.per_dose_mg,
                                           "days_per_week": regimen.days_per_week})).split())


@cache
def _macros():
    return _env(catalogue().raw).globals["s"]


def main() -> None:  # python -m rules --readme: rewrite the README's rule table
    import sys
    from pathlib import Path

    if sys.argv[1:] != ["--readme"]:
        print(readme_table())
        return
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- rule-table:start -->", "<!-- rule-table:end -->"
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + readme_table() + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")

