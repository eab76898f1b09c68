"""One order, one dose: every finding's ``DoseLimit`` on the same order becomes one plan.

The advised range is the tightest absolute limit (each computed from the usual dose for
the indication and body size) times every fraction (allopurinol's 1/4-1/3 of the usual
dose). The usual dose is the ordered dose only when it lies inside the indication's usual
range (round-8 H4, rules.common._usual_for_indication); an order below that range is accepted
up to the fraction of the range's top, so the advice converges: an order at or under the
advised range is left as it is, and following a suggestion then signing again gives no new dose. An order above it gets the largest practical regimen the tablets (or
an oral suspension) can give inside the range: once daily, alternate days, three times a
week, else a specialist referral. Never "0 mg". See docs/dose-advice.md.
"""
from __future__ import annotations

import math

import msgspec

from .findings import SEVERITY, ChangeDose, DoseLimit, Finding, Regimen
from .knowledge_base import load
from .knowledge_schema import Form

EPS = 1e-6


class DosePlan(msgspec.Struct):
    order_ref: str
    drug: str
    ordered_mg: float
    low_mg: float | None
    high_mg: float
    days_per_week: int | None
    regimen: Regimen | None  # None: no practical regimen, refer to a specialist
    rules: list[str] = msgspec.field(default_factory=list)  # contributing rule ids, most severe first
    qualitative: list[str] = msgspec.field(default_factory=list)  # "lower doses" without a figure
    carrier: str = ""  # rule id of the card that carries the suggestion
    preliminary: bool = False  # a contributing finding rests on a preliminary result (every card stating it says so)
    range_low: float | None = None  # the recommended range itself (not capped at the ordered dose)
    range_high: float | None = None
    advised_days: int | None = None  # the schedule the advice sets (per dose), kept when the order follows it
    accept_high: float | None = None  # an order at or under this is not cut (the guideline's band); None: range_high
    current_basis: float | None = None  # the fraction was taken of this dose (the one the patient is on), not the usual
    # that dose lies inside the band from the usual dose, yet was not reduced for the new interacting drug (round-4 H8)
    current_in_band: bool = False
    start: bool = False  # round-14 H1: the ceiling is the label's starting dose of a new start (not the maximum)
    # round-17 H3/M8: the regimen needs a product other than the one ordered (the oral suspension for a tablet order, or
    # a tablet strength whose whole and half tablets cannot give it): the cards name it, no one-click update is offered
    other_product: bool = False
    product_unit_mg: float | None = None  # the ordered product's mg per tablet, when known

    @property
    def change(self) -> bool:
        top = self.accept_high if self.accept_high is not None else self.high_mg
        return not follows(self.ordered_mg, max(top, self.high_mg), self.days_per_week or self.advised_days)

    @property
    def kind(self) -> str:
        if not self.change:
            return "unchanged"
        if self.regimen is None:
            return "specialist"
        return "suspension" if self.regimen.form == "suspension" else self.regimen.kind

    def _accept_top(self) -> float:
        top = self.high_mg if self.range_high is None else self.range_high
        return top if self.accept_high is None else max(top, self.accept_high)

    def _shown(self) -> dict:
        """The range a card quotes for this order, and how the order stands against it: the recommended range, or
        the wider accepted one when the order lies above the recommended range but inside the accepted one
        (``wider``); ``below``: under the recommended range's low end. A range per dose (a schedule of
        ``days_per_week``) is compared with the order's daily average as the average it gives (round-9 M3)."""
        days = self.days_per_week or self.advised_days
        per_day = days / 7 if days else 1.0
        high = self.high_mg if self.range_high is None else self.range_high
        accept = self._accept_top()
        below = self.range_low is not None and self.ordered_mg < self.range_low * per_day - 0.01
        wider = accept > high + 0.01 and self.ordered_mg > high * per_day + 0.01
        top = accept if wider else high
        return {"low": self.range_low, "high": top, "days_per_week": days, "below": below, "wider": wider,
                "kind": "accepted" if wider else "recommended", "suggested_high": high,
                "average_high": top * per_day if days else None}

    def values(self) -> dict:
        r = self.regimen
        return {
            "ordered": self.ordered_mg, "low": self.low_mg, "high": self.high_mg, "change": self.change,
            "kind": self.kind, "days_per_week": self.days_per_week, "rules": list(self.rules),
            "qualitative": list(self.qualitative), "carrier": self.carrier, "drug": self.drug,
            "preliminary": self.preliminary, "current_basis": self.current_basis,
            # round-14 H3: the dose taken, per dose on the advised schedule (e.g. 3 days a week), not a daily average
            "current_days": self.advised_days if self.current_basis is not None else None,
            **({"current_in_band": True} if self.current_in_band else {}),
            **({"start": True} if self.start else {}),
            **({"other_product": True, "product_mg": self.product_unit_mg} if self.other_product else {}),
            "range": {"low": self.range_low, "high": self.high_mg if self.range_high is None else self.range_high,
                      "days_per_week": self.days_per_week or self.advised_days},
            # the range an order is accepted in (the guideline's band; the suggestion aims at "range")
            "accept": {"low": self.range_low, "high": self._accept_top(),
                       "days_per_week": self.days_per_week or self.advised_days},
            # round-9 M2: the one range every card quotes for an order it leaves as it is (summary and detail alike)
            "shown": self._shown(),
            "regimen": None if r is None else {
                "per_dose": r.per_dose_mg, "alt": r.alt_mg, "every_days": r.every_days,
                "days_per_week": r.days_per_week, "form": r.form, "ml": r.ml, "avg": r.avg_daily_mg,
                "kind": r.kind},
        }


def forms(drug: str) -> Form:
    return load().dosing.forms.get(drug) or _NO_FORM


_NO_FORM = Form(source="")  # a drug without [forms.<drug>]: 25 mg tablet steps, no suspension


def tablet_step(drug: str, unit_mg: float | None = None) -> float:
    """The tablet step a regimen is built in (round-17 M8): the drug's step ([forms.<drug>] tablet_step_mg) when the
    ordered tablet strength ``unit_mg`` gives it in whole or half tablets (25 mg steps of 25 or 50 mg tablets), else
    half a tablet of that strength (37.5 mg for 75 mg tablets, 50 mg for 100 mg tablets); the drug's step when the
    ordered strength is not known."""
    step = float(forms(drug).tablet_step_mg)
    if unit_mg is None or unit_mg <= 0:
        return step
    half = unit_mg / 2
    n = step / half
    return step if abs(n - round(n)) < 1e-6 and round(n) >= 1 else half


def practical_regimen(drug: str, low: float | None, high: float, days_per_week: int | None = None,
                      prefer: str = "", daily: bool = False, ceiling: float | None = None,
                      unit_mg: float | None = None, aim_low: bool = False) -> Regimen | None:
    """The largest practical regimen with an average in [low, high] (per dose when ``days_per_week``);
    ``prefer="suspension"``: the order was written in mL of the oral suspension, and stays so if it can;
    ``daily``: the guideline's regimen is daily (round-6 M2): once-daily tablets when they give at least
    ``point_min_fraction`` of ``high``, else the oral suspension daily, else None (a specialist).
    ``ceiling``: the top of the range an order is accepted in (per dose); the oral suspension is measured to the
    volume nearest ``high`` when that stays at or under it (round-9 M3: one tenth of 79.5 mg = 7.95 mg is 0.4 mL =
    8 mg, not 0.35 mL = 7 mg), else rounded down. A point figure (DPWG) is never exceeded.
    ``unit_mg``: the ordered tablet strength; tablet regimens are built in its whole and half tablets (``tablet_step``).
    ``aim_low`` (round-19 M2): ``low`` is the dose to give (the label's lowest start in renal impairment): the oral
    suspension, which can measure it, is measured to it (to ``point_min_fraction`` of it at least), not to ``high``."""
    spec = forms(drug)
    if low is not None and low >= high - EPS:
        ceiling = None  # one figure (DPWG): the nearest practical dose not above it
    if aim_low and low is not None and low < high - EPS and spec.suspension_mg_per_ml:
        measured = _suspension(spec, low * point_min_fraction(), low, days_per_week, high)
        if prefer == "suspension" and measured is not None:
            return measured
        found = practical_regimen(drug, low, high, days_per_week, daily=daily, ceiling=ceiling, unit_mg=unit_mg)
        return (measured or found) if found is None or found.form == "suspension" else found
    if prefer == "suspension" and spec.suspension_mg_per_ml:
        found = _suspension(spec, low, high, days_per_week, ceiling)
        if found is not None:
            return found
    step = tablet_step(drug, unit_mg)
    if daily and not days_per_week:
        n = math.floor(high / step + EPS)
        if n >= 1 and n * step >= max(low or 0.0, high * point_min_fraction()) - EPS:
            return Regimen(n * step)
        return _suspension(spec, low, high, None, ceiling) or (Regimen(n * step) if n >= 1 and n * step >= (low or 0) - EPS
                                                                else None)
    single = low is not None and low >= high - EPS
    if single:  # one figure (DPWG: 50 %): the nearest practical dose not above it (daily or alternate days)
        low = max(high - step, 0.0)
    floor_mg = (low or 0.0) - EPS
    if days_per_week:
        n = math.floor(high / step + EPS)
        if n >= 1 and n * step >= floor_mg:
            return Regimen(n * step, days_per_week=days_per_week)
        return _suspension(spec, low, high, days_per_week, ceiling)
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
            if single and r.avg_daily_mg < high * point_min_fraction() - EPS:
                # a point figure (DPWG 50 %) the tablets undershoot by more than the product's tolerance:
                # the oral suspension gives it (34.9 mg: 1.7 mL = 34 mg, not 25 mg), if the drug has one
                closer = _suspension(spec, high * point_min_fraction(), high, None)
                if closer is not None:
                    return closer
            return r
    return _suspension(spec, low, high, None, ceiling)


def _regimen(drug: str, low: float | None, high: float, days: int | None, prefer: str, daily: bool, accept: float,
             unit_mg: float | None, aim_low: bool = False) -> Regimen | None:
    """The practical regimen in the suggested range, else (round-15 M1) in the range an order is accepted in."""
    regimen = practical_regimen(drug, low, high, days, prefer=prefer, daily=daily, ceiling=accept, unit_mg=unit_mg,
                                aim_low=aim_low)
    if regimen is None and accept > high + EPS and not days:
        # round-15 M1: no practical regimen inside the suggested range (a new start's band of its starting dose with
        # allopurinol: 5.6-8.3 mg/day), but one inside the range an order is accepted in (up to 13.3 mg/day): that
        # regimen, which an order would not be cut from, rather than a specialist referral
        regimen = practical_regimen(drug, low, accept, days, prefer=prefer, daily=daily, unit_mg=unit_mg)
    return regimen


def point_min_fraction() -> float:
    """A point figure's practical dose is at least this fraction of it when a form can give it
    (dosing.toml [general] point_dose_min_fraction, product policy)."""
    return float(load().dosing.general.point_dose_min_fraction)


def _suspension(spec: Form, low: float | None, high: float, days_per_week: int | None,
                ceiling: float | None = None) -> Regimen | None:
    conc = spec.suspension_mg_per_ml
    if not conc:
        return None
    step = float(spec.suspension_ml_step or 0.1)
    ml = round(math.floor(high / conc / step + EPS) * step, 3)  # oral dosing syringe graduation
    nearest = round(math.floor(high / conc / step + 0.5 + EPS) * step, 3)
    if ceiling is not None and nearest > ml and nearest * conc <= ceiling + EPS:
        ml = nearest  # round-9 M3: the nearest measurable volume, when the accepted range allows it
    mg = ml * conc
    if ml <= 0 or mg < (low or 0) - EPS:
        return None
    return Regimen(round(mg, 2), days_per_week=days_per_week, form="suspension", ml=ml)


def combine(limits: list[DoseLimit], usual: float | None, ordered: float | None = None) -> tuple[float | None, float, int | None]:
    """The advised range (low, high, days per week) from the limits, independent of the ordered dose.

    Absolute limits (a reduced range from the normal dose, the indication's maximum) give the range;
    a fraction (allopurinol's 1/4-1/3, FDA label) applies to the *usual* dose for the indication and
    body size (``usual``), capped by the absolute limits: never to whatever was ordered, so that an
    order already reduced is not cut again. ``ordered`` is used only when no usual dose is known and
    no absolute limit is given (the fraction then has nothing else to apply to)."""
    absolute = [lim for lim in limits if lim.high_mg is not None]
    highs = [lim.high_mg for lim in absolute if lim.high_mg is not None]
    lows = [lim.low_mg for lim in absolute if lim.low_mg is not None]
    factors = [(lim.factor_low, lim.factor_high) for lim in limits if lim.factor_high is not None]
    days = next((lim.days_per_week for lim in limits if lim.days_per_week), None)
    caps = [lim for lim in absolute if lim.start_band and lim.high_mg is not None]
    if factors and caps and usual is not None:
        # round-16 M1/M2: a new start's TPMT/NUDT15 band (of the normal dose, capped by the start) is not a basis of the
        # fraction: the fraction is of the starting dose (``usual``), and the band caps it (the smaller wins)
        rest = [lim for lim in limits if lim not in caps]
        low, high, days = combine(rest, usual, ordered)
        high = min(high, *(lim.high_mg for lim in caps if lim.high_mg is not None))
        return (min(low, high) if low is not None else None), high, days
    if factors:
        base = [x for x in (usual, *highs) if x is not None] or ([ordered] if ordered is not None else [])
        if not base:
            return None, 0.0, days
        current = current_basis(limits, usual, ordered)  # per dose on the advised schedule (round-14 H3)
        if current is None:
            base_high = min(base)
        else:
            # round-13 M1: the dose taken is the basis; a band's own top (CPIC 30-80 %: ``accept_high_mg``) and not its
            # more conservative suggestion bounds it, so an order already accepted inside that band (not cut) takes
            # the label's fraction of itself, not of the suggestion (100 mg TPMT IM + allopurinol: 25-33 mg/day)
            accepted = [lim.accept_high_mg if lim.accept_high_mg is not None else lim.high_mg for lim in absolute]
            base_high = min(x for x in (usual, *accepted, current) if x is not None)
        base_low = max(lows) if lows else base_high
        base_low = min(base_low, base_high)
        f_low = math.prod(fl if fl is not None else fh for fl, fh in factors)
        f_high = math.prod(fh for _, fh in factors)
        return base_low * f_low, base_high * f_high, days
    high = min(highs) if highs else (ordered if ordered is not None else 0.0)
    # a floor above the binding ceiling is moot (round-19 M2: the renal lowest start, 92 mg, under a TPMT band's 56 mg
    # top): the other floors (the band's own 30 %) still hold
    lows = [x for x in lows if x <= high + EPS]
    low = max(lows) if lows else None
    return low, high, days


def current_basis(limits: list[DoseLimit], usual: float | None, ordered: float | None = None) -> float | None:
    """The dose the patient is on, when the fraction applies to it rather than to the usual dose: a limit
    carries ``current_mg`` (allopurinol newly ordered for a patient on an active thiopurine order), that dose
    is under the usual dose (and the absolute limits), and it is not already inside the band the fraction
    gives from them (an order reduced for allopurinol before is not cut again) unless the limit says it was not
    reduced for it (``current_not_reduced``, round-4 H8). None otherwise."""
    return _current(limits, usual, ordered)[0]


def per_dose(daily_mg: float, days_per_week: int | None) -> float:
    """A daily average as the dose per administration on a schedule of ``days_per_week`` (round-14 H3): the same
    weekly amount (1.71 mg/day on average = 4 mg per dose three times a week); unchanged for a daily schedule."""
    return daily_mg * 7 / days_per_week if days_per_week else daily_mg


def _current(limits: list[DoseLimit], usual: float | None, ordered: float | None = None) -> tuple[float | None, bool]:
    """(``current_basis``, whether that dose lies inside the band the fraction gives from the usual dose).

    Round-14 H3: when a limit sets a schedule of ``days_per_week`` (CPIC, poor metabolizer in malignancy: one tenth,
    three times a week) its figures are per dose; the dose taken (``current_mg``, a daily average as every order's
    daily dose is) is compared and used per dose on that same schedule, never as a daily average beside per-dose
    figures (4 mg three times a week is 4 mg per dose, not 1.71)."""
    days = next((lim.days_per_week for lim in limits if lim.days_per_week), None)
    currents = [per_dose(lim.current_mg, days) for lim in limits
                if lim.current_mg is not None and lim.factor_high is not None]
    if not currents:
        return None, False
    highs = [lim.high_mg for lim in limits if lim.high_mg is not None]
    base = [x for x in (usual, *highs) if x is not None] or ([ordered] if ordered is not None else [])
    if not base:
        return None, False
    f_high = math.prod(lim.factor_high for lim in limits if lim.factor_high is not None)
    current = min(currents)
    # round-13 M1: a dose inside a band's own top (``accept_high_mg``: CPIC's 30-80 %, where the order is accepted,
    # not cut) is a basis too, though above the band's more conservative suggestion
    accepted = [lim.accept_high_mg if lim.accept_high_mg is not None else lim.high_mg
                for lim in limits if lim.high_mg is not None]
    tops = [x for x in (usual, *accepted) if x is not None] or base
    if current >= min(tops) - EPS:
        return None, False
    if current <= min(base) * f_high + EPS:
        if not any(lim.current_not_reduced for lim in limits):
            return None, False  # inside the band, and the interacting drug was active before: reduced for it already
        return current, True
    return current, False


def accept_top(limits: list[DoseLimit], usual: float | None, ordered: float | None = None) -> float:
    """The top of the range an order is accepted in: as ``combine``'s high, with each limit's
    ``accept_high_mg`` (the guideline's own band) in place of its suggested ``high_mg``."""
    widened = [DoseLimit(lim.rule_id, high_mg=lim.accept_high_mg if lim.accept_high_mg is not None else lim.high_mg,
                         low_mg=lim.low_mg, factor_low=lim.factor_low, factor_high=lim.factor_high,
                         days_per_week=lim.days_per_week, qualitative=lim.qualitative,
                         current_mg=lim.current_mg, current_not_reduced=lim.current_not_reduced, daily=lim.daily,
                         start_band=lim.start_band)
               for lim in limits]
    return combine(widened, usual, ordered)[1]


def practical_usual(drug: str, usual: float | None) -> float | None:
    """The usual dose as prescribed: to the nearest tablet step (half up), never below the exact figure."""
    if usual is None:
        return None
    step = float(forms(drug).tablet_step_mg)
    if step <= 0:
        return usual
    return max(usual, math.floor(usual / step + 0.5) * step)


def follows(ordered: float, high: float, days_per_week: int | None) -> bool:
    """The ordered daily dose is already at or under the advice (``high`` per dose when the advice
    also sets a schedule of ``days_per_week``: the daily average of that schedule)."""
    top = high * days_per_week / 7 if days_per_week else high
    return ordered <= top + EPS


def plan_doses(findings: list[Finding], ordered_mg: dict[str, float], indicator_of, priority_of,
               usual_mg: dict[str, float] | None = None, forms_of: dict[str, str] | None = None,
               top_mg: dict[str, float] | None = None, taken_mg: dict[str, float] | None = None,
               products: dict[str, tuple[float | None, float | None]] | None = None) -> dict[str, DosePlan]:
    """One plan per order with at least one numeric limit; the suggestion goes to the most severe card.

    The advised range comes from the limits and the usual dose (``usual_mg``: for the indication and
    body size), never from the ordered dose: an order at or under the advised range is not changed
    (the plan says it is consistent), so following a suggestion and signing again gives no new dose.
    ``forms_of``: the form the order was written in ("suspension" for an mL order), kept when it can
    give the dose. ``taken_mg``: the dose the patient took before this order, inside the indication's usual
    range but under the usual dose (round-9 M2): a fraction (allopurinol's) applies to it, as to the dose of an
    active order when allopurinol is the new order. ``products``: the ordered product's (mg per tablet, mg per mL)
    (round-17 H3/M8): a tablet regimen is built in whole and half tablets of that strength; a regimen the product cannot
    give (the oral suspension for a tablet order, a dose no whole or half tablet of it gives) is marked
    ``other_product`` and is named on the cards but not offered as an update of the order."""
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
        taken = (taken_mg or {}).get(ref)
        # round-9 M2: a fraction's finding that says the dose taken before predates the interacting drug takes its
        # fraction of that dose (``taken_mg``), as of an active order's dose when allopurinol is the new order
        limits = [msgspec.structs.replace(f.dose, current_mg=taken) if taken is not None and f.dose.factor_high is not None
                  and f.dose.current_mg is None and f.values.get("taken_before_other") else f.dose
                  for f in numeric if f.dose is not None]
        ordered = ordered_mg[ref]
        # round-14 H1: a new start above the indication's maximum, with no other finding dosing it, is brought to the
        # label's starting dose (``DoseLimit.start_mg``), not to the maximum; with another limit (allopurinol's
        # fraction, a TPMT/NUDT15 band) that limit's answer stands, as for a start under the maximum (dose-new-start
        # gives way to it: rules.evaluate.drop_superseded), so the answer does not depend on how far above it was
        start = len(limits) == 1 and limits[0].start_mg is not None
        if start:
            limits = [msgspec.structs.replace(limits[0], high_mg=limits[0].start_mg, accept_high_mg=None)]
        low, high, days = combine(limits, (usual_mg or {}).get(ref), ordered)
        # round-6 M7: an order is accepted up to the fraction of the usual dose *as given in tablets* (the usual
        # dose to the nearest tablet step, never below it): 72 kg, usual 2 mg/kg = 144 mg, given as 150 mg; one-third
        # is 50 mg, which the label's "approximately one-third" covers. The suggestion still aims at the exact band
        accept = max(high, accept_top(limits, practical_usual(drug, (usual_mg or {}).get(ref)), ordered))
        top, usual = (top_mg or {}).get(ref), (usual_mg or {}).get(ref)
        if top is not None and usual is not None and ordered < usual - EPS and any(lim.factor_high for lim in limits):
            # round-8 H4: the fraction applies to the usual dose for the indication, the order itself when it is a usual
            # dose inside the indication's range (rules.common._usual_for_indication). An order below the range is
            # accepted up to the fraction of the top of that range: it is the advice for some usual dose, and the
            # suggestion made from an order in the range lands there (followed, it is not cut again)
            accept = max(accept, accept_top(limits, top, ordered))
        keeps = [lim.keep_mg for lim in limits if lim.keep_mg is not None]
        keep = min(keeps) if keeps else None
        if keep is not None and high + EPS < keep <= accept + EPS and ordered > keep + EPS and not days:
            # round-18 M4: a renewal raising an established dose: the dose already taken and tolerated, inside the
            # accepted range, is kept (the increase is refused); the suggestion never goes below it
            low = high = keep
        change = not follows(ordered, accept, days)
        daily = any(lim.daily for lim in limits)
        unit_mg, ml_mg = (products or {}).get(ref, (None, None))
        tablets = unit_mg if ml_mg is None else None  # a tablet product of known strength (not a liquid)
        prefer = (forms_of or {}).get(ref, "")
        # round-19 M2: the range's floor is the label's lowest start (not moot under a tighter limit): the dose to give
        aim_low = low is not None and any(lim.aim_low and lim.low_mg is not None and abs(lim.low_mg - low) < EPS
                                          for lim in limits)
        regimen = _regimen(drug, low, high, days, prefer, daily, accept, tablets, aim_low) if change else None
        other = False
        if change and regimen is None and tablets is not None:
            # round-17 M8: no whole or half tablet of the ordered strength fits: the regimen another strength gives,
            # named on the cards, never an update of this order (its product cannot give it)
            regimen = _regimen(drug, low, high, days, prefer, daily, accept, None, aim_low)
            other = regimen is not None and regimen.form != "suspension"
        if regimen is not None and regimen.form == "suspension" and ml_mg is None:
            other = True  # round-17 H3: the oral suspension, for an order of tablets (or of an unknown product)
        plan = DosePlan(ref, drug, ordered, low, high, days if change else None, regimen,
                        rules=list(dict.fromkeys(f.rule_id for f in numeric)),
                        qualitative=list(dict.fromkeys(f.rule_id for f in items if f.dose is not None and f.dose.qualitative)),
                        carrier=numeric[0].rule_id,
                        preliminary=any(f.values.get("preliminary") is True for f in items),
                        range_low=low, range_high=high, advised_days=days, accept_high=accept,
                        current_basis=current_basis(limits, (usual_mg or {}).get(ref), ordered),
                        current_in_band=_current(limits, (usual_mg or {}).get(ref), ordered)[1], start=start,
                        other_product=other and change, product_unit_mg=tablets)
        if plan.change and plan.regimen is not None:
            carrier = numeric[0]
            action = ChangeDose(ref, plan.regimen, drug, other_product=plan.other_product)
            if carrier.stops_order:  # e.g. DPWG poor metabolizer: an alternative first, the reduced dose second
                carrier.actions.append(action)
            else:
                carrier.actions.insert(0, action)
        plans[ref] = plan
    return plans
