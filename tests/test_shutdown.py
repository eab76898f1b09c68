"""Card records survive every shutdown that allows it, and feedback on them is attributed.

Cards are queued in memory and written in batches; here the batch interval is 60 s, so only a
shutdown path can have written them: SIGTERM to ``serve --dev`` (the Flask development server)
and to gunicorn with two workers, where the feedback about a card is posted to whichever worker
the new connection reaches.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import urllib.error
import urllib.request

import pytest

from tests.builders import SERVICE, hook_request, med_request, prefetch
from tests.test_serving import _OPENER, Serve

SIGN = f"/cds-services/{SERVICE['order-sign']}"


def _post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Connection": "close"})
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 400:
            raise
        return json.loads(exc.read())


def _rules_of_feedback(db) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT f.card_uuid, c.rule_id FROM cds_feedback f LEFT JOIN cds_card c "
                            "ON c.card_uuid = f.card_uuid ORDER BY f.id").fetchall()


@pytest.mark.parametrize("args", [("--dev",), ("--insecure-no-auth", "--workers", "2", "--threads", "2")],
                         ids=["dev", "gunicorn-2-workers"])
def test_sigterm_writes_queued_cards_and_feedback_is_attributed(tmp_path, args):
    srv = Serve(tmp_path, *args, env={"AZA_CDS_CARD_FLUSH_SECONDS": "60"})
    issued, stored = [], []
    try:
        for _ in range(4):
            cards = _post(srv.base, SIGN, hook_request(orders=[med_request(daily_mg=150)], pre=prefetch(pgx=[])))["cards"]
            assert cards
            issued.append((cards[0]["uuid"], cards[0]["source"]["topic"]["code"]))
            fb = {"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden",
                                "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}
            answer = _post(srv.base, SIGN + "/feedback", fb)
            if "stored" in answer:
                assert answer["stored"] == 1
                stored.append(issued[-1])
            else:  # feedback only about issued cards: this one is still queued in the other gunicorn worker
                assert len(args) > 1 and answer["issue"][0]["expression"] == ["$.feedback[0].card"], answer
        # and cards nobody has given feedback on yet: only the shutdown can write them
        unanswered = [c["uuid"] for _ in range(3) for c in _post(srv.base, SIGN, hook_request(pre=prefetch(pgx=[])))["cards"]]
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0
    finally:
        srv.close()
    assert _rules_of_feedback(tmp_path / "feedback.sqlite3") == stored
    if "--dev" in args:  # one process: every card is known to the process that takes the feedback
        assert stored == issued
    with sqlite3.connect(tmp_path / "feedback.sqlite3") as conn:
        recorded = {u for (u,) in conn.execute("SELECT card_uuid FROM cds_card")}
    assert unanswered and set(unanswered) <= recorded
