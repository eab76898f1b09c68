"""The card wording's fast paths give what plain Jinja2 and the straightforward code give.

``rules.catalogue`` renders with its own Jinja2 environment (a dict fast path for ``x.name``, a
context whose ``call`` skips the pass-argument probing for macros and built-in methods), renders a
finding's templates with one shared context, renders the summary alternatives only until one fits
(all of them where the shortest is needed), cleans whitespace without a regex when there is
nothing to clean, renders the dose-plan line once per distinct plan within one answer, and writes
uuids without ``uuid.UUID``. Each is checked here against the plain way, on every catalogue entry
with its sample values, both guidelines, final and preliminary, and variations of the plan.
"""
from __future__ import annotations

import copy
import os
import re
import uuid
from datetime import date

import jinja2
import pytest

from hooks import cards
from rules import catalogue as cat
from rules.findings import SUMMARY_MAX, Finding
from rules.knowledge_base import load


@pytest.fixture(scope="module")
def plain():
    """The catalogue as built with a stock ``jinja2.Environment`` (Jinja2's own getattr and call)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(cat, "_Environment", jinja2.Environment)
    try:
        built = cat.catalogue.__wrapped__()
    finally:
        mp.undo()
    assert type(built.plan_line.environment) is jinja2.Environment
    return built


def _plain_render(c: cat.Catalogue, f: Finding, guideline: str) -> tuple[str, str, str]:
    """(summary, detail, short) the straightforward way: Template.render, every alternative, regex clean-up."""
    def one_line(t, ctx):
        return " ".join(t.render(ctx).split())

    def text(t, ctx):
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in t.render(ctx).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    kb = load()
    values = {**f.values, "drug": f.drug or f.values.get("drug", "")}
    ctx = {"guideline": guideline, "guideline_label": kb.source(cat.guideline_source(guideline)).label,
           "plan": None, "v": values, **values}
    if isinstance(values.get("drug"), str):
        ctx["Drug"] = cat._cap(values["drug"])
    entry = c[f.rule_id]
    alternatives = [one_line(t, ctx) for t in entry.summary]
    title = entry.title
    if f.values.get("preliminary") is True:
        prefix = c.raw["meta"]["preliminary_prefix"]
        alternatives = [prefix + a for a in alternatives if a]
        title = prefix + title
    summary = cat.choose_summary(alternatives, title)
    short = min((a for a in alternatives if a), key=len, default=title)
    detail = text(entry.detail, ctx)
    if f.values.get("same_time_conflicts"):
        detail += "\n\n" + one_line(c.conflict_line, {**ctx, "conflicts": f.values["same_time_conflicts"]})
    if f.values.get("plan"):
        detail += "\n\n" + text(c.plan_line, {**ctx, "p": f.values["plan"]})
    return summary, detail, short


def _plans() -> list[dict]:
    base = cat.catalogue().sample_plan
    variants = [copy.deepcopy(base)]
    for change in ({"change": False, "ordered": 5}, {"change": False, "ordered": 200}, {"regimen": False},
                   {"days_per_week": 3, "regimen": {**base["regimen"], "days_per_week": 3}},
                   {"regimen": {**base["regimen"], "alt": 50, "avg": 37.5}},
                   {"regimen": {**base["regimen"], "every_days": 2, "avg": 12.5}},
                   {"regimen": {**base["regimen"], "form": "suspension", "ml": 1.25}},
                   {"preliminary": True, "qualitative": ["pgx-reduce-dose"]}, {"low": 25, "high": 25}):
        variants.append({**copy.deepcopy(base), **change})
    return variants


def _findings():
    c = cat.catalogue()
    for rule_id, e in c.entries.items():
        values = {**e.sample}
        with_plan = values.pop("with_plan", False)
        drug = values.get("drug", "azathioprine")
        for plan in (_plans() if with_plan else [None]):
            v = {**values, **({"plan": plan} if plan else {})}
            yield Finding(rule_id, "MedicationRequest/sample", v, drug=drug)
            yield Finding(rule_id, "MedicationRequest/sample", {**v, "preliminary": True}, drug=drug)
        yield Finding(rule_id, "MedicationRequest/sample",
                      {**values, "same_time_conflicts": [{"analyte": "ANC", "value": 0.9, "others": [1.9, 2],
                                                          "date": "2026-11-30"}]}, drug=drug)


@pytest.mark.parametrize("guideline", ["cpic", "dpwg"])
def test_rendering_matches_plain_jinja2_for_every_entry(plain, guideline):
    checked = 0
    for f in _findings():
        try:
            want = _plain_render(plain, f, guideline)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError):
            continue  # a variation this entry's templates cannot word: the fallback card, tested elsewhere
        full = cat.render(f, guideline)
        lazy = cat.render(f, guideline, shortest=False, memo={})
        assert (full.summary, full.detail, full.short) == want, f.rule_id
        assert (lazy.summary, lazy.detail, lazy.short) == (want[0], want[1], None), f.rule_id
        checked += 1
    assert checked > 3 * len(cat.catalogue().entries)


def test_suggestion_labels_match_plain_jinja2(plain):
    c = cat.catalogue()
    action = c.raw["meta"]["sample_action"]
    for rule_id, e in c.entries.items():
        values = {k: v for k, v in e.sample.items() if k != "with_plan"}
        f = Finding(rule_id, "", values, drug=values.get("drug", "azathioprine"))
        for key in e.labels:
            want = " ".join(plain[rule_id].labels[key].render({
                "guideline": "cpic", "guideline_label": load().source(cat.guideline_source("cpic")).label,
                "plan": None, "v": {**values, "drug": f.drug, "a": action}, **values, "drug": f.drug,
                "Drug": cat._cap(f.drug), "a": action}).split())
            assert cat.label(f, key, action) == want


def test_plan_line_is_shared_only_by_identical_plans():
    c = cat.catalogue()
    plan = c.sample_plan
    memo: dict = {}
    ctx = cat._context({"drug": "azathioprine"}, "cpic")
    first = cat._plan_text(c, {**ctx, "p": plan}, memo)
    assert cat._plan_text(c, {**ctx, "p": copy.deepcopy(plan)}, memo) == first and len(memo) == 1
    other = {**plan, "ordered": 150.5}
    assert cat._plan_text(c, {**ctx, "p": other}, memo) == cat._text(c.plan_line, {**ctx, "p": other})
    assert len(memo) == 2
    typed = {**plan, "ordered": True}  # == 1, but not the same value to word
    cat._plan_text(c, {**ctx, "p": typed}, memo)
    assert len(memo) == 3
    assert not cat._plain({"x": object()}) and not cat._plain({1: "x"}) and cat._plain({"x": [1, 2.5, None, "y"]})


def test_dict_fast_path_keeps_jinja2_semantics():
    env = cat._Environment(undefined=jinja2.StrictUndefined)
    stock = jinja2.Environment(undefined=jinja2.StrictUndefined)
    d = {"items": 1, "x": 2, "get": 3}
    for name in ("items", "x", "get", "keys", "__class__"):
        assert env.getattr(d, name) == stock.getattr(d, name)
    for e in (env, stock):
        with pytest.raises(jinja2.UndefinedError):
            str(e.getattr(d, "missing"))

    class Sub(dict):
        x = "attribute"

    assert env.getattr(Sub(x="item"), "x") == "attribute"
    src = "{% macro m(a, b) %}{{ a }}-{{ b }}{% endmacro %}{{ d.items is callable }} {{ d.x }} {{ d.get('x') }} {{ m(1, b=2) }}"
    assert env.from_string(src).render(d=d) == stock.from_string(src).render(d=d) == "True 2 2 1-2"
    with pytest.raises(TypeError):
        env.from_string("{% macro m(a) %}{% endmacro %}{{ m(1, c=2) }}").render()


def test_whitespace_clean_up_matches_the_regex(plain):
    env = jinja2.Environment()
    for text in ("a  b\t c\n\n\n\nd ", " x\xa0 y \n z", "plain\nlines\n\nonly", "\t\n\n\n", "a \u2009 b"):
        t = env.from_string("{{ s }}")
        want = re.sub(r"\n{3,}", "\n\n", "\n".join(re.sub(r"[ \t]+", " ", line).strip()
                                                     for line in text.split("\n"))).strip()
        assert cat._text(t, {"s": text}) == want


def test_uuids_are_uuid4_as_the_standard_library_writes_them():
    for _ in range(2000):
        raw = os.urandom(16)
        assert cards._uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))
    for b in (b"\x00" * 16, b"\xff" * 16):
        assert cards._uuid4_text(b) == str(uuid.UUID(bytes=b, version=4))
    u = uuid.UUID(cards.new_uuid())
    assert u.version == 4 and u.variant == uuid.RFC_4122


def test_merged_info_cards_still_get_the_shortest_summaries():
    infos = [Finding(rule_id, "MedicationRequest/x", {k: v for k, v in e.sample.items() if k != "with_plan"},
                     drug=e.sample.get("drug", "azathioprine"))
             for rule_id, e in cat.catalogue().entries.items() if e.indicator == "info"][:3]
    assert len(infos) == 3
    out = cards.render_cards(infos, drafts={}, patient_id=None, today=date(2026, 12, 1), max_info_cards=1)
    merged = out[-1]
    shorts = [cat.render(f).short or "" for f in sorted(infos, key=cat.priority_of)]
    assert merged["summary"] == cat.merged_summary(shorts)
    assert len(merged["summary"]) <= SUMMARY_MAX
