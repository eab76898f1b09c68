"""``azathioprine-cds report``: counts per rule, per indicator and per week, in table, CSV and HTML."""
from __future__ import annotations

from typing import Any

import csv
import io
import re
from pathlib import Path
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.cli import main
from service.report import UNKNOWN_RULE, build_report, monday, render_csv, render_html, render_table
from service.storage import FeedbackStore
from service.storage.models import cards
from tests.test_storage import NAR, spec_feedback_bodies

UTC = timezone.utc
MON = datetime(2026, 11, 9, 8, 0, tzinfo=UTC)  # a Monday
RULES = {"pgx-poor-metabolizer": ("TPMT/NUDT15 poor metabolizer", "critical"),
         "pgx-reduce-dose": ("TPMT/NUDT15 intermediate metabolizer", "warning"),
         "pgx-test-missing": ("TPMT/NUDT15 status", "warning")}


def add_cards(store: FeedbackStore, rule: str, n: int, when: datetime, prefix: str) -> list[str]:
    title, indicator = RULES[rule]
    uuids = [f"{prefix}-{i}" for i in range(n)]
    with store.write() as conn:
        conn.execute(sa.insert(cards), [
            {"card_uuid": u, "service_id": "thiopurine-order-sign", "hook": "order-sign", "rule_id": rule,
             "rule_title": title, "indicator": indicator, "knowledge_version": "2026.11.0", "hook_instance": f"h-{u}",
             "issued_at": when} for u in uuids])
    return uuids


def overridden(card: str, when: datetime, code: str | None = None, display: str | None = None) -> dict:
    out: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": when.isoformat()}
    if code:
        reason = {"system": NAR, "code": code}
        if display:
            reason["display"] = display
        out["overrideReason"] = {"reason": reason}
    return out


def accepted(card: str, when: datetime) -> dict:
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": f"s-{card}"}],
            "outcomeTimestamp": when.isoformat()}


@pytest.fixture
def populated(backend_url):
    """Two weeks of cards and feedback, plus the CDS Hooks specification's example feedback."""
    store = FeedbackStore.open(backend_url)
    week2 = MON + timedelta(days=7)
    poor = add_cards(store, "pgx-poor-metabolizer", 4, MON, "poor")
    reduce1 = add_cards(store, "pgx-reduce-dose", 10, MON + timedelta(days=2), "red1")
    reduce2 = add_cards(store, "pgx-reduce-dose", 10, week2 + timedelta(days=6, hours=15), "red2")  # Sunday night
    add_cards(store, "pgx-test-missing", 3, week2, "test")
    items = [accepted(poor[0], MON + timedelta(minutes=5)), accepted(poor[1], MON + timedelta(minutes=6))]
    items += [overridden(u, MON + timedelta(days=2, minutes=1), "risk-benefit-ratio") for u in reduce1[:6]]
    items += [overridden(u, MON + timedelta(days=2, minutes=2), "need-more-info") for u in reduce1[6:8]]
    items += [accepted(u, MON + timedelta(days=2, minutes=3)) for u in reduce1[8:]]
    items += [overridden(u, week2 + timedelta(days=6, hours=15, minutes=5)) for u in reduce2[:3]]
    store.record_feedback("thiopurine-order-sign", items)
    for body in spec_feedback_bodies().values():
        store.record_feedback("thiopurine-order-sign", body["feedback"])
    yield store
    store.close()


def test_counts_per_rule_indicator_and_week(populated):
    r = build_report(populated)
    assert (r.total.shown, r.total.feedback, r.total.accepted, r.total.overridden) == (27, 18, 5, 13)

    poor = r.by_rule["pgx-poor-metabolizer"]
    assert (poor.shown, poor.feedback, poor.accepted, poor.overridden, poor.override_rate) == (4, 2, 2, 0, 0.0)
    red = r.by_rule["pgx-reduce-dose"]
    assert (red.shown, red.feedback, red.accepted, red.overridden) == (20, 13, 2, 11)
    assert red.override_rate == pytest.approx(11 / 13)
    # the display comes from the card's own override reasons when the EHR sends only the code
    assert r.top_reasons(red) == [("Recipient assessment of risk/benefit ratio", 6), ("no reason given", 3),
                                  ("Could not address recommended action due to need for more information/pending "
                                   "results/pending consult", 2)]
    missing = r.by_rule["pgx-test-missing"]
    assert (missing.shown, missing.feedback, missing.override_rate) == (3, 0, None)
    assert r.rule_titles["pgx-reduce-dose"] == "TPMT/NUDT15 intermediate metabolizer"

    # the specification's feedback names cards no instance issued: counted, under their own heading
    spec = r.by_rule[UNKNOWN_RULE]
    assert (spec.shown, spec.feedback, spec.accepted, spec.overridden) == (0, 3, 1, 2)
    assert dict(r.top_reasons(spec)) == {"d7ecf885": 1, "no reason given": 1}
    assert r.rules()[-1] == UNKNOWN_RULE and r.rules()[0] == "pgx-reduce-dose"

    assert r.by_indicator["critical"].shown == 4 and r.by_indicator["warning"].shown == 23
    assert r.by_indicator["warning"].overridden == 11 and r.by_indicator["unknown"].feedback == 3
    assert r.indicators() == ["critical", "warning", "unknown"]

    week1, week2 = monday(MON.date()), monday(MON.date()) + timedelta(days=7)
    assert (r.by_week[week1].shown, r.by_week[week1].feedback, r.by_week[week1].overridden) == (14, 12, 8)
    assert (r.by_week[week2].shown, r.by_week[week2].feedback) == (13, 3)  # Sunday 23:00 UTC is still week 2
    assert r.by_week[date(2020, 12, 7)].overridden == 2 and r.by_week[date(2021, 12, 6)].accepted == 1


def test_since_limits_cards_and_feedback(populated):
    r = build_report(populated, since=MON.date() + timedelta(days=7))
    assert (r.total.shown, r.total.feedback, r.total.overridden) == (13, 3, 3)
    assert UNKNOWN_RULE not in r.by_rule and r.by_rule["pgx-poor-metabolizer"].shown == 0
    assert list(r.by_week) == [monday(MON.date()) + timedelta(days=7)]


def test_table_and_csv(populated):
    r = build_report(populated, now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    table = render_table(r)
    assert "cards: 27 shown, 15 answered, 12 without feedback" in table  # the spec's cards were not shown here
    assert "outcomes: feedback 18 (accepted 5, overridden 13), override rate 72 %" in table
    line = next(x for x in table.splitlines() if x.startswith("pgx-reduce-dose"))
    assert re.search(r"pgx-reduce-dose\s+20\s+13\s+13\s+2\s+11\s+85 %\s+Recipient assessment", line)
    assert UNKNOWN_RULE in table and "2026-W46 (09 Nov)" in table

    rows = list(csv.DictReader(io.StringIO(render_csv(r))))
    by = {(x["section"], x["key"]): x for x in rows}
    assert by[("total", "all cards")]["cards_shown"] == "27"
    red = by[("rule", "pgx-reduce-dose")]
    assert (red["title"], red["feedback"], red["overridden"], red["override_rate"]) == \
        ("TPMT/NUDT15 intermediate metabolizer", "13", "11", "0.8462")
    assert by[("rule", UNKNOWN_RULE)]["feedback"] == "3"
    assert by[("indicator", "critical")]["accepted"] == "2"
    assert by[("week", "2026-11-09")]["cards_shown"] == "14"
    assert by[("rule", "pgx-test-missing")]["override_rate"] == ""


def test_html_is_one_self_contained_file_with_charts(populated):
    html = render_html(build_report(populated))
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<svg") == 3 and "How to read this report" in html
    # no network: no scripts, stylesheets, images or fonts fetched from anywhere
    assert "<script" not in html.lower() and "<link" not in html.lower() and "<img" not in html.lower()
    assert not re.search(r"(src|href)\s*=", html, re.I) and "url(" not in html and "@import" not in html
    assert "pgx-reduce-dose" in html and "85 %" in html and "d7ecf885" in html
    assert "TPMT/NUDT15 intermediate metabolizer" in html


def test_untrusted_text_is_escaped(backend_url):
    store = FeedbackStore.open(backend_url)
    try:
        evil = "<script>alert(1)</script>"
        store.record_feedback("thiopurine-order-sign", [
            overridden("x-1", MON, "=1+1"), overridden("x-2", MON, "=1+1"),  # a spreadsheet formula, no display
            overridden("x-3", MON, "c", evil + "\x1b[31m")])
        r = build_report(store)
    finally:
        store.close()
    html = render_html(r)
    assert evil not in html and "&lt;script&gt;" in html
    assert "\x1b" not in render_table(r)
    cells = [c for row in csv.reader(io.StringIO(render_csv(r))) for c in row]
    assert "'=1+1 (2); " + evil + "\x1b[31m (1)" in cells
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)


def test_empty_store_renders(tmp_path):
    store = FeedbackStore.open(f"sqlite:///{tmp_path}/empty.sqlite3")
    try:
        r = build_report(store)
    finally:
        store.close()
    assert "cards: 0 shown, 0 answered" in render_table(r)
    assert render_csv(r).startswith("section,key")
    assert "No feedback received yet" in render_html(r)


def test_command_line(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path}/data/feedback.sqlite3"
    store = FeedbackStore.open(url)
    add_cards(store, "pgx-poor-metabolizer", 2, MON, "p")
    store.record_feedback("thiopurine-order-sign", [overridden("p-0", MON, "risk-benefit-ratio")])
    store.close()

    monkeypatch.setenv("AZA_CDS_DATABASE_URL", url)
    assert main(["report"]) == 0
    assert "pgx-poor-metabolizer" in capsys.readouterr().out
    assert main(["report", "--format", "csv", "--since", "2026-11-01"]) == 0
    assert "rule,pgx-poor-metabolizer,TPMT/NUDT15 poor metabolizer,2,1,1,0,1,1.0000" in capsys.readouterr().out
    out = tmp_path / "report.html"
    monkeypatch.delenv("AZA_CDS_DATABASE_URL")
    assert main(["report", "--format", "html", "--database-url", url, "-o", str(out)]) == 0
    assert "<svg" in out.read_text(encoding="utf-8")

    assert main(["report", "--since", "last week", "--database-url", url]) == 2
    assert main(["report", "--database-url", f"sqlite:///{tmp_path}/nothing-here.sqlite3"]) == 1
    assert "no feedback store" in capsys.readouterr().err
    assert not (tmp_path / "nothing-here.sqlite3").exists()  # a report never creates a store


def test_markup_lives_in_the_template_only():
    """service/report.py computes numbers and chart geometry; every tag is in templates/report.html."""
    source = (Path(__file__).resolve().parent.parent / "service" / "report.py").read_text(encoding="utf-8")
    assert not re.search(r"<(svg|rect|text|table|tr|td|div|p|h\d|html)\b", source)
    from service.report import _templates

    assert _templates().autoescape("report.html") is True
