"""Whose data a resource says it is (round-8 review H1): the Patient its ``subject`` or ``patient`` reference names.

A prefetch template (and this service's own FHIR searches) are scoped to ``context.patientId`` (CDS Hooks 2.0), but a
mis-scoped template, a merged or unmerged chart, a mother/baby pair or a proxy can still send resources about
another patient. ``other_patient`` says which resource names, as it can be compared, a Patient other than the
context patient; ``fhir_mappers.build`` sets those aside (never used as this patient's data) and records a gap.

What can be compared: a reference "Patient/<id>", or an absolute URL ending in "Patient/<id>" (optionally followed
by "/_history/<version>"); its id is compared with the context patient's id (FHIR ids are case-sensitive). A subject
with no reference, a "urn:uuid:" or contained ("#...") reference, an identifier-only or display-only reference, or a
reference to something other than a Patient (a Group) cannot be compared: the resource is kept (the query that
fetched it was scoped to the patient). Whether the data matter clinically is not decided here.
"""
from __future__ import annotations

import re
from typing import Any

# "Patient/<id>" at the start of a relative reference or after a "/" of an absolute URL; FHIR R4 id: [A-Za-z0-9\-\.]{1,64}
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?/?$")
# the members that name the patient a resource is about: subject (Observation, DiagnosticReport, Condition,
# MedicationRequest, MedicationStatement, MedicationDispense), patient (Immunization, AllergyIntolerance; STU3/DSTU2)
_MEMBERS = ("subject", "patient")
SHOWN = 60  # characters of a reference quoted as sent


def named_patient_id(reference: Any) -> str | None:
    """The Patient id a reference names, when it can be compared; else None."""
    if not isinstance(reference, str):
        return None
    m = _PATIENT_REF.search(reference.strip())
    return m.group(1) if m else None


def context_patient_id(patient_id: Any) -> str | None:
    """``context.patientId`` as an id: a client that sends "Patient/<id>" means the same patient."""
    if not isinstance(patient_id, str) or not patient_id.strip():
        return None
    pid = patient_id.strip()
    return named_patient_id(pid) or pid if "/" in pid else pid


def patient_reference(resource: dict) -> str | None:
    """The reference, as sent, of the member that names the patient the resource is about (None when absent)."""
    for member in _MEMBERS:
        value = resource.get(member)
        if isinstance(value, dict):
            ref = value.get("reference")
            return ref if isinstance(ref, str) else None
        if value is not None:
            return None
    return None


def other_patient(resource: Any, patient_id: str | None) -> str | None:
    """The reference as sent (cut to ``SHOWN`` characters) when ``resource`` is about a Patient whose id is not
    ``patient_id``; None when it is this patient's, or cannot be compared. A Patient resource is compared by its
    own id."""
    if not patient_id or not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}"[:SHOWN] if isinstance(rid, str) and rid and rid != patient_id else None
    ref = patient_reference(resource)
    if ref is None or ref == "Patient/" + patient_id:  # the usual shape: no pattern needed
        return None
    named = named_patient_id(ref)
    return ref.strip()[:SHOWN] if ref is not None and named is not None and named != patient_id else None
