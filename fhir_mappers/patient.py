"""Patient and Condition → small facts."""
from __future__ import annotations

from datetime import date
from typing import Iterable

from .facts import AllergyFact, ConditionFact, PatientFact
from .fhirjson import all_text, as_list, code_keys, codings, concept_text, parse_date, ref_of

_INACTIVE = {"inactive", "resolved", "remission", "entered-in-error"}


def patient_fact(patient: dict | None) -> PatientFact | None:
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        return None
    gender = patient.get("gender")
    return PatientFact(birth_date=parse_date(patient.get("birthDate")), sex=gender if isinstance(gender, str) else "")


def _clinical_status(condition: dict) -> str:
    status = condition.get("clinicalStatus")
    if isinstance(status, str):  # STU3 and older
        return status
    codes = [str(c.get("code")) for c in codings(status) if c.get("code")]
    return codes[0] if codes else ""


def condition_facts(conditions: Iterable[dict]) -> list[ConditionFact]:
    out = []
    for c in conditions:
        if _clinical_status(c) in _INACTIVE:
            continue
        verification = [str(x.get("code")) for x in codings(c.get("verificationStatus"))]
        if isinstance(c.get("verificationStatus"), str):
            verification.append(c["verificationStatus"])
        if {"refuted", "entered-in-error"} & set(verification):
            continue
        out.append(ConditionFact(frozenset(code_keys(c.get("code"))), concept_text(c.get("code")), ref_of(c),
                                 _onset(c)))
    return out


# Procedure.status (R4 event-status; STU3 the same codes) of a procedure that did not happen: not yet started
# (preparation), not done, or a record made in error. Every other status is read with the Procedure (round-19 H2:
# completed, in-progress, on-hold, stopped part way, unknown, or none): which count is the rules' decision
_PROCEDURE_NOT_DONE = ("preparation", "not-done", "entered-in-error")  # a tuple: a status sent as an object is
# compared, never hashed


def procedure_facts(procedures: Iterable[dict]) -> list[ConditionFact]:
    """Round-11 M1: Procedures, read like Conditions (``ConditionFact``, ``resource_type`` "Procedure"): their
    codes, text, and when performed (``performedDateTime``, else ``performedPeriod.start``, as given; None for
    ``performedString``/``Age``/``Range`` or none). The same Procedure sent under two data groups is read once.
    Round 19 H2: every one but those that did not happen (``_PROCEDURE_NOT_DONE``), with its status ("" when absent
    or not a code) and all its words (text and coding displays)."""
    out, seen = [], set()
    for p in procedures:
        ref = ref_of(p)
        sent = p.get("status")
        status = sent.strip().lower() if isinstance(sent, str) else ""
        if status in _PROCEDURE_NOT_DONE or (ref and ref in seen):
            continue
        seen.add(ref)
        period = p.get("performedPeriod")
        when = parse_date(p.get("performedDateTime")) or \
            (parse_date(period.get("start")) if isinstance(period, dict) else None)
        out.append(ConditionFact(frozenset(code_keys(p.get("code"))), concept_text(p.get("code")), ref, when,
                                 "Procedure", status=status,
                                 words=all_text(p.get("code"))))
    return out


def _onset(condition: dict) -> date | None:
    """Round-10 H2: when the Condition began as the record gives it: onsetDateTime, onsetPeriod.start, else
    recordedDate (read as given; what a date means is the rules' decision)."""
    period = condition.get("onsetPeriod")
    for value in (condition.get("onsetDateTime"), period.get("start") if isinstance(period, dict) else None,
                  condition.get("recordedDate")):
        when = parse_date(value)
        if when is not None:
            return when
    return None


def reason_conditions(order: dict) -> list[ConditionFact]:
    """The order's own reasonCode, read like Conditions."""
    return [ConditionFact(frozenset(code_keys(rc)), concept_text(rc), "") for rc in as_list(order.get("reasonCode"))]


def allergy_facts(allergies: Iterable[dict]) -> list[AllergyFact]:
    """AllergyIntolerance records that name a drug this service knows (``fhir_mappers.allergies``)."""
    from .allergies import allergy_facts as read

    return read(allergies)
