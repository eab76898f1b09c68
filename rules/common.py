"""Small helpers shared by the rules: which orders matter, weight, rounding, wording."""
from __future__ import annotations

import math
from datetime import timedelta

from fhir_mappers.facts import ClinicalFacts, MedicationFact, Measurement

from .knowledge_base import load


def thiopurines() -> frozenset[str]:
    return frozenset(load()["pgx"]["drugs"])


def thiopurine_of(med: MedicationFact) -> str | None:
    """The thiopurine ingredient of an order, or None."""
    found = sorted(med.ingredients & thiopurines())
    return found[0] if found else None


def thiopurine_orders(facts: ClinicalFacts) -> list[tuple[MedicationFact, str]]:
    return [(o, d) for o in facts.orders if o.selected and (d := thiopurine_of(o))]


def recent_weight(facts: ClinicalFacts, max_age_days: int) -> Measurement | None:
    """The newest body weight no older than ``max_age_days`` (undated weights do not count)."""
    for w in facts.weights:
        if w.when is None:
            continue
        if w.when.date() >= facts.today - timedelta(days=max_age_days):
            return w
        return None
    return None


def round_down(mg: float, step: float) -> float:
    """Largest multiple of ``step`` not above ``mg`` (tablet-achievable)."""
    return math.floor(mg / step + 1e-9) * step


def fmt_mg(mg: float) -> str:
    return f"{mg:.0f}" if abs(mg - round(mg)) < 1e-6 else f"{mg:.1f}"


def fmt_mgkg(x: float) -> str:
    return f"{x:.1f}"


def drug_name(ingredient: str) -> str:
    return ingredient[:1].upper() + ingredient[1:]


def usable_weight(facts: ClinicalFacts, max_age_days: int) -> Measurement | None:
    """The recent weight if it is plausible (``dosing.toml`` limits); else None (the weight rule says why)."""
    low, high = load()["dosing"]["general"]["weight_plausible_kg"]
    w = recent_weight(facts, max_age_days)
    return w if w is not None and low <= w.value <= high else None
