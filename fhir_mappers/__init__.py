"""FHIR R4 JSON → typed domain facts (see ``facts.py``).

``build_facts`` is the one entry point the hooks use. It takes the draft
orders and the gathered data groups (one value per prefetch key: a resource,
a Bundle, or ``None`` when the group could not be obtained) and returns a
``ClinicalFacts``. Mappers are lenient about shape and strict about units; they
never decide what a value means clinically.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Iterable

from .facts import ClinicalFacts, DataGap, MedicationFact
from .fhirjson import code_keys, parse_date, resources_of
from .medications import medication_fact
from .observations import gene_results, measurements, status_observations
from .patient import allergy_facts, condition_facts, patient_fact
from .terminology import LOINC, terminology

__all__ = ["build_facts", "order_facts", "ClinicalFacts", "DataGap", "MedicationFact"]

# Data groups (prefetch keys) and what the clinician would call them.
GROUP_LABELS = {
    "patient": "the patient's demographics",
    "weight": "body weight",
    "pgx": "TPMT / NUDT15 results",
    "labs": "blood counts, liver and kidney tests",
    "pregnancy": "pregnancy status",
    "medications": "active medications",
    "conditions": "active conditions",
    "allergies": "allergies and intolerances",
    "immunizations": "immunization history",
    "past_medications": "recently stopped medications",
}


def _medication_index(values: Iterable[Any]) -> dict[str, dict]:
    index = {}
    for value in values:
        for med in resources_of(value, "Medication"):
            if isinstance(med.get("id"), str):
                index[f"Medication/{med['id']}"] = med
                index[med["id"]] = med
    return index


def order_facts(draft_orders: Iterable[dict], medications: dict[str, dict] | None = None) -> list[MedicationFact]:
    facts = []
    for resource in draft_orders:
        fact = medication_fact(resource, is_draft=True, medications=medications)
        if fact is not None:
            facts.append(fact)
    return facts


_ACTIVE = {"active", "on-hold"}
_ENDED = {"stopped", "completed"}


def _end_date(mr: dict) -> date | None:
    """When a stopped or completed order ended: its validity or dosage bounds end, if given."""
    dispense = mr.get("dispenseRequest") if isinstance(mr.get("dispenseRequest"), dict) else {}
    period = dispense.get("validityPeriod") if isinstance(dispense.get("validityPeriod"), dict) else {}
    ends = [parse_date(period.get("end"))]
    for d in mr.get("dosageInstruction") or []:
        repeat = ((d or {}).get("timing") or {}).get("repeat") if isinstance(d, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            ends.append(parse_date(bounds.get("end")))
    ends = [e for e in ends if e]
    return max(ends) if ends else None


def build_facts(
    draft_orders: list[dict],
    data: dict[str, Any],
    *,
    today: date,
    gaps: list[DataGap] | None = None,
    orders: list[MedicationFact] | None = None,
) -> ClinicalFacts:
    """``orders``: the draft orders already mapped (the hooks map them first to
    decide whether the call concerns thiopurines); mapped here when omitted."""
    gaps = list(gaps or [])
    unavailable = {key for key, value in data.items() if value is None}
    meds_index = _medication_index(data.values())
    if orders is None:
        orders = order_facts(draft_orders, meds_index)
    draft_refs = {o.ref for o in orders if o.ref}

    active = []
    for mr in resources_of(data.get("medications"), "MedicationRequest"):
        status = mr.get("status")
        if not isinstance(status, str) or status not in _ACTIVE or mr.get("intent") in ("proposal", "plan"):
            continue
        fact = medication_fact(mr, is_draft=False, medications=meds_index)
        if fact is not None and fact.ref not in draft_refs:
            active.append(fact)

    past = []
    for mr in resources_of(data.get("past_medications"), "MedicationRequest"):
        fact = medication_fact(mr, is_draft=False, medications=meds_index) if mr.get("status") in _ENDED else None
        if fact is not None and fact.ref not in draft_refs:
            past.append(replace(fact, ended_on=_end_date(mr) or fact.authored_on))
    immunizations = []
    for imm in resources_of(data.get("immunizations"), "Immunization"):
        fact = medication_fact(imm, is_draft=False) if imm.get("status") in (None, "completed") else None
        if fact is not None and fact.authored_on is not None:
            immunizations.append(fact)

    observations = [o for key in ("weight", "labs", "pgx", "pregnancy") for o in resources_of(data.get(key), "Observation")]
    # DiagnosticReports may carry their results as contained Observations
    for key in ("pgx", "labs"):
        for report in resources_of(data.get(key), "DiagnosticReport"):
            observations += [c for c in report.get("contained") or [] if isinstance(c, dict) and c.get("resourceType") == "Observation"]
    numeric, genomic, status = _classify(_dedupe(observations))
    by_analyte = measurements(numeric, gaps)
    weights = by_analyte.pop("weight", [])
    heights = by_analyte.pop("height", [])
    patient = next(resources_of(data.get("patient"), "Patient"), None)

    return ClinicalFacts(
        today=today,
        patient=patient_fact(patient),
        orders=orders,
        active_medications=active,
        weights=weights,
        heights=heights,
        immunizations=immunizations,
        past_medications=past,
        labs=by_analyte,
        gene_results=gene_results(genomic),
        conditions=condition_facts(resources_of(data.get("conditions"), "Condition")),
        status_observations=status_observations(status),
        allergies=allergy_facts(resources_of(data.get("allergies"), "AllergyIntolerance")),
        gaps=gaps,
        unavailable=unavailable,
    )


def _classify(observations: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Read each Observation's code once and send it to the one mapper that uses it:
    (numeric results, TPMT/NUDT15 genotype or phenotype, pregnancy/breastfeeding status)."""
    t = terminology()
    genomic_keys = t.genotype_codes | t.phenotype_codes
    status_keys = {f"{LOINC}|{c}" for c in t.status_loinc}
    numeric, genomic, status = [], [], []
    for obs in observations:
        keys = code_keys(obs.get("code"))
        if keys & genomic_keys:
            genomic.append(obs)
        elif keys & status_keys:
            status.append(obs)
        else:
            numeric.append(obs)
    return numeric, genomic, status


def _dedupe(resources: list[dict]) -> list[dict]:
    """The same Observation can arrive under two keys: keep it once."""
    seen, out = set(), []
    for r in resources:
        rid = r.get("id")
        key = rid if isinstance(rid, str) and rid else id(r)  # an id that is a list or object must not raise
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out
