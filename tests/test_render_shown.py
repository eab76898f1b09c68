"""Issue 21, "only what is shown is worded": render_cards decides which findings become shown cards (order,
the info-card limit, the merge above MAX_CARDS) before it words them, with the same answer as wording every
finding and merging afterwards; the cheaper rendering (hooks/wording.py) gives what Jinja2 gives."""
from __future__ import annotations

import json
from typing import Any
from datetime import date

import jinja2
import pytest

from hooks import cards, wording
from hooks.bounds import MAX_CARDS, merge_cards
from rules import Finding
from rules import catalogue as cat
from rules.findings import CancelOrder

TODAY = date(2026, 12, 7)


def _strip(v):
    """An answer without its uuids (new on every call)."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k != "uuid"}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _sample(rule_id: str, order_ref: str, **extra) -> Finding:
    e = wording.wording().entries[rule_id]
    values = {k: v for k, v in e.sample.items() if k != "with_plan"}
    values.update(extra)
    return Finding(rule_id, order_ref, values, drug=values.get("drug", "azathioprine"))


def _many_orders(n: int) -> list[Finding]:
    """n orders, each with a warning, a critical card and an info note: far more cards than MAX_CARDS."""
    out = []
    for i in range(n):
        ref = f"MedicationRequest/o{i}"
        out.append(_sample("interaction-ace-inhibitors", ref, ordered=100 + i))
        out.append(Finding("interaction-xanthine-oxidase", ref,
                           {**wording.wording().entries["interaction-xanthine-oxidase"].sample, "ordered": 50 + i},
                           [CancelOrder(ref, "allopurinol")], drug="azathioprine"))
        out.append(_sample("interaction-aminosalicylates", ref))
        out.append(_sample("elderly", ref))
    return out


@pytest.mark.parametrize("max_info_cards", [1, 2, 5])
@pytest.mark.parametrize("orders", [1, 6, 9, 40])
def test_shown_first_equals_wording_everything_then_merging(max_info_cards, orders):
    findings = _many_orders(orders)
    app = cards.AppLink("https://app.example/launch", "pt-1", ({"resourceType": "MedicationRequest", "id": "o0"},))
    kw = dict(drafts={}, patient_id="pt-1", today=TODAY, max_info_cards=max_info_cards, app=app)
    everything = cards.render_cards(findings, max_cards=10**6, **kw)  # every card worded, none merged
    shown = cards.render_cards(findings, **kw)
    assert _strip(shown) == _strip(merge_cards(everything))
    assert merge_cards(shown) is shown or _strip(merge_cards(shown)) == _strip(shown)  # the pipeline's merge: no change
    if len(everything) > MAX_CARDS:
        assert len(shown) < len(everything)
        assert any(c["extension"]["azathioprine-cds"].get("mergedCards") for c in shown)


def test_a_card_merged_away_is_worded_by_its_summary_only(monkeypatch):
    findings = _many_orders(30)  # 30 orders x 2 non-info cards + 1 merged info card: merged to one card per rule
    full: list[str] = []
    summaries: list[str] = []
    suggestions: list[int] = []
    render, render_summary, suggestion = cards.render, cards.render_summary, cards._suggestion
    def spy(log, fn, item):
        def wrapped(*a, **k):
            log.append(item(a))
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(cards, "render", spy(full, render, lambda a: a[0].rule_id))
    monkeypatch.setattr(cards, "render_summary", spy(summaries, render_summary, lambda a: a[0].rule_id))
    monkeypatch.setattr(cards, "_suggestion", spy(suggestions, suggestion, lambda a: 1))
    out = cards.render_cards(findings, drafts={}, patient_id="pt-1", today=TODAY)
    assert [c["source"]["topic"]["code"] for c in out][:2] == ["interaction-xanthine-oxidase", "interaction-ace-inhibitors"]
    assert len(out) == 3 and len(out[2]["extension"]["azathioprine-cds"]["mergedRuleIds"]) == 60  # the info card
    # worded in full: the first card of each merged rule, and the merged info card's findings (all shown in it)
    assert full.count("interaction-xanthine-oxidase") == 1 and full.count("interaction-ace-inhibitors") == 1
    assert summaries.count("interaction-xanthine-oxidase") == 29 and summaries.count("interaction-ace-inhibitors") == 29
    assert suggestions == []  # a merged card offers none, so none is built
    critical = out[0]
    assert critical["extension"]["azathioprine-cds"]["mergedCards"] == 30
    assert "suggestions" not in critical and "selectionBehavior" not in critical


def test_the_render_summary_is_the_summary_render_gives():
    for rule_id, e in wording.wording().entries.items():
        values = {k: v for k, v in e.sample.items() if k != "with_plan"}
        f = Finding(rule_id, "MedicationRequest/x", values, drug=values.get("drug", "azathioprine"))
        for shortest in (True, False):
            full = wording.render(f, "cpic", shortest=shortest)
            only = wording.render_summary(f, "cpic", shortest=shortest)
            assert (only.summary, only.short, only.title, only.indicator) == \
                (full.summary, full.short, full.title, full.indicator), rule_id
            assert only.detail == ""


# ------------------------------------------------------------------ the cheaper rendering gives Jinja2's answer

def test_dict_look_ups_in_templates_answer_as_jinja2_does():
    plain = jinja2.Environment(undefined=jinja2.StrictUndefined)
    ours = wording.CatalogueEnvironment(undefined=jinja2.StrictUndefined)
    d = {"regimen": 25, "items": "an item called items", "get": 3, "nested": {"x": [1, 2]}, "n": None}
    for source in ("{{ d.regimen }}", "{{ d.nested.x[1] }}", "{{ d.n }}", "{{ d.get('regimen') }}",
                   "{{ d.items is callable }}", "{{ d.get is callable }}", "{{ d.missing is defined }}",
                   "{{ d.nested.missing is defined }}", "{{ d['items'] }}", "{{ d.keys()|list|length }}",
                   "{{ o.real }}", "{{ t.count(1) }}", "{{ d.__class__.__name__ }}"):
        ctx = {"d": d, "o": 3, "t": (1, 1)}
        assert ours.from_string(source).render(ctx) == plain.from_string(source).render(ctx), source
    for source in ("{{ d.missing }}", "{{ d.nested.missing }}"):
        with pytest.raises(jinja2.UndefinedError):
            ours.from_string(source).render(d=d)

    class Sub(dict):
        @property
        def regimen(self):
            return "the attribute wins"

    assert ours.from_string("{{ d.regimen }}").render(d=Sub(regimen=1)) == "the attribute wins"
    assert isinstance(wording._env(cat.catalogue().raw), wording.CatalogueEnvironment)


def test_plain_text_templates_are_rendered_once_as_jinja2_renders_them():
    env = wording._env(cat.catalogue().raw)
    for source in ("Order a CBC", "Two lines\n\nkept\n", "trailing newline\n"):
        t = wording._compiled(env, source)
        assert isinstance(t, wording.PlainText) and t.render() == env.from_string(source).render()
    assert isinstance(wording._compiled(env, "{{ a.what }}"), jinja2.Template)
    labels = wording.wording().entries["monitoring-cbc-due"].labels
    assert any(isinstance(t, wording.PlainText) for t in labels.values())


def test_the_plan_line_memo_tells_types_and_signs_apart():
    key = wording._memo_key
    assert key(((True, {"ordered": 1}),)) != key(((True, {"ordered": 1.0}),)) != key(((True, {"ordered": True}),))
    assert key(((True, {"low": 0.0}),)) != key(((True, {"low": -0.0}),))
    assert key(((True, None),)) != key(((False, None),))  # a value None is not an absent value
    plan = {"ordered": 150.0, "rules": ["a", "b"], "regimen": {"per_dose": 25.0}}
    copy = json.loads(json.dumps(plan))
    assert key(((True, plan),)) == key(((True, copy),))  # equal values, other objects: one key
    assert key(((True, {"x": object()}),)) is None
    assert key(((True, ["a", "a"]),)) == key(((True, ["a", "".join(["a"])]),))


def test_app_context_is_what_json_dumps_writes():
    drafts: tuple[Any, ...] = ({"resourceType": "MedicationRequest", "id": "o1", "note": "not for the app",
               "dosageInstruction": [{"text": "Zöliakie \"quoted\" ✓"}]}, "not a dict")
    app = cards.AppLink("https://app.example/launch", 'pt-"1"é', drafts)
    link = app.link(["rule-a", "rule-ü"], "MedicationRequest/o1")
    head = json.dumps({"patient": 'pt-"1"é', "order": "MedicationRequest/o1", "findings": ["rule-a", "rule-ü"]},
                      separators=(",", ":"))
    drafts_json = json.dumps([{k: v for k, v in drafts[0].items() if k != "note"}], separators=(",", ":"))
    assert link["appContext"] == f'{head[:-1]},"draftOrders":{drafts_json}}}'
    assert json.loads(link["appContext"])["draftOrders"][0]["dosageInstruction"][0]["text"].startswith("Zöliakie")
    assert cards.AppLink("u", None, ()).link([], "")["appContext"] == \
        '{"patient":null,"order":"","findings":[],"draftOrders":[]}'


def test_a_cards_knowledge_parts_are_the_knowledge_s():
    from rules.knowledge_base import load

    f = _sample("interaction-ace-inhibitors", "MedicationRequest/x")
    card = cards.card(f, wording.render(f), drafts={}, patient_id=None, today=TODAY)
    keys = cat.sources_of(f)
    kb = load()
    assert card["source"]["label"] == kb.source(keys[0]).label
    urls = [kb.source(k).url for k in keys if kb.source(k).url]
    assert [link["url"] for link in card["links"]] == list(dict.fromkeys(urls))
    assert card["overrideReasons"] == cards.override_reasons(f.rule_id)
    assert card["overrideReasons"] is not cards.override_reasons(f.rule_id)  # a list of its own on every card
    assert [r["code"] for r in card["overrideReasons"]] == list(cat.catalogue()[f.rule_id].override_reasons)
