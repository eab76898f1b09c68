"""``azathioprine-cds report``: what clinicians did with the cards, per rule, per severity, per week.

Reads the feedback store (``AZA_CDS_DATABASE_URL`` or the SQLite file in the data directory, or
``--database-url``). Counting happens in SQL, grouped by rule, indicator and day, so the report
stays fast on a large store; weeks (Monday to Sunday, UTC) are summed here.

    cards shown    cards the service returned (``cds_card``)
    feedback       feedback items received (accepted + overridden)
    override rate  overridden / feedback, the share of answered cards the prescriber dismissed

Feedback about a card this store never recorded (issued by another deployment, or from the
CDS Hooks specification's examples) is counted under "card not issued here". No patient data is
stored, so none can be shown; clinicians' free-text comments are deliberately left out.
"""
from __future__ import annotations

import csv
import html
import io
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
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
        return max(self.shown - self.feedback, 0)


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
    from hooks.cards import OVERRIDE_REASONS

    from .storage.models import cards, feedback

    dialect = store.dialect
    report = Report(store=store.display_url, generated_at=now or datetime.now(timezone.utc), since=since,
                    retention_days=store.comment_retention_days)
    report.reason_names = {(r["system"], r["code"]): r["display"] for r in OVERRIDE_REASONS}
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

    with store.read() as conn:
        shown_rows = conn.execute(shown_q).all()
        titles = conn.execute(titles_q).all()
        fb_rows = conn.execute(fb_q).all()

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
    head = ["", "shown", "feedback", "accepted", "overridden", "override rate", "top override reasons"]

    def table(title: str, items: list[tuple[str, Counts]]) -> list[str]:
        body = [[_clean(label, 60), str(k.shown), str(k.feedback), str(k.accepted), str(k.overridden),
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
           f"cards shown {t.shown}, feedback {t.feedback} (accepted {t.accepted}, overridden {t.overridden}), "
           f"override rate {_pct(t.override_rate)}", ""]
    out += table("By rule", [(r if r == UNKNOWN_RULE else f"{r}", report.by_rule[r]) for r in report.rules()])
    out += table("By indicator", [(i, report.by_indicator[i]) for i in report.indicators()])
    out += table("By week (Monday to Sunday, UTC)", [(_week_label(m), report.by_week[m]) for m in report.weeks()])
    out.append("override rate = overridden / feedback received; cards shown count the week they were shown, "
               "feedback the week the prescriber acted.")
    return "\n".join(out) + "\n"


def _csv_safe(value: str) -> str:
    # a cell starting like a formula would run in a spreadsheet; reason texts come from outside
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "title", "cards_shown", "feedback", "accepted", "overridden", "override_rate",
                "top_override_reasons"])
    for section, key, title, k in _rows(report):
        rate = "" if k.override_rate is None else f"{k.override_rate:.4f}"
        reasons = "; ".join(f"{name} ({n})" for name, n in report.top_reasons(k))
        w.writerow([section, _csv_safe(key), _csv_safe(title), k.shown, k.feedback, k.accepted, k.overridden,
                    rate, _csv_safe(reasons)])
    return buf.getvalue()


# -- HTML -----------------------------------------------------------------------------------------

ACCEPTED, OVERRIDDEN, UNANSWERED, LOW = "#1b7837", "#c51b7d", "#c8c8c8", "#9e9e9e"
e = html.escape


def _svg_stacked(report: Report) -> str:
    """Per rule, one bar per card shown: accepted | overridden | no feedback."""
    rules = report.rules()
    if not rules:
        return ""
    label_w, bar_w, row_h = 230, 440, 30
    top = max((max(k.shown, k.feedback) for k in report.by_rule.values()), default=0) or 1
    h = 30 + row_h * len(rules) + 30
    parts = [f'<svg role="img" aria-labelledby="c1t" viewBox="0 0 {label_w + bar_w + 150} {h}" width="100%">',
             '<title id="c1t">Cards shown per rule, split by what the prescriber did</title>']
    for i, rule in enumerate(rules):
        k = report.by_rule[rule]
        y = 20 + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{e(_clean(rule, 34))}</text>')
        x = label_w
        for n, color, what in ((k.accepted, ACCEPTED, "accepted"), (k.overridden, OVERRIDDEN, "overridden"),
                               (k.no_feedback, UNANSWERED, "no feedback")):
            if n:
                w = bar_w * n / top
                parts.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{max(w, 1.5):.1f}" height="{row_h - 10}" '
                             f'fill="{color}"><title>{e(rule)}: {n} {what}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}" class="n">{k.shown} shown, {k.feedback} answered</text>')
    ly = h - 12
    for j, (color, what) in enumerate(((ACCEPTED, "accepted"), (OVERRIDDEN, "overridden"), (UNANSWERED, "no feedback"))):
        lx = label_w + j * 130
        parts.append(f'<rect x="{lx}" y="{ly - 11}" width="14" height="14" fill="{color}"/>'
                     f'<text x="{lx + 20}" y="{ly}">{what}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_rates(report: Report) -> str:
    """Override rate per rule, 0-100 %, greyed below LOW_NUMBERS feedback items."""
    rules = [r for r in report.rules() if report.by_rule[r].feedback]
    if not rules:
        return '<p class="empty">No feedback received yet, so no override rates.</p>'
    label_w, bar_w, row_h = 230, 440, 30
    h = 30 + row_h * len(rules) + 24
    parts = [f'<svg role="img" aria-labelledby="c2t" viewBox="0 0 {label_w + bar_w + 150} {h}" width="100%">',
             '<title id="c2t">Override rate per rule</title>']
    for pct in (0, 25, 50, 75, 100):
        x = label_w + bar_w * pct / 100
        parts.append(f'<line x1="{x}" y1="14" x2="{x}" y2="{h - 22}" class="grid"/>'
                     f'<text x="{x}" y="{h - 6}" text-anchor="middle" class="axis">{pct} %</text>')
    for i, rule in enumerate(rules):
        k = report.by_rule[rule]
        y = 20 + i * row_h
        rate = k.override_rate or 0.0
        color = OVERRIDDEN if k.feedback >= LOW_NUMBERS else LOW
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{e(_clean(rule, 34))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(bar_w * rate, 1.5):.1f}" height="{row_h - 10}" '
                     f'fill="{color}"><title>{e(rule)}: {k.overridden} of {k.feedback} overridden</title></rect>')
        note = "" if k.feedback >= LOW_NUMBERS else " – too few to judge"
        parts.append(f'<text x="{label_w + bar_w * rate + 6:.1f}" y="{y + 17}" class="n">{_pct(k.override_rate)} '
                     f'({k.overridden} of {k.feedback}){note}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_weeks(report: Report) -> str:
    """The last CHART_WEEKS weeks up to the latest week with data: cards shown (bars), override rate (line)."""
    if not report.by_week:
        return ""
    last = max(report.by_week)
    weeks = [last - timedelta(weeks=i) for i in range(CHART_WEEKS - 1, -1, -1)]
    weeks = [w for w in weeks if w >= min(report.by_week)] or [last]
    left, width, plot_h, top = 60, 620, 160, 20
    step = width / len(weeks)
    peak = max(max(report.by_week.get(w, Counts()).shown, report.by_week.get(w, Counts()).feedback) for w in weeks) or 1
    rate_top = top + plot_h + 50
    h = rate_top + 120 + 40
    parts = [f'<svg role="img" aria-labelledby="c3t" viewBox="0 0 {left + width + 100} {h}" width="100%">',
             '<title id="c3t">Cards shown and override rate per week</title>',
             f'<text x="{left}" y="{top - 6}" class="axis">cards shown (light grey) and feedback received (dark grey) '
             f'per week</text>']
    points = []
    for i, w in enumerate(weeks):
        k = report.by_week.get(w, Counts())
        x = left + i * step
        for n, color, offset in ((k.shown, UNANSWERED, 0.1), (k.feedback, "#4d4d4d", 0.5)):
            if n:
                bh = plot_h * n / peak
                parts.append(f'<rect x="{x + step * offset:.1f}" y="{top + plot_h - bh:.1f}" width="{step * 0.4:.1f}" '
                             f'height="{bh:.1f}" fill="{color}"><title>{_week_label(w)}: {k.shown} shown, '
                             f'{k.feedback} feedback</title></rect>')
        if k.override_rate is not None:
            points.append((x + step / 2, rate_top + 120 * (1 - k.override_rate), k, w))
        every = max(1, round(len(weeks) / 6))
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="axis">'
                         f'{w.strftime("%d %b %y")}</text>')
    for value in (0, peak):
        y = top + plot_h * (1 - value / peak)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" class="axis">{value}</text>')
    parts.append(f'<text x="{left}" y="{rate_top - 10}" class="axis">override rate per week</text>')
    for pct in (0, 50, 100):
        y = rate_top + 120 * (1 - pct / 100)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" class="axis">{pct} %</text>')
    if len(points) > 1:
        parts.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            OVERRIDDEN, " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)))
    for x, y, k, w in points:
        color = OVERRIDDEN if k.feedback >= LOW_NUMBERS else LOW
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{_week_label(w)}: '
                     f'{k.overridden} of {k.feedback} overridden</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(report: Report, first: str, items: list[tuple[str, str, Counts]]) -> str:
    rows = []
    for label, title, k in items:
        rate = _pct(k.override_rate)
        if k.override_rate is not None and k.feedback < LOW_NUMBERS:
            rate = f'<span class="low" title="fewer than {LOW_NUMBERS} feedback items">{rate}</span>'
        reasons = "<br>".join(f"{e(name)} ({n})" for name, n in report.top_reasons(k)) or "–"
        name = f"<code>{e(label)}</code>" if first == "Rule" and label != UNKNOWN_RULE else e(label)
        if title:
            name += f'<div class="sub">{e(title)}</div>'
        rows.append(f"<tr><td>{name}</td><td>{k.shown}</td><td>{k.feedback}</td><td>{k.accepted}</td>"
                    f"<td>{k.overridden}</td><td>{rate}</td><td class='reasons'>{reasons}</td></tr>")
    if not rows:
        return '<p class="empty">Nothing recorded in this period.</p>'
    return ("<table><thead><tr><th>" + e(first) + "</th><th>Cards shown</th><th>Feedback</th><th>Accepted</th>"
            "<th>Overridden</th><th>Override rate</th><th>Top override reasons</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1a1a1a;max-width:980px;margin:2em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555;font-size:.9em}.box{background:#f5f7fa;border:1px solid #dde3ea;border-radius:6px;padding:.8em 1.1em}
.kpis{display:flex;gap:1em;flex-wrap:wrap;margin:1.2em 0}.kpi{flex:1;min-width:130px;border:1px solid #dde3ea;border-radius:6px;padding:.6em .9em}
.kpi b{display:block;font-size:1.6em}.kpi span{color:#555;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.92em;margin-top:.6em}th,td{border-bottom:1px solid #e3e3e3;padding:.35em .5em;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.reasons,th:last-child{text-align:left}th{background:#f0f0f0}.sub{color:#666;font-size:.85em}
.low{color:#888}.empty{color:#777;font-style:italic}svg text{font-size:12px;fill:#1a1a1a}svg .n,svg .axis{fill:#555;font-size:11px}
svg .grid{stroke:#ddd;stroke-width:1}code{font-size:.95em}@media print{body{margin:0}h2{break-after:avoid}}
"""


def render_html(report: Report) -> str:
    t = report.total
    retention = ("kept for ever" if report.retention_days is None
                 else f"deleted {report.retention_days} days after they are received")
    kpis = [(t.shown, "cards shown"), (t.feedback, "feedback received"), (t.accepted, "accepted"),
            (t.overridden, "overridden"), (_pct(t.override_rate), "override rate")]
    weeks = [(_week_label(m), "", report.by_week[m]) for m in reversed(report.weeks())]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Azathioprine CDS – card feedback report</title><style>{_CSS}</style></head><body>
<h1>Azathioprine safety alerts: what prescribers did with them</h1>
<p class="meta">Period: {e(_period(report))} · generated {report.generated_at:%d %b %Y %H:%M} UTC · store {e(report.store)}</p>
<div class="box"><b>How to read this report.</b> When someone orders azathioprine (or another thiopurine) the
service may show a <i>card</i>: a warning with the reason and usually a one-click fix. Electronic health records that
support CDS Hooks feedback then tell us whether the prescriber <i>accepted</i> a suggestion on the card or
<i>overrode</i> (dismissed) it, and often why. The <b>override rate</b> is overridden ÷ feedback received. A rule that is
overridden most of the time is probably not helping (alert fatigue): check its wording, its threshold and the reasons
given. Rates from fewer than {LOW_NUMBERS} feedback items are shown in grey – too few to judge. "No feedback" means the
record system did not report an outcome (not every system sends feedback). Feedback about cards this service did not
issue (for example from another installation) is listed as “{e(UNKNOWN_RULE)}”.</div>
<div class="kpis">{"".join(f'<div class="kpi"><b>{v}</b><span>{e(label)}</span></div>' for v, label in kpis)}</div>
<h2>By rule</h2>
{_svg_stacked(report)}
{_html_table(report, "Rule", [(r, report.rule_titles.get(r, ""), report.by_rule[r]) for r in report.rules()])}
<h2>Override rate by rule</h2>
{_svg_rates(report)}
<h2>By severity of the card</h2>
<p class="meta">critical = the order should not go ahead as written; warning = change or check something; info = for awareness.</p>
{_html_table(report, "Indicator", [(i, "", report.by_indicator[i]) for i in report.indicators()])}
<h2>Over time (weeks Monday to Sunday, UTC)</h2>
{_svg_weeks(report)}
{_html_table(report, "Week", weeks)}
<p class="meta">Cards count in the week they were shown, feedback in the week the prescriber acted. This report holds no
patient data: the store keeps which rule fired, never for whom. Prescribers' free-text comments are not shown here; in the
store they are {e(retention)}.</p>
</body></html>
"""


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
