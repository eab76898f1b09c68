"""One order, one dose: every finding's ``DoseLimit`` on the same order becomes one plan.

The exact range is the tightest absolute limit (never above the ordered dose) times
every fraction (allopurinol's 1/4-1/3); the practical regimen is the largest one the
tablets (or an oral suspension) can give inside that range: once daily, alternate
days, three times a week, else a specialist referral. Never "0 mg".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .findings import SEVERITY, ChangeDose, DoseLimit, Finding, Regimen
from .knowledge_base import load
from .knowledge_schema import Form

EPS = 1e-6


@dataclass
class DosePlan:
    order_ref: str
    drug: str
    ordered_mg: float
    low_mg: float | None
    high_mg: float
    days_per_week: int | None
    regimen: Regimen | None  # None: no practical regimen, refer to a specialist
    rules: list[str] = field(default_factory=list)  # contributing rule ids, most severe first
    qualitative: list[str] = field(default_factory=list)  # "lower doses" without a figure
    carrier: str = ""  # rule id of the card that carries the suggestion
    preliminary: bool = False  # a contributing finding rests on a preliminary result (every card stating it says so)
    range_low: float | None = None  # the recommended range itself (not capped at the ordered dose)
    range_high: float | None = None

    @property
    def change(self) -> bool:
        return self.days_per_week is not None or self.ordered_mg > self.high_mg + EPS

    @property
    def kind(self) -> str:
        if not self.change:
            return "unchanged"
        if self.regimen is None:
            return "specialist"
        return "suspension" if self.regimen.form == "suspension" else self.regimen.kind

    def values(self) -> dict:
        r = self.regimen
        return {
            "ordered": self.ordered_mg, "low": self.low_mg, "high": self.high_mg, "change": self.change,
            "kind": self.kind, "days_per_week": self.days_per_week, "rules": list(self.rules),
            "qualitative": list(self.qualitative), "carrier": self.carrier, "drug": self.drug,
            "preliminary": self.preliminary,
            "range": {"low": self.range_low, "high": self.high_mg if self.range_high is None else self.range_high,
                      "days_per_week": self.days_per_week},
            "regimen": None if r is None else {
                "per_dose": r.per_dose_mg, "alt": r.alt_mg, "every_days": r.every_days,
                "days_per_week": r.days_per_week, "form": r.form, "ml": r.ml, "avg": r.avg_daily_mg,
                "kind": r.kind},
        }


def forms(drug: str) -> Form:
    return load().dosing.forms.get(drug) or _NO_FORM


_NO_FORM = Form(source="")  # a drug without [forms.<drug>]: 25 mg tablet steps, no suspension


def practical_regimen(drug: str, low: float | None, high: float, days_per_week: int | None = None) -> Regimen | None:
    """The largest practical regimen with an average in [low, high] (per dose when ``days_per_week``)."""
    spec = forms(drug)
    step = float(spec.tablet_step_mg)
    single = low is not None and low >= high - EPS
    if single:  # one figure (DPWG: 50 %): the nearest practical dose not above it (daily or alternate days)
        low = max(high - step, 0.0)
    floor_mg = (low or 0.0) - EPS
    if days_per_week:
        n = math.floor(high / step + EPS)
        if n >= 1 and n * step >= floor_mg:
            return Regimen(n * step, days_per_week=days_per_week)
        return _suspension(spec, low, high, days_per_week)
    candidates: list[Regimen] = []
    n = math.floor(high / step + EPS)
    if n >= 1:
        candidates.append(Regimen(n * step))
    m = math.floor(high / step - 0.5 + EPS)
    if m >= 0:
        candidates.append(Regimen((m + 1) * step, alt_mg=m * step) if m >= 1 else Regimen(step, every_days=2))
    candidates.append(Regimen(step, days_per_week=3))
    if single:  # nearest to the one figure first, never above it (72 mg: 75/50 mg alternate days, not 50 mg daily)
        candidates.sort(key=lambda r: -r.avg_daily_mg if r.avg_daily_mg <= high + EPS else math.inf)
    for r in candidates:  # simplest first: daily, alternate days, three times a week
        if floor_mg <= r.avg_daily_mg <= high + EPS:
            return r
    return _suspension(spec, low, high, None)


def _suspension(spec: Form, low: float | None, high: float, days_per_week: int | None) -> Regimen | None:
    conc = spec.suspension_mg_per_ml
    if not conc:
        return None
    step = float(spec.suspension_ml_step or 0.1)
    ml = round(math.floor(high / conc / step + EPS) * step, 3)  # oral dosing syringe graduation
    mg = ml * conc
    if ml <= 0 or mg < (low or 0) - EPS:
        return None
    return Regimen(round(mg, 2), days_per_week=days_per_week, form="suspension", ml=ml)


def combine(limits: list[DoseLimit], ordered: float) -> tuple[float | None, float, int | None]:
    absolute = [lim for lim in limits if lim.high_mg is not None]
    high = min([ordered, *(lim.high_mg for lim in absolute if lim.high_mg is not None)])
    lows = [lim.low_mg for lim in absolute if lim.low_mg is not None]
    low = max(lows) if lows else None
    if low is not None and low > high + EPS:
        low = None
    factors = [(lim.factor_low, lim.factor_high) for lim in limits if lim.factor_high is not None]
    if factors:
        f_low = math.prod(fl if fl is not None else fh for fl, fh in factors)
        f_high = math.prod(fh for _, fh in factors)
        low, high = (low if low is not None else high) * f_low, high * f_high
    days = next((lim.days_per_week for lim in limits if lim.days_per_week), None)
    return low, high, days


def plan_doses(findings: list[Finding], ordered_mg: dict[str, float], indicator_of, priority_of) -> dict[str, DosePlan]:
    """One plan per order with at least one numeric limit; the suggestion goes to the most severe card."""
    by_ref: dict[str, list[Finding]] = {}
    for f in findings:
        if f.dose is not None and f.order_ref:
            by_ref.setdefault(f.order_ref, []).append(f)
    plans = {}
    for ref, items in by_ref.items():
        numeric = [f for f in items if f.dose is not None and not f.dose.qualitative]
        if not numeric or ref not in ordered_mg:
            continue
        items.sort(key=lambda f: (-SEVERITY[indicator_of(f)], priority_of(f)))
        numeric.sort(key=lambda f: (-SEVERITY[indicator_of(f)], priority_of(f)))
        drug = numeric[0].drug
        limits = [f.dose for f in numeric if f.dose is not None]
        low, high, days = combine(limits, ordered_mg[ref])
        # the recommended range as the limits give it (the card says whether the ordered dose is in it)
        absolute = any(lim.high_mg is not None for lim in limits)
        range_low, range_high, _ = combine(limits, math.inf if absolute else ordered_mg[ref])
        plan = DosePlan(ref, drug, ordered_mg[ref], low, high, days,
                        practical_regimen(drug, low, high, days),
                        rules=list(dict.fromkeys(f.rule_id for f in numeric)),
                        qualitative=list(dict.fromkeys(f.rule_id for f in items if f.dose is not None and f.dose.qualitative)),
                        carrier=numeric[0].rule_id,
                        preliminary=any(f.values.get("preliminary") is True for f in items),
                        range_low=range_low, range_high=range_high)
        if plan.change and plan.regimen is not None:
            carrier = numeric[0]
            action = ChangeDose(ref, plan.regimen, drug)
            if carrier.stops_order:  # e.g. DPWG poor metabolizer: an alternative first, the reduced dose second
                carrier.actions.append(action)
            else:
                carrier.actions.insert(0, action)
        plans[ref] = plan
    return plans
