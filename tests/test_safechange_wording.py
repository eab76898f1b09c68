"""The wording (hooks/wording.py) renders with Jinja2's public API only, and its one remaining shortcut (the
dose-plan line rendered once per distinct plan within one answer) gives what rendering every time gives."""
from __future__ import annotations

import copy
import re
from datetime import date
from pathlib import Path

from hooks import cards, wording
from rules import catalogue as cat
from rules.findings import SUMMARY_MAX, Finding

ROOT = Path(__file__).resolve().parent.parent


def test_no_project_code_reaches_into_jinja2_internals():
    private = re.compile(r"jinja2\.runtime|jinja2\.utils|root_render_func|context_class|internalcode|"
                         r"new_context\(|\.blocks\b")
    offenders = [str(p.relative_to(ROOT)) for folder in ("service", "hooks", "rules", "fhir_mappers")
                 for p in (ROOT / folder).rglob("*.py") if private.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_no_generated_code_and_no_hand_copy_of_uuid4():
    for folder in ("service", "hooks", "rules", "fhir_mappers"):
        for p in (ROOT / folder).rglob("*.py"):
            text = p.read_text(encoding="utf-8")
            assert "exec(" not in text and "_uuid4_text" not in text, p
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", cards.new_uuid())


def test_plan_line_is_shared_only_by_identical_plans():
    w = wording.wording()
    plan = w.sample_plan
    memo: dict = {}
    ctx = wording._context({"drug": "azathioprine"}, "cpic")
    first = wording._plan_text(w, {**ctx, "p": plan}, memo)
    assert wording._plan_text(w, {**ctx, "p": copy.deepcopy(plan)}, memo) == first and len(memo) == 1
    other = {**plan, "ordered": 150.5}
    assert wording._plan_text(w, {**ctx, "p": other}, memo) == wording._text(w.plan_line, {**ctx, "p": other})
    assert len(memo) == 2
    typed = {**plan, "ordered": True}  # == 1, but not the same value to word
    wording._plan_text(w, {**ctx, "p": typed}, memo)
    assert len(memo) == 3
    assert wording._memo_key(({"x": object()},)) is None
    assert wording._memo_key(({"x": [1, 2.5, None, "y"]},)) is not None


def test_lazy_summaries_equal_the_full_rendering_for_every_entry():
    checked = 0
    for rule_id, e in wording.wording().entries.items():
        values = {k: v for k, v in e.sample.items() if k != "with_plan"}
        f = Finding(rule_id, "MedicationRequest/sample", values, drug=values.get("drug", "azathioprine"))
        for guideline in ("cpic", "dpwg"):
            full = wording.render(f, guideline)
            lazy = wording.render(f, guideline, shortest=False, memo={})
            assert (lazy.summary, lazy.detail, lazy.short) == (full.summary, full.detail, None), rule_id
            checked += 1
    assert checked == 2 * len(cat.catalogue().entries)


def test_merged_info_cards_still_get_the_shortest_summaries():
    infos = [Finding(rule_id, "MedicationRequest/x", {k: v for k, v in e.sample.items() if k != "with_plan"},
                     drug=e.sample.get("drug", "azathioprine"))
             for rule_id, e in wording.wording().entries.items() if cat.catalogue()[rule_id].indicator == "info"][:3]
    assert len(infos) == 3
    out = cards.render_cards(infos, drafts={}, patient_id=None, today=date(2026, 12, 1), max_info_cards=1)
    merged = out[-1]
    shorts = [wording.render(f).short or "" for f in sorted(infos, key=cat.priority_of)]
    assert merged["summary"] == wording.merged_summary(shorts)
    assert len(merged["summary"]) <= SUMMARY_MAX


def test_one_table_of_group_labels():
    import fhir_mappers

    assert not hasattr(fhir_mappers, "GROUP_LABELS")
    assert wording.group_label("weight") == cat.catalogue().raw["groups"]["weight"]["what"]
    assert wording.group_label("no-such-group") == "no-such-group"


def test_shared_context_rendering_equals_template_render():
    """``_run`` (Template.make_module with the context as it is) gives what Template.render gives."""
    w = wording.wording()
    checked = 0
    for rule_id, e in w.entries.items():
        values = {k: v for k, v in e.sample.items() if k != "with_plan"}
        for guideline in ("cpic", "dpwg"):
            raw = {**values, "drug": values.get("drug", "azathioprine")}
            ctx = wording._context(raw, guideline)
            plain = {"guideline": guideline, "guideline_label": ctx["guideline_label"], "plan": None, "v": raw,
                     **raw, "Drug": ctx["Drug"]}
            for t in (*e.summary, e.detail):
                assert wording._run(t, ctx) == t.render(plain), rule_id
                checked += 1
    assert checked > 2 * len(w.entries)
