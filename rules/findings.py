"""What rules return: findings with values and plain-data suggested actions, no English.

A finding names its rule (an id of ``rules/knowledge/catalogue.toml``), the
thiopurine order it concerns and the values that justify it (this patient's
numbers, the knowledge numbers used). The catalogue words it; the hooks layer
renders cards once, after consolidation, and turns the abstract actions below
into FHIR resources.
"""
from __future__ import annotations

from typing import Any, Literal

import msgspec

Indicator = Literal["info", "warning", "critical"]  # CDS Hooks card indicator

SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary"


class OrderTest(msgspec.Struct, frozen=True):
    """Order a laboratory test or measurement (becomes a ServiceRequest).

    ``label`` is a key of the rule's ``labels`` in the catalogue."""

    loinc: str
    display: str
    label: str = "order_test"
    reason: str = ""  # coded-ish reason text for ServiceRequest.reasonCode (a knowledge string)
    within_days: int | None = None  # to be done within this many days (ServiceRequest.occurrencePeriod)


class Regimen(msgspec.Struct, frozen=True):
    """A practical way to give a dose: ``per_dose_mg`` every ``every_days`` days, or on
    ``days_per_week`` days a week; ``alt_mg`` alternates with ``per_dose_mg`` day by day;
    ``form`` "tablet" or "suspension" (``ml`` per dose then)."""

    per_dose_mg: float
    every_days: int = 1
    days_per_week: int | None = None
    alt_mg: float | None = None
    form: str = "tablet"
    ml: float | None = None

    @property
    def avg_daily_mg(self) -> float:
        if self.days_per_week:
            return self.per_dose_mg * self.days_per_week / 7
        if self.alt_mg is not None:
            return (self.per_dose_mg + self.alt_mg) / 2
        return self.per_dose_mg / self.every_days

    @property
    def kind(self) -> str:
        if self.days_per_week:
            return "weekly"
        if self.alt_mg is not None or self.every_days == 2:
            return "alternate"
        return "daily"


class ChangeDose(msgspec.Struct, frozen=True):
    """Replace an order's dosage with ``regimen`` (an updated MedicationRequest).

    Rules do not build these: the dose plan (``rules.doseplan``) does, once per
    order, from every finding's ``DoseLimit``."""

    order_ref: str
    regimen: Regimen
    drug: str
    label: str = "change_dose"
    # round-17 H3/M8: the ordered product cannot give the regimen (the oral suspension for tablets, a dose no whole or
    # half tablet of its strength gives): the cards name it; no update of the order is offered
    other_product: bool = False

    @property
    def daily_mg(self) -> float:
        return self.regimen.avg_daily_mg


class CancelOrder(msgspec.Struct, frozen=True):
    """Remove a draft order (a delete action). ``what`` names the drug for the label.
    ``recommended`` False: an option, never the card's recommended suggestion (allopurinol is often
    needed: the label's advice is to reduce the thiopurine, not to stop allopurinol)."""

    order_ref: str
    what: str
    label: str = "cancel"
    recommended: bool = True


Action = OrderTest | ChangeDose | CancelOrder


class DoseLimit(msgspec.Struct, frozen=True):
    """How one finding constrains the daily dose of one order.

    ``low_mg``-``high_mg``: an absolute range in mg/day (``low_mg`` None: any dose up to
    ``high_mg``); ``factor_low``-``factor_high``: a fraction of the dose the other limits
    leave (allopurinol: 1/4-1/3); ``days_per_week``: the guideline changes the schedule
    too (CPIC malignancy, poor metabolizer: thrice weekly), ``high_mg`` is then per dose."""

    rule_id: str
    high_mg: float | None = None
    low_mg: float | None = None
    factor_low: float | None = None
    factor_high: float | None = None
    days_per_week: int | None = None
    qualitative: bool = False  # "lower doses" without a figure (renal impairment, FDA label)
    # an order at or under this is accepted (not cut), though a suggestion aims at ``high_mg``: the guideline's
    # own band (CPIC 30-80 %) when the service suggests a more conservative target, or a point figure (DPWG 50 %)
    # plus the product's practical tolerance (docs/dose-advice.md); None: ``high_mg``
    accept_high_mg: float | None = None
    # the dose the patient is on when the interacting drug (allopurinol) is the new order and the thiopurine an
    # active order: the label's "one-third to one-quarter of the usual dose" applies to it when it is under the
    # usual dose and not already inside the reduced band (docs/dose-advice.md 2d); None: the usual dose only
    current_mg: float | None = None
    # round-4 H8: the interacting drug is newly ordered (none was active before), so ``current_mg`` was not reduced
    # for it: the fraction applies to it even when it lies inside the band the usual dose gives
    current_not_reduced: bool = False
    # the guideline's regimen is daily (CPIC 2018 Table 3, NUDT15 poor metabolizer in malignancy: mercaptopurine
    # 10 mg/m2/day, "daily"): a suggestion keeps the daily schedule (the oral suspension where tablets cannot give
    # the dose), never alternate days or three times a week (round-6 M2)
    daily: bool = False
    # round-14 H1: a new start of an indication with a start regimen (rheumatoid arthritis, SLE, unknown: about
    # 1 mg/kg/day, Imuran label) ordered above the indication's maximum: the plan's ceiling is this starting dose,
    # not the maintenance maximum (``high_mg``), when no other finding doses the order (rules.doseplan.plan_doses)
    start_mg: float | None = None
    # round-16 M1/M2: a TPMT/NUDT15 band of a new start's NORMAL dose, capped by the start dose (rules.pgx): a
    # fraction (allopurinol's one-third to one-quarter) is taken of the new start's starting dose (the usual dose),
    # not of this band; the band caps the result (the smaller of the two wins, never their product)
    start_band: bool = False
    # round-18 M4: a renewal that raises an established dose: the dose already taken and tolerated. The plan is not cut
    # below it (it is kept, the increase refused) when it lies within the accepted range the limits give
    keep_mg: float | None = None
    # round-19 M2: ``low_mg`` is the label's lowest starting dose (renal impairment, mercaptopurine): the dose to give,
    # not a floor under a ceiling; a suspension is measured to it (92.2 mg: 4.6 mL), tablets give the simplest regimen
    # inside ``low_mg``-``high_mg`` (its per-m2 and per-kg forms)
    aim_low: bool = False


class Finding(msgspec.Struct, frozen=True):
    rule_id: str  # an id of the catalogue, e.g. "pgx-poor-metabolizer"; counted by feedback analytics
    order_ref: str = ""  # the thiopurine order this is about (draft or active), if any
    values: dict[str, Any] = msgspec.field(default_factory=dict)  # what the catalogue templates read
    actions: list[Action] = msgspec.field(default_factory=list)
    indicator: Indicator | None = None  # None: the catalogue's default
    sources: tuple[str, ...] = ()  # extra source keys (e.g. the indication's guideline), after the catalogue's
    dose: DoseLimit | None = None  # this finding changes the dose of ``order_ref``
    stops_order: bool = False  # the recommended action stops ``order_ref`` (supersedes dose advice)
    # round-6 m2: the card says withhold ``order_ref`` (BSR cytopenia, raised liver tests): no start regimen beside it
    withholds: bool = False
    drug: str = ""  # the thiopurine ingredient of ``order_ref``

    def __post_init__(self) -> None:
        if self.indicator not in (None, "info", "warning", "critical"):
            raise ValueError(f"bad indicator {self.indicator!r}")


SEVERITY = {"critical": 3, "warning": 2, "info": 1}
