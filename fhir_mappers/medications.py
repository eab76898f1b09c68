"""MedicationRequest (and vaccine orders) → MedicationFact with a daily dose in mg."""
from __future__ import annotations

import msgspec

import math
import re
from collections import defaultdict
from typing import Any

from .facts import DailyDose, MedicationFact, PriorTherapy
from .fhirjson import call_memo, as_list, code_keys, codings, concept_text, number, parse_date, ref_of
from .terminology import (ATC, CVX, NDC, RXNORM, UCUM, cvx_code, ingredients_in_text, names_in_text, ndc_vaccine, norm_unit,
                          terminology, text_vaccines_beside, vaccines_in_text)

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
            med = find_medication(target, medications)
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


def find_medication(target: str, medications: dict[str, dict]) -> dict | None:
    """The Medication a (non-contained) reference names: as sent ("Medication/x"), by its id, or, for an absolute
    URL ("https://ehr/fhir/Medication/x", a prefetch entry's fullUrl; FHIR R4 "Resolving references in Bundles"),
    by its last two segments (round-4 review m3)."""
    med = medications.get(target) or medications.get(target.rsplit("/", 1)[-1])
    if med is None and "/" in target:
        tail = "/".join(target.split("/_history")[0].rstrip("/").split("/")[-2:])
        if tail.startswith("Medication/"):
            med = medications.get(tail)
    return med


# the code systems a medication concept is read in (WHO ATC and NDC under their URI and their OID): the place of
# each one's codes in ``ConceptCodes``
_RXNORM, _CVX, _ATC, _NDC = range(4)
_KIND_OF_SYSTEM: dict[str, int] = {RXNORM: _RXNORM, CVX: _CVX, **dict.fromkeys(ATC, _ATC), **dict.fromkeys(NDC, _NDC)}
# a concept's codes (each ``str(code)``, in coding order) of RxNorm, CVX, WHO ATC and NDC codings, in that order
ConceptCodes = tuple[list[str], list[str], list[str], list[str]]


def read_concept(concept: Any) -> tuple[ConceptCodes, list[str]]:
    """A medication concept read in one walk: (its codes by system, ``ConceptCodes``; its words: the texts, then
    the codings' displays). ``concept_text(concept)`` is the first of the words (or ""), ``all_text(concept)``
    all of them joined by " | "; the codes are those ``codes_in`` reads (RxNorm, CVX) and the codings whose
    system is a string naming WHO ATC or NDC."""
    codes: ConceptCodes = ([], [], [], [])
    words: list[str] = []
    for c in as_list(concept):
        if isinstance(c, str):
            words.append(c)
        elif isinstance(c, dict) and isinstance(c.get("text"), str):
            words.append(c["text"])
    for c in codings(concept):
        system = c.get("system")
        if isinstance(system, str):
            kind = _KIND_OF_SYSTEM.get(system)
            if kind is not None and c.get("code") is not None:
                codes[kind].append(str(c["code"]))
        display = c.get("display")
        if isinstance(display, str):
            words.append(display)
    return codes, words


def distinct_text(words: list[str]) -> str:
    """A concept's words joined by " | " as ``all_text`` joins them, each distinct word once: a concept's text is
    usually its coding's display too ("allopurinol 300 MG Oral Tablet" twice). The readers of such a text
    (``names_in_text``, ``_strengths_named``) find the same names in it: no name they search for contains " | ",
    so every match lies within one word, and a word read twice adds nothing to the sets they return."""
    return " | ".join(dict.fromkeys(words)) if len(words) > 1 else (words[0] if words else "")


def _coded_ingredients(codes: ConceptCodes) -> set[str]:
    """The ingredients a concept's RxNorm and WHO ATC codes name."""
    t = terminology()
    found = {t.rxnorm[c] for c in codes[_RXNORM] if c in t.rxnorm}
    if codes[_ATC]:
        found |= {t.atc[c.strip().upper()] for c in codes[_ATC] if c.strip().upper() in t.atc}
    return found


def _coded_vaccines(codes: ConceptCodes) -> set[str]:
    """The CVX codes of the vaccines a concept's codes name: CVX codes (a dropped leading zero restored), the NDC
    of a live vaccine product, a WHO ATC live-vaccine code."""
    found = {cvx_code(c) for c in codes[_CVX]}
    for c in codes[_NDC]:
        if (cvx := ndc_vaccine(c)) is not None:
            found.add(cvx)
    if codes[_ATC]:
        t = terminology()
        found |= {t.atc_vaccines[c.strip().upper()] for c in codes[_ATC] if c.strip().upper() in t.atc_vaccines}
    return found


def ingredients_of(concept: Any, text: str | None = None) -> set[str]:
    """Ingredients named by RxNorm or WHO ATC code or in the concept's words (``text``: ``all_text(concept)``, if
    already read)."""
    codes, words = read_concept(concept)
    return _coded_ingredients(codes) | ingredients_in_text(" | ".join(words) if text is None else text)


def vaccine_codes_of(concept: Any, text: str) -> set[str]:
    """CVX codes of the vaccines a concept names: CVX codes (a dropped leading zero restored), the NDC of a live
    vaccine product, a WHO ATC live-vaccine code, or a vaccine named in its words (``text``)."""
    found = _coded_vaccines(read_concept(concept)[0])
    return found | text_vaccines_beside(found, vaccines_in_text(text))


def _item_concepts(medication: dict, container: dict | None) -> list[Any]:
    """The concepts naming a Medication's ingredients (FHIR R4 ``Medication.ingredient.item[x]``): an
    itemCodeableConcept, or an itemReference to a contained Medication / Substance (contained in the Medication
    or in the resource that contains it), whose ``code`` names the ingredient (round-4 review H6)."""
    out = []
    for ing in as_list(medication.get("ingredient")):
        if not isinstance(ing, dict):
            continue
        if ing.get("itemCodeableConcept") is not None:
            out.append(ing["itemCodeableConcept"])
            continue
        ref = ing.get("itemReference")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("#"):
            pools = [as_list(medication.get("contained")), as_list((container or {}).get("contained"))]
            item = next((c for pool in pools for c in pool if isinstance(c, dict) and c.get("id") == target[1:]), None)
            if item is not None and item.get("code") is not None:
                out.append(item["code"])
                continue
        if isinstance(ref, dict) and isinstance(ref.get("display"), str):
            out.append({"text": ref["display"]})
    return out


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


class Strength(msgspec.Struct, frozen=True):
    """Product strength: mg per tablet/unit and/or mg per mL (oral suspension)."""

    per_unit_mg: float | None = None
    per_ml_mg: float | None = None


_PER_ML = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*mg\s*/\s*(\d+(?:\.\d+)?)?\s*ml\b", re.IGNORECASE)
_PER_UNIT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*mg\b(?!\s*/)", re.IGNORECASE)


def strength_of(concept: Any, medication: dict | None = None) -> Strength:
    """Strength from the RxNorm code (``codes.toml``), the Medication's
    ingredient strength, or the product name ("mercaptopurine 10 MG Oral
    Tablet", "Tabloid 40 mg", "20 MG/ML Oral Suspension"). Two different
    strengths named -> unknown, never a guess."""
    codes, words = read_concept(concept)
    return _strength(codes[_RXNORM], words, medication)


def _strength(codes: list[str], words: list[str], medication: dict | None) -> Strength:
    """``strength_of`` a concept read by ``read_concept``: its RxNorm ``codes`` and its ``words``."""
    t = terminology()
    per_unit = {t.unit_strength_mg[c] for c in codes if c in t.unit_strength_mg}
    per_ml = {t.ml_strength_mg[c] for c in codes if c in t.ml_strength_mg}
    if not per_unit and not per_ml and isinstance(medication, dict):
        for ing in as_list(medication.get("ingredient")):
            ratio = ing.get("strength") if isinstance(ing, dict) else None
            if not isinstance(ratio, dict):
                continue
            num, den = ratio.get("numerator") or {}, ratio.get("denominator") or {}
            n_mg = _mass_mg(num)
            den_unit, den_value = norm_unit(_unit_of(den)), number(den.get("value")) or 1.0
            if n_mg is not None and den_value > 0:
                if den_unit == "ml":
                    per_ml.add(n_mg / den_value)
                elif den_unit in t.unit_dose_units or not den_unit:
                    per_unit.add(n_mg / den_value)
    if not per_unit and not per_ml:
        text = distinct_text(words) + " | " + (concept_text(medication.get("code")) if isinstance(medication, dict) else "")
        named_per_unit, named_per_ml = _strengths_named(text)
        per_unit |= named_per_unit
        per_ml |= named_per_ml
    return Strength(next(iter(per_unit)) if len(per_unit) == 1 else None,
                    next(iter(per_ml)) if len(per_ml) == 1 else None)


@call_memo  # a product name repeats from order to order within a call
def _strengths_named(text: str) -> tuple[frozenset[float], frozenset[float]]:
    """(mg per unit, mg per mL) that a product name states ("Tabloid 40 mg", "20 MG/ML Oral Suspension")."""
    ascii_low = text.lower() if text.isascii() else None
    if ascii_low is not None and "mg" not in ascii_low:  # both patterns need "mg" in some letter case
        return frozenset(), frozenset()
    per_ml = set()
    stripped = text
    if ascii_low is None or "ml" in ascii_low:  # and ``_PER_ML`` needs "ml" (most names are of tablets: no match)
        for m in _PER_ML.finditer(text):
            volume = float(m.group(2) or 1)
            if volume > 0:
                per_ml.add(float(m.group(1)) / volume)
        stripped = _PER_ML.sub(" ", text)
    return frozenset(float(m.group(1)) for m in _PER_UNIT.finditer(stripped)), frozenset(per_ml)


def _mass_mg(q: dict) -> float | None:
    value, unit = number(q.get("value")), norm_unit(_unit_of(q))
    factor = terminology().mass_units.get(unit)
    return value * factor if value is not None and factor is not None else None


_PER_KG = {"mg/kg", "mg/kg/d", "mg/kg/day", "mg/kg{body_weight}", "mg/kg/dose"}
# mg per m2 of body surface area (UCUM "mg/m2"): read as a per-m2 amount; the rules convert it with the body
# surface area (round-6 m5), this mapper does not decide which height and weight may be used
_PER_M2 = {"mg/m2", "mg/m2/d", "mg/m2/day", "mg/m2/dose", "mg/m²", "mg/m^2", "mg/(m2)"}
_VOLUME = {"ml": 1.0, "milliliter": 1.0, "milliliters": 1.0, "millilitre": 1.0, "l": 1000.0, "cl": 10.0}


def _to_mg(q: dict, strength: Strength) -> tuple[float | None, str, bool | str]:
    """(amount, problem, per): the amount is mg, or mg per kg when ``per`` is True, or mg per m2 when "m2"."""
    value = number(q.get("value"))
    if value is None or value < 0:
        return None, "the dose has no readable amount", False
    unit = _unit_of(q)
    t = terminology()
    nu = norm_unit(unit)
    if nu in t.mass_units:
        return value * t.mass_units[nu], "", False
    if nu in _PER_KG:
        return value, "", True
    if nu in _PER_M2:
        return value, "", "m2"
    if nu in t.unit_dose_units:
        if strength.per_unit_mg is None:
            return None, f"the dose is given in '{unit}' and the product strength is not known", False
        return value * strength.per_unit_mg, "", False
    if nu in _VOLUME:
        if strength.per_ml_mg is None:
            return None, f"the dose is given in '{unit}' and the concentration (mg/mL) is not known", False
        return value * _VOLUME[nu] * strength.per_ml_mg, "", False
    if not unit:
        return None, "the dose has no unit", False
    return None, f"the dose unit '{unit}' is not a mass unit", False


_DAYS_OF_WEEK = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
# Timing.repeat elements this reader does not interpret; an order that uses them is "could not be read", never daily
_UNREAD_REPEAT = ("periodMax", "offset", "dayOfMonth")


def _per_day(dosage: dict) -> tuple[float | None, str, float | None]:
    """(administrations per day, problem, days between doses when doses are a day or more apart).

    FHIR R4 Timing.repeat: ``frequency`` (or ``frequencyMax``) per ``period`` ``periodUnit``; with no
    frequency, one per ``when`` / ``timeOfDay`` entry each day; ``dayOfWeek`` restricts a daily (or
    shorter-period) schedule to the listed days, so the daily amount is averaged over the week
    (Mon/Wed/Fri once a day = 3/7 a day). A weekly period with ``dayOfWeek`` already counts per week.
    Shapes not read here (``periodMax``, ``offset``, ``dayOfMonth``, a dayOfWeek with a period between
    a day and a week) are "could not be read" - never taken as daily."""
    timing = t if isinstance(t := dosage.get("timing"), dict) else {}
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), dict) else {}
    if repeat:
        unread = [k for k in _UNREAD_REPEAT if repeat.get(k) not in (None, [], "")]
        if unread:
            return None, f"the timing uses {', '.join(unread)}, which could not be read", None
        dow_raw = as_list(repeat.get("dayOfWeek"))
        dow = {str(d).strip().lower() for d in dow_raw}
        if dow_raw and not dow <= _DAYS_OF_WEEK:
            return None, f"the timing dayOfWeek {dow_raw} could not be read", None
        freq = number(repeat.get("frequencyMax")) or number(repeat.get("frequency"))
        if freq is None:
            times = as_list(repeat.get("when")) + as_list(repeat.get("timeOfDay"))
            freq = float(len(times)) if times else None
        period = number(repeat.get("period"))
        unit = repeat.get("periodUnit") or repeat.get("periodUnits")  # DSTU2 MedicationOrder: periodUnits
        if freq is not None and period is None and not unit and (repeat.get("when") or repeat.get("timeOfDay")):
            period, unit = 1.0, "d"
        if dow and freq is None and period is None and not unit:
            freq, period, unit = 1.0, 1.0, "d"  # "on Mon, Wed and Fri": once on each listed day
        if freq is None and period and isinstance(unit, str) and unit in _PERIOD_DAYS:
            freq = 1.0  # "every 7 days" without a frequency: once per period
        if freq is not None and period and isinstance(unit, str) and unit in _PERIOD_DAYS:
            days = period * _PERIOD_DAYS[unit]
            if freq <= 0 or days <= 0:
                return None, "the dosing frequency is not a positive number", None
            if dow and days <= 1 + 1e-9:
                # the schedule runs only on the listed days: doses a week = per day x days listed
                per_week = freq / days * len(dow)
                per_day = per_week / 7
                return per_day, "", (7 / per_week if 7 / per_week >= 1 else None)
            if dow and abs(days - 7) > 1e-9 and days < 7:
                return None, "the timing combines dayOfWeek with a period of more than a day and less than a week, " \
                             "which could not be read", None
            if dow and abs(days - 7) < 1e-9 and freq % len(dow) > 1e-9:
                return None, "the timing frequency does not fit the days of the week listed, and could not be read", None
            return freq / days, "", (days / freq if days / freq >= 1 else None)
        if freq is not None or period is not None:
            return None, "the dosing frequency is incomplete", None
    for c in codings(timing.get("code")):
        code = str(c.get("code") or "").upper()
        if code in _TIMING_CODES:
            per_day = _TIMING_CODES[code]
            return per_day, "", (1 / per_day if per_day <= 1 else None)
    return None, "the order gives no dosing frequency", None


# Doses this many days apart or more are not averaged into a daily dose: a
# once-weekly order of a daily drug is reported as written (MedicationFact.schedule_problem).
_NOT_AVERAGED_DAYS = 7.0


def _schedule_words(days: float) -> str:
    if abs(days - 7) < 1e-6:
        return "once weekly"
    if abs(days - 14) < 1e-6:
        return "once every 2 weeks"
    if 28 <= days <= 31:
        return "once monthly"
    return f"once every {days:g} days"


class DoseReading(msgspec.Struct):
    dose: DailyDose | None
    problem: str = ""
    schedule_problem: str = ""  # e.g. "700 mg once weekly"
    per_kg: bool = False  # dose is mg/kg/day: needs the weight (fhir_mappers.build_facts)
    per_m2: bool = False  # dose is mg/m2/day: needs the body surface area (rules.evaluate.per_m2_doses)


_NO_READING = DoseReading(None)  # the reading of an order whose dose is not read (no known ingredient); never changed


def read_dose(resource: dict, strength: Strength) -> DoseReading:
    """Daily amount in mg from ``dosageInstruction`` (doses in the same
    ``sequence`` add up; of several sequences the largest counts). A schedule
    of one dose a week or rarer is not averaged: it is reported."""
    dosages = [d for d in as_list(resource.get("dosageInstruction")) if isinstance(d, dict)]
    if not dosages:
        return DoseReading(None, "the order has no dosage instructions")
    groups: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
    texts, per_kg_flags, forms = [], set(), set()
    for d in dosages:
        if d.get("asNeededBoolean") is True and not d.get("timing"):
            return DoseReading(None, "the order is 'as needed' with no schedule")
        quantity, dose_range = _dose_quantity(d)
        if quantity is not None:
            low_mg, problem, per_kg = _to_mg(quantity, strength)
            high_mg = low_mg
            forms.add(quantity_form(quantity))
        elif dose_range is not None:
            low_q, high_q = dose_range.get("low"), dose_range.get("high")
            if not isinstance(high_q, dict):
                return DoseReading(None, "the dose range has no upper limit")
            high_mg, problem, per_kg = _to_mg(high_q, strength)
            low_mg = _to_mg(low_q, strength)[0] if isinstance(low_q, dict) else high_mg
            forms.add(quantity_form(high_q))
        else:
            return DoseReading(None, "the order gives no dose amount")
        if problem:
            return DoseReading(None, problem)
        per_kg_flags.add(per_kg)
        per_day, problem, interval = _per_day(d)
        if problem:
            return DoseReading(None, problem)
        assert high_mg is not None and per_day is not None  # _to_mg and _per_day give a value when they give no problem
        if interval is not None and interval >= _NOT_AVERAGED_DAYS - 1e-9:
            amount = f"{high_mg:g} mg/kg" if per_kg is True else f"{high_mg:g} mg/m²" if per_kg == "m2" else f"{high_mg:g} mg"
            schedule = f"{amount} {_schedule_words(interval)}"
            return DoseReading(None, f"the order is {schedule}: a daily dose is not averaged from it", schedule,
                               per_kg is True, per_kg == "m2")
        seq = d.get("sequence")
        groups[seq][0] += (low_mg or 0.0) * per_day
        groups[seq][1] += high_mg * per_day
        if isinstance(d.get("text"), str):
            texts.append(d["text"])
    if len(per_kg_flags) > 1:
        return DoseReading(None, "the order mixes doses in mg, mg/kg and mg/m²")
    low, high = max(groups.values(), key=lambda g: g[1])
    if not (math.isfinite(low) and math.isfinite(high)):  # e.g. 1e308 mg three times a day
        return DoseReading(None, "the dose is too large to be read")
    form = next(iter(forms)) if len(forms) == 1 else ""
    return DoseReading(DailyDose(round(low, 3), round(high, 3), "; ".join(texts), form), "", "", per_kg_flags == {True},
                       per_kg_flags == {"m2"})


def quantity_form(q: dict) -> str:
    """"suspension" for a dose in mL, "tablet" for one in tablets/units, else "" (mg, mg/kg...)."""
    nu = norm_unit(_unit_of(q))
    if nu in _VOLUME:
        return "suspension"
    return "tablet" if nu in terminology().unit_dose_units else ""


def daily_dose(resource: dict, strength_mg: float | None) -> tuple[DailyDose | None, str]:
    """Daily amount in mg (per-tablet strength given); see ``read_dose``."""
    r = read_dose(resource, Strength(strength_mg))
    if r.per_kg and r.dose is not None:
        return None, "the dose is ordered in mg/kg and needs the body weight"
    if r.per_m2 and r.dose is not None:
        return None, "the dose is ordered in mg/m² and needs the body surface area"
    return r.dose, r.problem


def _medication_resource(resource: dict, medications: dict[str, dict]) -> dict | None:
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str):
        return None
    if target.startswith("#"):
        return next((c for c in as_list(resource.get("contained")) if isinstance(c, dict) and c.get("id") == target[1:]), None)
    return find_medication(target, medications)


def _prior_therapy(resource: dict) -> PriorTherapy | None:
    """Evidence in the order itself that it continues earlier therapy."""
    evidence = []
    prior = resource.get("priorPrescription")
    if isinstance(prior, dict) and (prior.get("reference") or prior.get("display")):
        evidence.append(f"renews {prior.get('reference') or prior.get('display')} (priorPrescription)")
    for based in as_list(resource.get("basedOn")):
        if isinstance(based, dict) and str(based.get("reference") or "").startswith("MedicationRequest/"):
            evidence.append(f"based on {based['reference']}")
    return PriorTherapy("; ".join(evidence)) if evidence else None


def _replaced_refs(resource: dict) -> frozenset[str]:
    """The orders this order renews or replaces, as "MedicationRequest/id" (priorPrescription, basedOn;
    a full URL is cut to its last two segments)."""
    refs = []
    for r in [resource.get("priorPrescription"), *as_list(resource.get("basedOn"))]:
        target = r.get("reference") if isinstance(r, dict) else None
        if isinstance(target, str) and "MedicationRequest/" in target:
            refs.append("/".join(target.split("/_history")[0].rstrip("/").split("/")[-2:]))
    return frozenset(refs)


def _recorded_refs(statement: dict) -> frozenset[str]:
    """Round-19 H4: the orders a MedicationStatement records taking (basedOn, derivedFrom naming a MedicationRequest),
    as "MedicationRequest/id" (a full URL is cut to its last two segments, as ``_replaced_refs`` cuts them)."""
    refs = []
    for r in [*as_list(statement.get("basedOn")), *as_list(statement.get("derivedFrom"))]:
        target = r.get("reference") if isinstance(r, dict) else None
        if isinstance(target, str) and "MedicationRequest/" in target:
            refs.append("/".join(target.split("/_history")[0].rstrip("/").split("/")[-2:]))
    return frozenset(refs)


def _statement_as_order(statement: dict) -> dict:
    """A MedicationStatement read like an order: R4 ``dosage`` is the order's ``dosageInstruction`` and
    ``effective[x]`` (else ``dateAsserted``) its date. ``medication[x]`` is read by ``medication_concept``."""
    period = p if isinstance(p := statement.get("effectivePeriod"), dict) else {}
    when = next((v for v in (statement.get("effectiveDateTime"), period.get("start"), statement.get("dateAsserted"))
                 if isinstance(v, str)), None)
    out = {k: v for k, v in statement.items() if k not in ("dosage", "authoredOn", "priorPrescription", "basedOn")}
    out["dosageInstruction"] = statement.get("dosage")
    out["authoredOn"] = when
    return out


def medication_fact(resource: dict, *, is_draft: bool, medications: dict[str, dict] | None = None) -> MedicationFact | None:
    """A fact for a MedicationRequest (or an order naming a vaccine); ``None``
    for resources that are not medication orders."""
    rtype = resource.get("resourceType")
    if rtype not in ("MedicationRequest", "MedicationOrder", "MedicationStatement", "Immunization",
                     "ImmunizationRecommendation", "ServiceRequest"):
        return None
    original = resource
    if rtype == "MedicationStatement":
        resource = _statement_as_order(resource)
    if rtype == "Immunization":
        concept, medication = resource.get("vaccineCode"), None
    else:
        concept = medication_concept(resource, medications or {})
        medication = _medication_resource(resource, medications or {})
    # the concept is read once: its codes and words serve the vaccine, the ingredients, the strength and the name
    codes, words = read_concept(concept)
    named, vaccines_named = names_in_text(distinct_text(words))  # ingredients_in_text, vaccines_in_text
    cvx = _coded_vaccines(codes)
    if vaccines_named:
        cvx |= text_vaccines_beside(cvx, set(vaccines_named))
    if rtype == "ServiceRequest" and not cvx:
        return None
    ingredients = _coded_ingredients(codes) | named
    item_names = []
    if isinstance(medication, dict) and medication.get("ingredient"):
        for item in _item_concepts(medication, resource):
            ingredients |= ingredients_of(item)
            item_names.append(concept_text(item))
    reading = _NO_READING
    strength = Strength()
    if ingredients and rtype != "Immunization":
        strength = _strength(codes[_RXNORM], words, medication)
        reading = read_dose(resource, strength)
    dose, problem, per_kg, per_m2 = reading.dose, reading.problem, None, None
    # what the order renews or replaces (priorPrescription, basedOn): most orders name neither
    renews = rtype == "MedicationRequest" and (resource.get("priorPrescription") is not None
                                               or resource.get("basedOn") is not None)
    reasons = resource.get("reasonCode")
    if reading.per_kg and dose is not None:  # mg/kg/day: build_facts multiplies it by the body weight
        dose, per_kg, problem = None, dose, "the dose is ordered in mg/kg and no body weight is on record"
    elif reading.per_m2 and reading.dose is not None:  # mg/m2/day: the rules multiply it by the body surface area
        dose, per_m2, problem = None, reading.dose, (
            f"the dose is ordered as {reading.dose.high_mg:g} mg/m²/day and no current height and weight are on "
            f"record to compute the body surface area")
    return MedicationFact(
        ref=ref_of(resource),
        ingredients=frozenset(ingredients),
        display=(words[0] if words else "") or " / ".join(n for n in item_names if n) or ", ".join(sorted(ingredients))
        or "unnamed medication",
        status=str(resource.get("status") or ""),
        is_draft=is_draft,
        authored_on=parse_date(resource.get("authoredOn") or resource.get("dateWritten") or resource.get("occurrenceDateTime")),
        daily_dose=dose,
        dose_problem=problem,
        vaccine_codes=frozenset(cvx),
        reason_codes=frozenset(k for rc in as_list(reasons) for k in code_keys(rc)) if reasons is not None else frozenset(),
        schedule_problem=reading.schedule_problem,
        dose_per_kg=per_kg,
        dose_per_m2=per_m2,
        prior_therapy=_prior_therapy(resource) if renews else None,
        replaces=_replaced_refs(resource) if renews else frozenset(),
        records=_recorded_refs(original) if rtype == "MedicationStatement" else frozenset(),
        resource=original,
        bounded=_bounded(resource),
        unit_mg=strength.per_unit_mg,
        ml_mg=strength.per_ml_mg,
        status_reason=_status_reason(original),
    )


def _status_reason(resource: dict) -> str:
    """Round-19 H3: why the order has its status, as sent: ``statusReason`` (a CodeableConcept; a MedicationStatement's
    list: the first with anything readable) as its text, else a coding's display, else a coding's code."""
    for concept in as_list(resource.get("statusReason")):
        text = concept_text(concept).strip()
        if not text:
            text = next((str(c["code"]) for c in codings(concept) if c.get("code") is not None), "").strip()
        if text:
            return text
    return ""


def _bounded(resource: dict) -> bool:
    """Whether the order says how long it runs: a dosage's ``timing.repeat`` boundsDuration, boundsRange,
    boundsPeriod.end or count, or ``dispenseRequest`` validityPeriod.end or expectedSupplyDuration (FHIR R4
    MedicationRequest, Timing). Only a value that is there counts: an empty object bounds nothing."""
    dispense = resource.get("dispenseRequest")
    if isinstance(dispense, dict):
        period = dispense.get("validityPeriod")
        if isinstance(period, dict) and period.get("end"):
            return True
        supply = dispense.get("expectedSupplyDuration")
        if isinstance(supply, dict) and supply.get("value") is not None:
            return True
    for d in as_list(resource.get("dosageInstruction")):
        timing = d.get("timing") if isinstance(d, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if not isinstance(repeat, dict):
            continue
        duration, rng, period = repeat.get("boundsDuration"), repeat.get("boundsRange"), repeat.get("boundsPeriod")
        if (isinstance(duration, dict) and duration.get("value") is not None) or \
                (isinstance(rng, dict) and isinstance(rng.get("high"), dict) and rng["high"].get("value") is not None) or \
                (isinstance(period, dict) and period.get("end")) or repeat.get("count") is not None:
            return True
    return False
