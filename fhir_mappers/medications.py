"""MedicationRequest (and vaccine orders) → MedicationFact with a daily dose in mg."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from .facts import DailyDose, MedicationFact
from .fhirjson import all_text, as_list, code_keys, codes_in, codings, concept_text, number, parse_date, ref_of
from .terminology import CVX, RXNORM, UCUM, ingredients_in_text, norm_unit, terminology, vaccines_in_text

# v3 GTSAbbreviation timing codes → administrations per day
_TIMING_CODES = {
    "QD": 1.0, "AM": 1.0, "PM": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0,
    "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "Q12H": 2.0, "QOD": 0.5, "WK": 1 / 7, "MO": 1 / 30,
}
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}


def medication_concept(resource: dict, medications: dict[str, dict]) -> Any:
    """The CodeableConcept naming the drug, following medicationReference to a
    contained or known Medication. Returns ``None`` when it cannot be found."""
    if resource.get("medicationCodeableConcept") is not None:
        return resource["medicationCodeableConcept"]
    ref = resource.get("medicationReference")
    if isinstance(ref, dict):
        target = ref.get("reference")
        if isinstance(target, str):
            if target.startswith("#"):
                for c in as_list(resource.get("contained")):
                    if isinstance(c, dict) and c.get("id") == target[1:]:
                        return c.get("code")
            med = medications.get(target) or medications.get(target.rsplit("/", 1)[-1])
            if med is not None:
                return med.get("code")
        if isinstance(ref.get("display"), str):
            return {"text": ref["display"]}
    # CDS Hooks examples and some vaccine orders use the FHIR-core "code" element
    if resource.get("resourceType") != "MedicationRequest" and resource.get("code") is not None:
        return resource["code"]
    # STU3-era clients sometimes put a bare CodeableConcept under "medication"
    if isinstance(resource.get("medication"), dict):
        return resource["medication"]
    return None


def ingredients_of(concept: Any) -> set[str]:
    t = terminology()
    found = {t.rxnorm[c] for c in codes_in(concept, RXNORM) if c in t.rxnorm}
    return found | ingredients_in_text(all_text(concept))


def _dose_quantity(dosage: dict) -> tuple[dict | None, dict | None]:
    """(doseQuantity, doseRange) of a Dosage, R4 or STU3-style."""
    for dr in as_list(dosage.get("doseAndRate")):
        if isinstance(dr, dict):
            if isinstance(dr.get("doseQuantity"), dict):
                return dr["doseQuantity"], None
            if isinstance(dr.get("doseRange"), dict):
                return None, dr["doseRange"]
    if isinstance(dosage.get("doseQuantity"), dict):
        return dosage["doseQuantity"], None
    if isinstance(dosage.get("doseRange"), dict):
        return None, dosage["doseRange"]
    return None, None


def _unit_of(q: dict) -> str:
    code = q.get("code")
    if isinstance(code, str) and code and q.get("system") in (None, UCUM):
        return code
    unit = q.get("unit")
    if isinstance(unit, str) and unit:
        return unit
    return code if isinstance(code, str) else ""


def _to_mg(q: dict, strength_mg: float | None) -> tuple[float | None, str]:
    value = number(q.get("value"))
    if value is None or value < 0:
        return None, "the dose has no readable amount"
    unit = _unit_of(q)
    t = terminology()
    nu = norm_unit(unit)
    if nu in t.mass_units:
        return value * t.mass_units[nu], ""
    if nu in t.unit_dose_units:
        if strength_mg is None:
            return None, f"the dose is given in '{unit}' and the product strength is not known"
        return value * strength_mg, ""
    if not unit:
        return None, "the dose has no unit"
    return None, f"the dose unit '{unit}' is not a mass unit"


def _per_day(dosage: dict) -> tuple[float | None, str]:
    timing = dosage.get("timing") if isinstance(dosage.get("timing"), dict) else {}
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), dict) else {}
    if repeat:
        freq = number(repeat.get("frequencyMax")) or number(repeat.get("frequency"))
        if freq is None:
            times = as_list(repeat.get("when")) + as_list(repeat.get("timeOfDay"))
            freq = float(len(times)) if times else None
        period = number(repeat.get("period"))
        unit = repeat.get("periodUnit")
        if freq is not None and period is None and not unit and (repeat.get("when") or repeat.get("timeOfDay")):
            period, unit = 1.0, "d"
        if freq is not None and period and isinstance(unit, str) and unit in _PERIOD_DAYS:
            return freq / (period * _PERIOD_DAYS[unit]), ""
        if freq is not None or period is not None:
            return None, "the dosing frequency is incomplete"
    for c in codings(timing.get("code")):
        code = str(c.get("code") or "").upper()
        if code in _TIMING_CODES:
            return _TIMING_CODES[code], ""
    return None, "the order gives no dosing frequency"


def daily_dose(resource: dict, strength_mg: float | None) -> tuple[DailyDose | None, str]:
    """Daily amount in mg from ``dosageInstruction`` (doses in the same
    ``sequence`` add up; of several sequences the largest counts)."""
    dosages = [d for d in as_list(resource.get("dosageInstruction")) if isinstance(d, dict)]
    if not dosages:
        return None, "the order has no dosage instructions"
    groups: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
    texts = []
    for d in dosages:
        if d.get("asNeededBoolean") is True and not d.get("timing"):
            return None, "the order is 'as needed' with no schedule"
        quantity, dose_range = _dose_quantity(d)
        if quantity is not None:
            low_mg, problem = _to_mg(quantity, strength_mg)
            high_mg = low_mg
        elif dose_range is not None:
            low_q, high_q = dose_range.get("low"), dose_range.get("high")
            if not isinstance(high_q, dict):
                return None, "the dose range has no upper limit"
            high_mg, problem = _to_mg(high_q, strength_mg)
            low_mg = _to_mg(low_q, strength_mg)[0] if isinstance(low_q, dict) else high_mg
        else:
            return None, "the order gives no dose amount"
        if problem:
            return None, problem
        per_day, problem = _per_day(d)
        if problem:
            return None, problem
        seq = d.get("sequence")
        groups[seq][0] += (low_mg or 0.0) * per_day
        groups[seq][1] += high_mg * per_day
        if isinstance(d.get("text"), str):
            texts.append(d["text"])
    low, high = max(groups.values(), key=lambda g: g[1])
    if not (math.isfinite(low) and math.isfinite(high)):  # e.g. 1e308 mg three times a day
        return None, "the dose is too large to be read"
    return DailyDose(round(low, 3), round(high, 3), "; ".join(texts)), ""


def medication_fact(resource: dict, *, is_draft: bool, medications: dict[str, dict] | None = None) -> MedicationFact | None:
    """A fact for a MedicationRequest (or an order naming a vaccine); ``None``
    for resources that are not medication orders."""
    rtype = resource.get("resourceType")
    if rtype not in ("MedicationRequest", "MedicationOrder", "Immunization", "ImmunizationRecommendation", "ServiceRequest"):
        return None
    concept = medication_concept(resource, medications or {})
    if rtype == "Immunization":
        concept = resource.get("vaccineCode")
    cvx = codes_in(concept, CVX) | vaccines_in_text(all_text(concept))
    if rtype == "ServiceRequest" and not cvx:
        return None
    ingredients = ingredients_of(concept)
    strengths = [terminology().unit_strength_mg[c] for c in codes_in(concept, RXNORM) if c in terminology().unit_strength_mg]
    strength = strengths[0] if len(set(strengths)) == 1 else None
    dose, problem = daily_dose(resource, strength) if ingredients and rtype != "Immunization" else (None, "")
    return MedicationFact(
        ref=ref_of(resource),
        ingredients=frozenset(ingredients),
        display=concept_text(concept) or ", ".join(sorted(ingredients)) or "unnamed medication",
        status=str(resource.get("status") or ""),
        is_draft=is_draft,
        authored_on=parse_date(resource.get("authoredOn") or resource.get("dateWritten") or resource.get("occurrenceDateTime")),
        daily_dose=dose,
        dose_problem=problem,
        vaccine_codes=frozenset(cvx),
        reason_codes=frozenset(k for rc in as_list(resource.get("reasonCode")) for k in code_keys(rc)),
        resource=resource,
    )
