"""``azathioprine-cds report``: what clinicians did with the cards, per rule, per severity, per week.

Reads the feedback store (``AZA_CDS_DATABASE_URL`` or the SQLite file in the data directory, or
``--database-url``). Counting happens in SQL, grouped by rule, indicator and day, so the report
stays fast on a large store; weeks (Monday to Sunday, UTC) are summed here.

    cards shown    cards the service returned (``cds_card``)
    answered       cards with at least one feedback item (a card counts once however many items
                   name it: an EHR may send one per suggestion, or change its mind)
    no feedback    cards shown and never answered (shown - answered)
    feedback       feedback items received (accepted + overridden): outcomes, not cards
    override rate  overridden / feedback, the share of outcomes that dismissed the card

Feedback about a card this store never recorded (issued by another deployment, or from the
CDS Hooks specification's examples) is counted under "card not issued here". No patient data is
stored, so none can be shown; clinicians' free-text comments are deliberately left out.
"""
from __future__ import annotations

import csv
import io
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

UNKNOWN_RULE = "(card not issued here)"
UNKNOWN_INDICATOR = "unknown"
NO_REASON = ("", "")
LOW_NUMBERS = 10  # rates from fewer feedback items are shown, but greyed: too few to judge
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2, UNKNOWN_INDICATOR: 3}
CHART_WEEKS = 26


@dataclass
class Counts:
    shown: int = 0
    answered: int = 0  # distinct cards with feedback (``feedback`` counts items, which may be more)
    feedback: int = 0
    accepted: int = 0
    overridden: int = 0
    reasons: Counter = field(default_factory=Counter)  # (system, code) → overridden items

    def add_feedback(self, outcome: str, reason: tuple[str, str], n: int) -> None:
        self.feedback += n
        if outcome == "accepted":
            self.accepted += n
        else:
            self.overridden += n
            self.reasons[reason] += n

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.feedback if self.feedback else None

    @property
    def no_feedback(self) -> int:
        return max(self.shown - self.answered, 0)


@dataclass
class Report:
    store: str
    generated_at: datetime
    since: date | None
    retention_days: int | None
    total: Counts = field(default_factory=Counts)
    by_rule: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    rule_titles: dict[str, str] = field(default_factory=dict)
    by_indicator: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_week: dict[date, Counts] = field(default_factory=lambda: defaultdict(Counts))
    reason_names: dict[tuple[str, str], str] = field(default_factory=dict)

    def rules(self) -> list[str]:
        return sorted(self.by_rule, key=lambda r: (r == UNKNOWN_RULE, -self.by_rule[r].shown,
                                                   -self.by_rule[r].feedback, r))

    def indicators(self) -> list[str]:
        return sorted(self.by_indicator, key=lambda i: (INDICATOR_ORDER.get(i, 9), i))

    def weeks(self) -> list[date]:
        return sorted(self.by_week)

    def reason_name(self, reason: tuple[str, str]) -> str:
        if reason == NO_REASON:
            return "no reason given"
        return self.reason_names.get(reason) or reason[1]

    def top_reasons(self, counts: Counts, n: int = 3) -> list[tuple[str, int]]:
        ordered = sorted(counts.reasons.items(), key=lambda kv: (-kv[1], self.reason_name(kv[0])))
        return [(self.reason_name(r), k) for r, k in ordered[:n]]


# -- gathering ------------------------------------------------------------------------------------


def _day(column, dialect: str):
    # SQLite keeps UTC text, PostgreSQL timestamptz (sessions run in UTC): the UTC calendar day either way
    return sa.func.date(column) if dialect == "sqlite" else sa.cast(column, sa.Date)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def build_report(store, *, since: date | None = None, now: datetime | None = None) -> Report:
    from hooks.cards import all_override_reasons

    from .storage.models import cards, feedback

    dialect = store.dialect
    report = Report(store=store.display_url, generated_at=now or datetime.now(timezone.utc), since=since,
                    retention_days=store.comment_retention_days)
    report.reason_names = {(r["system"], r["code"]): r["display"] for r in all_override_reasons()}
    start = datetime.combine(since, time.min, tzinfo=timezone.utc) if since else None
    c, f = cards.c, feedback.c

    day = _day(c.issued_at, dialect).label("day")
    shown_q = sa.select(c.rule_id, c.indicator, day, sa.func.count().label("n")).group_by(c.rule_id, c.indicator, day)
    if start:
        shown_q = shown_q.where(c.issued_at >= start)
    titles_q = sa.select(c.rule_id, sa.func.max(c.rule_title)).group_by(c.rule_id)

    fday = _day(f.outcome_at, dialect).label("day")
    system = sa.func.coalesce(f.override_reason_system, "").label("system")
    code = sa.func.coalesce(f.override_reason_code, "").label("code")
    fb_q = (sa.select(c.rule_id, c.indicator, f.outcome, fday, system, code,
                      sa.func.max(f.override_reason_display).label("display"), sa.func.count().label("n"))
            .select_from(feedback.outerjoin(cards, c.card_uuid == f.card_uuid))
            .group_by(c.rule_id, c.indicator, f.outcome, fday, system, code))
    if start:
        fb_q = fb_q.where(f.outcome_at >= start)

    # cards answered: one row per card with feedback (its first feedback's day), then counted per group;
    # only cards issued here (feedback on other cards is counted as outcomes, under UNKNOWN_RULE)
    first = (sa.select(f.card_uuid, sa.func.min(f.outcome_at).label("first_at")).group_by(f.card_uuid))
    if start:
        first = first.where(f.outcome_at >= start)
    per_card = first.subquery()
    aday = _day(per_card.c.first_at, dialect).label("day")
    answered_q = (sa.select(c.rule_id, c.indicator, aday, sa.func.count().label("n"))
                  .select_from(per_card.join(cards, c.card_uuid == per_card.c.card_uuid))
                  .group_by(c.rule_id, c.indicator, aday))

    with store.read() as conn:
        shown_rows = conn.execute(shown_q).all()
        titles = conn.execute(titles_q).all()
        fb_rows = conn.execute(fb_q).all()
        answered_rows = conn.execute(answered_q).all()

    report.rule_titles = {rule: title for rule, title in titles if title}
    for rule, indicator, d, n in shown_rows:
        for counts in (report.total, report.by_rule[rule], report.by_indicator[indicator],
                       report.by_week[monday(_as_date(d))]):
            counts.shown += n
    for rule, indicator, outcome, d, sys_, code_, display, n in fb_rows:
        reason = (sys_, code_)
        if display and reason not in report.reason_names:
            report.reason_names[reason] = display
        for counts in (report.total, report.by_rule[rule or UNKNOWN_RULE],
                       report.by_indicator[indicator or UNKNOWN_INDICATOR], report.by_week[monday(_as_date(d))]):
            counts.add_feedback(outcome, reason, n)
    for rule, indicator, d, n in answered_rows:
        for counts in (report.total, report.by_rule[rule], report.by_indicator[indicator],
                       report.by_week[monday(_as_date(d))]):
            counts.answered += n
    return report


# -- text formats ---------------------------------------------------------------------------------


def _clean(value: str, limit: int = 80) -> str:
    """Untrusted text (reason displays come from the EHR) made safe for a terminal line."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f} %"


def _week_label(monday_: date) -> str:
    iso = monday_.isocalendar()
    return f"{iso[0]}-W{iso[1]:02d} ({monday_.strftime('%d %b')})"


def _rows(report: Report) -> list[tuple[str, str, str, Counts]]:
    """(section, key, title, counts) in report order."""
    out = [("total", "all cards", "", report.total)]
    out += [("rule", r, report.rule_titles.get(r, ""), report.by_rule[r]) for r in report.rules()]
    out += [("indicator", i, "", report.by_indicator[i]) for i in report.indicators()]
    out += [("week", m.isoformat(), _week_label(m), report.by_week[m]) for m in report.weeks()]
    return out


def _reasons_text(report: Report, counts: Counts, limit: int = 40) -> str:
    return "; ".join(f"{_clean(name, limit)} ×{n}" for name, n in report.top_reasons(counts))


def _period(report: Report) -> str:
    return f"since {report.since.isoformat()}" if report.since else "all time"


def render_table(report: Report) -> str:
    head = ["", "shown", "answered", "feedback", "accepted", "overridden", "override rate", "top override reasons"]

    def table(title: str, items: list[tuple[str, Counts]]) -> list[str]:
        body = [[_clean(label, 60), str(k.shown), str(k.answered), str(k.feedback), str(k.accepted), str(k.overridden),
                 _pct(k.override_rate), _reasons_text(report, k, 28)] for label, k in items]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        line = lambda row: "  ".join(  # noqa: E731
            cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        return [title, line([head[0], *head[1:]]).rstrip(), "  ".join("-" * w for w in widths)] + \
            [line(row).rstrip() for row in body] + [""]

    t = report.total
    out = [f"Azathioprine CDS: what prescribers did with the cards ({_period(report)})",
           f"store {report.store}, generated {report.generated_at:%Y-%m-%d %H:%M} UTC", "",
           f"cards: {t.shown} shown, {t.answered} answered, {t.no_feedback} without feedback",
           f"outcomes: feedback {t.feedback} (accepted {t.accepted}, overridden {t.overridden}), "
           f"override rate {_pct(t.override_rate)}", ""]
    out += table("By rule", [(r if r == UNKNOWN_RULE else f"{r}", report.by_rule[r]) for r in report.rules()])
    out += table("By indicator", [(i, report.by_indicator[i]) for i in report.indicators()])
    out += table("By week (Monday to Sunday, UTC)", [(_week_label(m), report.by_week[m]) for m in report.weeks()])
    out.append("A card counts once as answered however many feedback items name it; outcomes count every item. "
               "override rate = overridden / feedback received; cards shown count the week they were shown, "
               "feedback the week the prescriber acted.")
    return "\n".join(out) + "\n"


def _csv_safe(value: str) -> str:
    # a cell starting like a formula would run in a spreadsheet; reason texts come from outside
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "title", "cards_shown", "cards_answered", "feedback", "accepted", "overridden",
                "override_rate", "top_override_reasons"])
    for section, key, title, k in _rows(report):
        rate = "" if k.override_rate is None else f"{k.override_rate:.4f}"
        reasons = "; ".join(f"{name} ({n})" for name, n in report.top_reasons(k))
        w.writerow([section, _csv_safe(key), _csv_safe(title), k.shown, k.answered, k.feedback, k.accepted,
                    k.overridden, rate, _csv_safe(reasons)])
    return buf.getvalue()


# -- HTML -----------------------------------------------------------------------------------------
# Python computes the numbers and the charts' geometry; templates/report.html (Jinja2, autoescaped)
# turns them into one self-contained page. Every text from outside (reason displays, rule titles)
# reaches the page only through the template's escaping.

ACCEPTED, OVERRIDDEN, UNANSWERED, LOW, FEEDBACK = "#1b7837", "#c51b7d", "#c8c8c8", "#9e9e9e", "#4d4d4d"
LABEL_W, BAR_W, ROW_H = 230, 440, 30


def _stacked_chart(report: Report) -> dict | None:
    """Per rule, one bar per card shown: accepted | overridden | no feedback."""
    rules = report.rules()
    if not rules:
        return None
    top = max((max(k.shown, k.feedback) for k in report.by_rule.values()), default=0) or 1
    height = 30 + ROW_H * len(rules) + 30
    rows = []
    for i, rule in enumerate(rules):
        k = report.by_rule[rule]
        y = 20 + i * ROW_H
        x, segments = float(LABEL_W), []
        for n, color, what in ((k.accepted, ACCEPTED, "accepted"), (k.overridden, OVERRIDDEN, "overridden"),
                               (k.no_feedback, UNANSWERED, "no feedback")):
            if n:
                w = BAR_W * n / top
                segments.append({"x": round(x, 1), "width": round(max(w, 1.5), 1), "color": color,
                                 "title": f"{rule}: {n} {what}"})
                x += w
        rows.append({"label": _clean(rule, 34), "y": y, "segments": segments, "note_x": round(x + 6, 1),
                     "note": f"{k.shown} shown, {k.answered} answered ({k.feedback} feedback items)"})
    legend = [{"x": LABEL_W + j * 130, "color": color, "label": what} for j, (color, what) in
              enumerate(((ACCEPTED, "accepted"), (OVERRIDDEN, "overridden"), (UNANSWERED, "no feedback")))]
    return {"width": LABEL_W + BAR_W + 150, "height": height, "label_x": LABEL_W - 8, "bar_h": ROW_H - 10,
            "rows": rows, "legend_y": height - 12, "legend": legend}


def _rates_chart(report: Report) -> dict | None:
    """Override rate per rule, 0-100 %, greyed below LOW_NUMBERS feedback items."""
    rules = [r for r in report.rules() if report.by_rule[r].feedback]
    if not rules:
        return None
    height = 30 + ROW_H * len(rules) + 24
    grid = [{"x": LABEL_W + BAR_W * pct / 100, "label": f"{pct} %"} for pct in (0, 25, 50, 75, 100)]
    rows = []
    for i, rule in enumerate(rules):
        k = report.by_rule[rule]
        rate = k.override_rate or 0.0
        enough = k.feedback >= LOW_NUMBERS
        rows.append({"label": _clean(rule, 34), "y": 20 + i * ROW_H, "width": round(max(BAR_W * rate, 1.5), 1),
                     "color": OVERRIDDEN if enough else LOW, "title": f"{rule}: {k.overridden} of {k.feedback} overridden",
                     "text_x": round(LABEL_W + BAR_W * rate + 6, 1),
                     "text": f"{_pct(k.override_rate)} ({k.overridden} of {k.feedback})"
                             + ("" if enough else " – too few to judge")})
    return {"width": LABEL_W + BAR_W + 150, "height": height, "label_x": LABEL_W - 8, "bar_x": LABEL_W,
            "bar_h": ROW_H - 10, "grid": grid, "grid_bottom": height - 22, "axis_y": height - 6, "rows": rows}


def _weeks_chart(report: Report) -> dict | None:
    """The last CHART_WEEKS weeks up to the latest week with data: cards shown (bars), override rate (line)."""
    if not report.by_week:
        return None
    last = max(report.by_week)
    weeks = [last - timedelta(weeks=i) for i in range(CHART_WEEKS - 1, -1, -1)]
    weeks = [w for w in weeks if w >= min(report.by_week)] or [last]
    left, width, plot_h, top, rate_h = 60, 620, 160, 20, 120
    step = width / len(weeks)
    peak = max(max(report.by_week.get(w, Counts()).shown, report.by_week.get(w, Counts()).feedback) for w in weeks) or 1
    rate_top = top + plot_h + 50
    bars, xlabels, points = [], [], []
    every = max(1, round(len(weeks) / 6))
    for i, w in enumerate(weeks):
        k = report.by_week.get(w, Counts())
        x = left + i * step
        for n, color, offset in ((k.shown, UNANSWERED, 0.1), (k.feedback, FEEDBACK, 0.5)):
            if n:
                bh = plot_h * n / peak
                bars.append({"x": round(x + step * offset, 1), "y": round(top + plot_h - bh, 1),
                             "width": round(step * 0.4, 1), "height": round(bh, 1), "color": color,
                             "title": f"{_week_label(w)}: {k.shown} shown, {k.feedback} feedback"})
        if k.override_rate is not None:
            points.append({"x": round(x + step / 2, 1), "y": round(rate_top + rate_h * (1 - k.override_rate), 1),
                           "color": OVERRIDDEN if k.feedback >= LOW_NUMBERS else LOW,
                           "title": f"{_week_label(w)}: {k.overridden} of {k.feedback} overridden"})
        if i % every == 0:
            xlabels.append({"x": round(x + step / 2, 1), "label": w.strftime("%d %b %y")})
    count_grid = [{"y": top + plot_h * (1 - value / peak), "label": str(value)} for value in (0, peak)]
    rate_grid = [{"y": rate_top + rate_h * (1 - pct / 100), "label": f"{pct} %"} for pct in (0, 50, 100)]
    return {"width": left + width + 100, "height": rate_top + rate_h + 40, "left": left, "right": left + width,
            "top": top, "xlabel_y": top + plot_h + 16, "rate_title_y": rate_top - 10, "bars": bars,
            "xlabels": xlabels, "count_grid": count_grid, "rate_grid": rate_grid, "points": points,
            "line": " ".join(f"{p['x']},{p['y']}" for p in points) if len(points) > 1 else "",
            "line_color": OVERRIDDEN}


def _table(report: Report, items: list[tuple[str, str, Counts]], *, code: bool = False) -> list[dict]:
    return [{"name": label, "code": code and label != UNKNOWN_RULE, "title": title, "shown": k.shown,
             "answered": k.answered, "feedback": k.feedback, "accepted": k.accepted, "overridden": k.overridden,
             "rate": _pct(k.override_rate), "low": k.override_rate is not None and k.feedback < LOW_NUMBERS,
             "reasons": report.top_reasons(k)} for label, title, k in items]


@cache
def _templates():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(report: Report) -> str:
    t = report.total
    return _templates().get_template("report.html").render(
        period=_period(report), generated=f"{report.generated_at:%d %b %Y %H:%M}", store=report.store,
        low_numbers=LOW_NUMBERS, unknown_rule=UNKNOWN_RULE,
        retention=("kept for ever" if report.retention_days is None
                   else f"deleted {report.retention_days} days after they are received"),
        kpis=[(t.shown, "cards shown"), (t.answered, "cards answered"), (t.feedback, "feedback items"),
              (t.accepted, "accepted"),
              (t.overridden, "overridden"), (_pct(t.override_rate), "override rate")],
        stacked=_stacked_chart(report), rates=_rates_chart(report), weeks_chart=_weeks_chart(report),
        by_rule=_table(report, [(r, report.rule_titles.get(r, ""), report.by_rule[r]) for r in report.rules()],
                       code=True),
        by_indicator=_table(report, [(i, "", report.by_indicator[i]) for i in report.indicators()]),
        by_week=_table(report, [(_week_label(m), "", report.by_week[m]) for m in reversed(report.weeks())]),
    )


RENDERERS = {"table": render_table, "csv": render_csv, "html": render_html}


# -- command line ---------------------------------------------------------------------------------


def main(args) -> int:
    from .config import Config
    from .storage import FeedbackStore, StorageError, default_database_url
    from .storage.store import is_memory, normalise_url

    since = None
    if getattr(args, "since", None):
        try:
            since = date.fromisoformat(args.since)
        except ValueError:
            print(f"--since: {args.since!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    cfg = Config.from_env()
    url = getattr(args, "database_url", None) or cfg.database_url or default_database_url(cfg.data_dir)
    try:
        parsed = normalise_url(url)
    except Exception as exc:  # noqa: BLE001 - a malformed URL from the command line
        print(f"cannot read the database URL: {exc}", file=sys.stderr)
        return 2
    if parsed.get_backend_name() == "sqlite" and not is_memory(parsed) and not Path(parsed.database or "").exists():
        print(f"no feedback store at {parsed.database}: the service creates it when it first starts "
              "(set AZA_CDS_DATA_DIR or AZA_CDS_DATABASE_URL to read another one)", file=sys.stderr)
        return 1
    try:
        store = FeedbackStore.open(parsed, comment_retention_days=cfg.comment_retention_days)
        try:
            report = build_report(store, since=since)
        finally:
            store.close()
    except (StorageError, sa.exc.SQLAlchemyError) as exc:
        print(f"cannot read the feedback store {parsed.render_as_string(hide_password=True)}: "
              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
        return 1
    text = RENDERERS[args.format](report)
    if getattr(args, "output", None):
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
