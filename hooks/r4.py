"""Suggested FHIR R4 resources, built from validated fields only.

A suggestion's resource goes back into the EHR: a MedicationRequest that is not valid R4 is
refused there (the public sandbox, for one, sends ``category`` and ``reasonCode`` as objects,
not lists). So an updated order is not a copy of the draft as it came: each field the service
keeps is checked against its R4 datatype (and shape-fixed where the intent is plain, e.g. one
CodeableConcept where a list is required); anything else is left out. The tests validate every
rule's suggestion for every input shape with ``fhir.resources``; this module needs no library.
"""
from __future__ import annotations

import re
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_CODE = re.compile(r"^[^\s]+( [^\s]+)*$")
_DATE_TIME = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$")
_MAX_TEXT = 4096
MEDICATION_REQUEST_STATUS = {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft",
                             "unknown"}
MEDICATION_REQUEST_INTENT = {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                             "instance-order", "option"}
REQUEST_PRIORITY = {"routine", "urgent", "asap", "stat"}


def string(value: Any) -> str | None:
    """An R4 ``string``: non-blank text, no NUL or lone surrogate, bounded."""
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def code(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= 256 and _CODE.match(value) and string(value) else None


def fhir_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID.match(value) else None


def date_time(value: Any) -> str | None:
    return value if isinstance(value, str) and _DATE_TIME.match(value) else None


def coding(value: Any) -> dict | None:
    if not isinstance(value, dict):
        return None
    out = {}
    for key, check in (("system", string), ("version", string), ("code", code), ("display", string)):
        if (v := check(value.get(key))) is not None:
            out[key] = v
    if isinstance(value.get("userSelected"), bool):
        out["userSelected"] = value["userSelected"]
    return out if ("code" in out or "display" in out) else None


def codeable_concept(value: Any) -> dict | None:
    if not isinstance(value, dict):
        return None
    codings = value.get("coding")
    codings = codings if isinstance(codings, list) else [codings] if isinstance(codings, dict) else []
    out: dict = {}
    if kept := [c for c in (coding(c) for c in codings) if c]:
        out["coding"] = kept
    if (text := string(value.get("text"))) is not None:
        out["text"] = text
    return out or None


def codeable_concepts(value: Any) -> list[dict] | None:
    """A list of CodeableConcepts; one object where a list belongs is taken as that list of one."""
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    kept = [c for c in (codeable_concept(i) for i in items) if c]
    return kept or None


def reference(value: Any) -> dict | None:
    if not isinstance(value, dict):
        return None
    out = {}
    for key in ("reference", "type", "display"):
        if (v := string(value.get(key))) is not None:
            out[key] = v
    return out if ("reference" in out or "display" in out) else None


def updated_medication_request(draft: dict, dosages: list[dict], *, patient_id: str | None = None) -> dict | None:
    """The draft order with a new ``dosageInstruction`` (``dosages``, built by the service: one, or two
    for alternating doses), keeping only the draft's fields that are valid R4; None when the draft names
    no readable medication or subject."""
    out: dict = {"resourceType": "MedicationRequest"}
    if (rid := fhir_id(draft.get("id"))) is not None:
        out["id"] = rid
    status = draft.get("status")  # a JSON object or array is unhashable: test the type before the set
    out["status"] = status if isinstance(status, str) and status in MEDICATION_REQUEST_STATUS else "draft"
    intent = draft.get("intent")
    out["intent"] = intent if isinstance(intent, str) and intent in MEDICATION_REQUEST_INTENT else "order"
    if category := codeable_concepts(draft.get("category")):
        out["category"] = category
    if isinstance(priority := draft.get("priority"), str) and priority in REQUEST_PRIORITY:
        out["priority"] = priority
    medication = codeable_concept(draft.get("medicationCodeableConcept"))
    if medication is not None:
        out["medicationCodeableConcept"] = medication
    elif (med_ref := reference(draft.get("medicationReference"))) is not None:
        out["medicationReference"] = med_ref
    else:
        return None
    subject = reference(draft.get("subject"))
    if subject is None and patient_id and fhir_id(patient_id):
        subject = {"reference": f"Patient/{patient_id}"}
    if subject is None:
        return None
    out["subject"] = subject
    for key in ("encounter", "requester", "recorder"):
        if (ref := reference(draft.get(key))) is not None:
            out[key] = ref
    if (authored := date_time(draft.get("authoredOn"))) is not None:
        out["authoredOn"] = authored
    if reasons := codeable_concepts(draft.get("reasonCode")):
        out["reasonCode"] = reasons
    # a renewal stays a renewal: without these the order it replaces would count again after the update
    if (prior := reference(draft.get("priorPrescription"))) is not None:
        out["priorPrescription"] = prior
    based = draft.get("basedOn")
    if based_on := [r for r in (reference(x) for x in (based if isinstance(based, list) else [based])) if r]:
        out["basedOn"] = based_on
    out["dosageInstruction"] = list(dosages)
    return out
