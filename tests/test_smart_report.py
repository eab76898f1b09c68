"""The report counts cards and outcomes separately: a card answered by several feedback items (one
per suggestion, or a change of mind) is one card answered, and never makes "no feedback" negative."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.report import build_report, render_csv, render_table
from service.storage import FeedbackStore
from tests.test_report import MON, accepted, add_cards, overridden


def test_three_cards_four_feedback_items(backend_url):
    store = FeedbackStore.open(backend_url)
    try:
        cards = add_cards(store, "pgx-reduce-dose", 3, MON, "xoi")
        store.record_feedback("thiopurine-order-sign", [
            accepted(cards[0], MON + timedelta(minutes=1)),
            overridden(cards[0], MON + timedelta(minutes=2), "risk-benefit-ratio"),  # the same card again
            accepted(cards[1], MON + timedelta(minutes=3)),
            overridden(cards[1], MON + timedelta(days=8), "need-more-info"),  # a week later: counted once, week 1
        ])
        r = build_report(store, now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    finally:
        store.close()
    t = r.total
    assert (t.shown, t.answered, t.no_feedback, t.feedback, t.accepted, t.overridden) == (3, 2, 1, 4, 2, 2)
    assert r.by_rule["pgx-reduce-dose"].answered == 2
    weeks = sorted(r.by_week)
    assert [r.by_week[w].answered for w in weeks] == [2, 0] and r.by_week[weeks[1]].feedback == 1
    table = render_table(r)
    assert "cards: 3 shown, 2 answered, 1 without feedback" in table
    assert "outcomes: feedback 4 (accepted 2, overridden 2)" in table
    assert render_csv(r).splitlines()[1].startswith("total,all cards,,3,2,4,2,2,")
