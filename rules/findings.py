"""What rules return: findings with plain-data suggested actions.

A finding says what is wrong, with this patient's numbers, and which sources
support it. The hooks layer turns findings into CDS Hooks cards and the
abstract actions below into FHIR resources.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Indicator = Literal["info", "warning", "critical"]  # CDS Hooks card indicator

SUMMARY_MAX = 139  # CDS Hooks: "<140-character summary"


@dataclass(frozen=True, slots=True)
class OrderTest:
    """Order a laboratory test (becomes a ServiceRequest)."""

    loinc: str
    display: str
    label: str
    reason: str = ""
    within_days: int | None = None  # to be done within this many days (ServiceRequest.occurrencePeriod)


@dataclass(frozen=True, slots=True)
class ChangeDose:
    """Replace an order's dosage with ``daily_mg`` once daily (an updated MedicationRequest).

    ``cap_mg`` / ``factor`` record why: an upper limit in mg, or a fraction of the
    current dose. When several findings change the same order, one suggestion
    carries the combined dose (see ``rules.consolidate``)."""

    order_ref: str
    daily_mg: float
    label: str
    times_per_day: int = 1
    cap_mg: float | None = None
    factor: float | None = None
    drug: str = ""
    step_mg: float = 25.0


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Remove a draft order (a delete action)."""

    order_ref: str
    label: str


Action = OrderTest | ChangeDose | CancelOrder


@dataclass(slots=True)
class Finding:
    rule_id: str  # stable id, e.g. "pgx-poor-metabolizer"; counted by feedback analytics
    indicator: Indicator
    summary: str
    detail: str  # Markdown
    sources: tuple[str, ...]  # keys of sources.toml, the main one first
    actions: list[Action] = field(default_factory=list)
    order_ref: str = ""  # the draft order this is about, if any
    title: str = ""  # short rule name, for source.topic.display
    priority: int = 50  # among info cards, the lowest number is shown first
    dose_summary: str = ""  # summary with a "{dose}" slot, refilled when a combined dose replaces this card's own

    def __post_init__(self) -> None:
        if self.indicator not in ("info", "warning", "critical"):
            raise ValueError(f"bad indicator {self.indicator!r}")
        if len(self.summary) > SUMMARY_MAX:
            self.summary = self.summary[: SUMMARY_MAX - 1].rstrip() + "…"


SEVERITY = {"critical": 3, "warning": 2, "info": 1}
