"""Laboratory values no patient can have (issue 18: plausibility at the boundary).

``monitoring.toml`` ``[plausible]`` names, per analyte, the range outside which a value is a
recording error (negative counts, a white cell count of 10⁹ ×10⁹/L). Such a value is taken out of the
facts before any rule reads it, and a data gap quotes it, so the data-incomplete card says which result
was not used (never read as normal, never as severe). The mappers read values as sent; meaning is
decided here. Height and weight have their own limits in ``dosing.toml`` (``rules/common.py``).
"""
from __future__ import annotations

from dataclasses import replace

from fhir_mappers.facts import ClinicalFacts, DataGap
from fhir_mappers.observations import ANALYTE_LABELS

from .knowledge_base import load


def implausible_labs(facts: ClinicalFacts) -> ClinicalFacts:
    """``facts`` without laboratory values outside ``[plausible]``, each named in a data gap."""
    plausible = load().monitoring.plausible
    limits = plausible.limits() if plausible is not None else {}
    gaps: list[DataGap] = []
    labs = {}
    for analyte, values in facts.labs.items():
        limit = limits.get(analyte)
        if limit is None or all(limit[0] <= m.value <= limit[1] for m in values):
            labs[analyte] = values
            continue
        low, high = limit
        kept = []
        for m in values:
            if low <= m.value <= high:
                kept.append(m)
            else:
                when = f" ({m.when.date().isoformat()})" if m.when else ""
                gaps.append(DataGap(f"{ANALYTE_LABELS.get(analyte, analyte)}{when}",
                                    f"{m.value:g} {m.unit} is not a plausible value (outside {low:g}-{high:g} {m.unit}): "
                                    "treated as a recording error", analyte))
        labs[analyte] = kept
    if not gaps:
        return facts
    return replace(facts, labs=labs, gaps=[*facts.gaps, *gaps])
