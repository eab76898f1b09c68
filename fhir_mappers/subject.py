"""Whose data a resource says it is (round-8 review H1, round-9 H1/H2): the Patient its ``subject`` or ``patient``
reference names.

A prefetch template (and this service's own FHIR searches) are scoped to ``context.patientId`` (CDS Hooks 2.0), but a
mis-scoped template, a merged or unmerged chart, a mother/baby pair or a proxy can still send resources about
another patient. ``other_patient`` says which resource names, as it can be compared, a Patient other than the
context patient; ``fhir_mappers.build`` sets those aside (never used as this patient's data) and records a gap.

What can be compared (HL7 FHIR R4 Reference; Bundle "Resolving references in Bundles"):

- a literal reference "Patient/<id>", or an absolute URL ending in "Patient/<id>" (optionally followed by
  "/_history/<version>"): its id is compared with the context patient's id (FHIR ids are case-sensitive). The
  type is read case-insensitively ("patient/<id>" is no valid FHIR reference, but is sent and means a Patient).
  An absolute URL is this patient's only when its base is one of ``bases`` too (round-11 H2: the request's
  ``fhirServer`` and the base of a ``fullUrl`` of the context Patient, ``fhir_mappers.build._Bases``, compared by
  ``server_base``): a logical id
  is unique only within one server, so "https://other-hospital.example.net/fhir/Patient/<this id>" cannot be
  confirmed (set aside as below); one naming another id names another patient wherever it is;
- a reference that is the ``fullUrl`` of a Patient entry of the same Bundle ("urn:uuid:...", "urn:oid:..." or an
  absolute URL): that Patient's id is compared;
- a conditional reference "Patient?identifier=<system>|<value>" (or "?_id=<id>"), and an identifier-only
  reference (``Reference.identifier`` with ``system`` and ``value``): an identifier whose system is one of the
  context Patient's identifier systems (``Patient.identifier`` of the ``patient`` prefetch) is this patient's when
  its value is one of the Patient's values in that system, and another patient's when it is not.

What cannot be compared (round-10 H1, ``patient_verdict``): a subject that names a patient in a form that cannot be
confirmed to be the context patient (an unresolvable "urn:uuid:" or a contained ("#...") reference, an identifier
or conditional reference in a system the context Patient does not carry (or no context Patient), a display-only
reference) is set aside like another patient's resource, with its own gap ("could not confirm ..."): data that may
be another patient's never clears a check nor makes a finding. Kept as this patient's: a resource with no subject
(or patient) member at all, or one naming nothing (``{}``), since the patient-scoped query fetched it and an
``_elements`` / summary search may leave the member out; and a reference to something other than a Patient (a
Group). When a literal reference can be compared it decides, whatever identifier is sent with it.
Whether the data matter clinically is not decided here.
"""
from __future__ import annotations

import re
from typing import Any, Container, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

# "Patient/<id>" at the start of a relative reference or after a "/" of an absolute URL; FHIR R4 id: [A-Za-z0-9\-\.]{1,64}
# The type is read case-insensitively: "patient/pt-999" is sent by some clients and can only mean a Patient.
_PATIENT_REF = re.compile(r"(?:^|/)(?i:Patient)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?/?$")
# a conditional reference (FHIR R4 transaction / Reference: "Patient?identifier=system|value"), relative or absolute
_CONDITIONAL = re.compile(r"(?:^|/)(?i:Patient)\?(.+)$")
# the resource type of a conditional reference ("Group?identifier=...")
_CONDITIONAL_TYPE = re.compile(r"(?:^|/)([A-Za-z]+)\?")
# the resource type of a literal reference, relative or absolute ("Group/g-1", ".../fhir/Group/g-1/_history/2")
_LITERAL_TYPE = re.compile(r"(?:^|/)([A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]*)?/?$")
# the part of a quote that names the patient (for a summary): "Patient/<id>" anywhere in it
_NAMES_PATIENT = re.compile(r"(?i:Patient)/[A-Za-z0-9\-.]{1,64}")
# an absolute URL: a scheme and "//" (RFC 3986); "urn:uuid:..." and "urn:oid:..." are no server address
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# the members that name the patient a resource is about: subject (Observation, DiagnosticReport, Condition,
# MedicationRequest, MedicationStatement, MedicationDispense), patient (Immunization, AllergyIntolerance; STU3/DSTU2)
_MEMBERS = ("subject", "patient")
SHOWN = 60  # characters of a reference quoted as sent

# the context Patient's identifiers: system -> its values in that system
Identifiers = Mapping[str, frozenset[str]]


def named_patient_id(reference: Any) -> str | None:
    """The Patient id a reference names, when it can be compared; else None."""
    if not isinstance(reference, str):
        return None
    m = _PATIENT_REF.search(reference.strip())
    return m.group(1) if m else None


def server_base(url: Any) -> str | None:
    """A FHIR server base URL as it is compared (round-11 H2): scheme and host lower-cased (RFC 3986 6.2.2.1), the
    scheme's default port left out, no trailing "/", no query or fragment; the path kept as sent (case-sensitive).
    None for anything that is not an absolute http(s)-like URL with a host."""
    if not isinstance(url, str) or not _ABSOLUTE.match(url.strip()):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not host:
        return None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def reference_base(reference: Any) -> str | None:
    """The server base of an absolute reference to a Patient ("https://ehr.example.org/fhir/Patient/pt-1/_history/2"
    -> "https://ehr.example.org/fhir"), as ``server_base`` compares it; None for a relative reference ("Patient/pt-1")
    and for anything else."""
    if not isinstance(reference, str):
        return None
    s = reference.strip()
    m = _PATIENT_REF.search(s)
    if m is None or m.start() == 0 or not _ABSOLUTE.match(s):
        return None
    return server_base(s[:m.start()])


def context_patient_id(patient_id: Any) -> str | None:
    """``context.patientId`` as an id: a client that sends "Patient/<id>" means the same patient."""
    if not isinstance(patient_id, str) or not patient_id.strip():
        return None
    pid = patient_id.strip()
    return named_patient_id(pid) or pid if "/" in pid else pid


def patient_identifiers(patients: Iterable[Any]) -> dict[str, frozenset[str]]:
    """The identifiers (system -> values) of the context Patient resources given (``Patient.identifier`` entries
    with a ``system`` and a ``value``, each stripped of surrounding spaces)."""
    out: dict[str, set[str]] = {}
    for p in patients:
        idents = p.get("identifier") if isinstance(p, dict) else None
        for ident in idents if isinstance(idents, list) else ():
            if isinstance(ident, dict):
                system, value = ident.get("system"), ident.get("value")
                if isinstance(system, str) and isinstance(value, str) and system.strip() and value.strip():
                    out.setdefault(system.strip(), set()).add(value.strip())
    return {system: frozenset(values) for system, values in out.items()}


def bundle_patients(value: Any) -> dict[str, dict]:
    """The Patient entries of a Bundle by their ``fullUrl`` (FHIR R4 "Resolving references in Bundles"): a
    reference equal to a fullUrl names that entry's resource. Empty for anything that is not a Bundle."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle" or not isinstance(value.get("entry"), list):
        return {}
    return {url.strip(): r for e in value["entry"]
            if isinstance(e, dict) and isinstance(url := e.get("fullUrl"), str)
            and isinstance(r := e.get("resource"), dict) and r.get("resourceType") == "Patient"}


class BundlePatients:
    """``bundle_patients`` of a value, read only when a reference needs it (most references are "Patient/<id>" and
    never do: the entries are not walked again for them)."""

    __slots__ = ("_value", "_index")

    def __init__(self, value: Any) -> None:
        self._value = value
        self._index: dict[str, dict] | None = None

    def get(self, url: str) -> dict | None:
        if self._index is None:
            self._index = bundle_patients(self._value)
        return self._index.get(url)


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


def quoted(text: str) -> str:
    """A reference as sent, at most ``SHOWN`` characters: a longer one is shortened from the left ("…" and its
    end), since its end names the patient (round-9 m1)."""
    return text if len(text) <= SHOWN else "…" + text[-(SHOWN - 1):]


def naming_part(quote: str) -> str:
    """The part of a quote that names the patient, for a summary (round-9 m1): its last "Patient/<id>"
    ("https://ehr.example.org/fhir/Patient/pt-999/_history/3" -> "Patient/pt-999"), else the identifier value
    after its last "|" ("identifier urn:oid:1.2.36|MRN-9999" -> "MRN-9999"), else the quote (a conditional
    reference with several criteria: which one differs is not said by one of them)."""
    if quote.startswith("display '") and quote.endswith("'"):
        return quote[len("display '"):-1]
    found = _NAMES_PATIENT.findall(quote)
    if found:
        return str(found[-1])
    if "|" in quote and "&" not in quote:
        tail = quote.rsplit("|", 1)[1].strip()
        if tail:
            return tail
    return quote


def foreign_host(quote: str) -> str | None:
    """The host of an absolute reference as quoted (round-11 H2: "https://other-hospital.example.net/fhir/Patient/
    pt-1" -> "other-hospital.example.net"), which names where the patient it names is, for a summary: its
    "Patient/<id>" is this patient's id and would say nothing. None for any other quote."""
    if not _ABSOLUTE.match(quote):
        return None
    try:
        host = urlsplit(quote).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def other_base(resource: Any, patient_id: str | None, bases: Container[str]) -> str | None:
    """The reference as sent when ``resource``'s subject (or patient) is an absolute URL naming ``patient_id`` on a
    server base not in ``bases`` (round-11 H2); else None (the draft orders being signed are named by it: they are
    still checked)."""
    if not patient_id or not isinstance(resource, dict):
        return None
    value = resource.get("subject")
    if value is None:
        value = resource.get("patient")
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not _ABSOLUTE.match(ref.strip()) or named_patient_id(ref) != patient_id:
        return None
    return None if reference_base(ref) in bases else quoted(ref.strip())


def _identifier_verdict(system: Any, value: Any, identifiers: Identifiers | None) -> bool | None:
    """True: another patient's identifier; False: this patient's; None: cannot be compared."""
    if not identifiers or not isinstance(system, str) or not isinstance(value, str):
        return None
    values = identifiers.get(system.strip())
    if values is None or not value.strip():
        return None
    return value.strip() not in values


def _conditional_verdict(query: str, patient_id: str, identifiers: Identifiers | None) -> bool | None:
    """A conditional reference's criteria (all must hold: FHIR search) against this patient: True when one of them
    names another patient, False when every one that can be compared is this patient's, None when none can."""
    verdict: bool | None = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        name = name.strip()
        if name == "_id":
            this = value.strip() == patient_id
        elif name.split(":", 1)[0] == "identifier" and "|" in value:
            system, _, ident = value.partition("|")
            other = _identifier_verdict(system, ident, identifiers)
            if other is None:
                continue
            this = not other
        else:
            continue
        if not this:
            return True
        verdict = False
    return verdict


def _reference_verdict(ref: str, patient_id: str, identifiers: Identifiers | None,
                        full_urls: Mapping[str, dict] | BundlePatients | None,
                        bases: Container[str] | None = None) -> str | None:
    """The quote when ``ref`` names another patient, "" when it names this patient, None when it cannot be
    compared. ``bases``: the server bases this patient's absolute references may have (``server_base``), None
    when they are not compared (round-11 H2): an absolute "…/Patient/<this id>" on another base (or on any base
    when none is known) cannot be confirmed, since a logical id is unique only within one server."""
    s = ref.strip()
    named = named_patient_id(s)
    if named is not None:
        if named != patient_id:
            return quoted(s)
        if bases is not None and _ABSOLUTE.match(s) and reference_base(s) not in bases:
            return None
        return ""
    target = full_urls.get(s) if full_urls is not None else None
    if target is not None:
        rid = target.get("id")
        if isinstance(rid, str) and rid:
            return "" if rid == patient_id else f"{quoted(s)} = Patient/{rid[:40]}"
        return None
    m = _CONDITIONAL.search(s)
    if m is not None:
        other = _conditional_verdict(m.group(1), patient_id, identifiers)
        if other is not None:
            return quoted(s) if other else ""
    return None


def _may_be_a_patient(reference: dict, ref: Any) -> bool:
    """Whether a Reference's identifier may be a Patient's: not when its ``type`` (R4: "Patient" or a URL ending in
    it) or its literal reference ("Group/g-1") names another resource type (a Group's identifier is no MRN)."""
    rtype = reference.get("type")
    if isinstance(rtype, str) and rtype.strip() and rtype.strip().rsplit("/", 1)[-1].lower() != "patient":
        return False
    if not isinstance(ref, str):
        return True
    m = _LITERAL_TYPE.search(ref.strip()) or _CONDITIONAL_TYPE.search(ref.strip())
    return m is None or m.group(1).lower() == "patient"


def other_patient(resource: Any, patient_id: str | None, identifiers: Identifiers | None = None,
                  full_urls: Mapping[str, dict] | BundlePatients | None = None,
                  bases: Container[str] | None = None) -> str | None:
    """The reference as sent (at most ``SHOWN`` characters) when ``resource`` is about a Patient whose id is not
    ``patient_id``; None when it is this patient's, or cannot be compared. A Patient resource is compared by its
    own id. ``identifiers``: the context Patient's (``patient_identifiers``), for identifier-only and conditional
    references; ``full_urls``: the Patient entries of the Bundle the resource came in (``bundle_patients``,
    ``BundlePatients``)."""
    verdict = patient_verdict(resource, patient_id, identifiers, full_urls, bases)
    return verdict[1] if verdict is not None and verdict[0] else None


def patient_verdict(resource: Any, patient_id: str | None, identifiers: Identifiers | None = None,
                    full_urls: Mapping[str, dict] | BundlePatients | None = None,
                    bases: Container[str] | None = None) -> tuple[bool, str] | None:
    """Whose data ``resource`` is: None when it is this patient's, has no subject (or patient) naming anyone, or
    names something other than a Patient (a Group); ``(True, quote)`` when it names another Patient
    (``other_patient``); ``(False, quote)`` when it names a patient in a form that cannot be confirmed to be this
    one (round-10 H1: display only; an identifier or conditional reference in a system the context Patient does
    not carry; a "urn:uuid:" that resolves to no Patient entry with an id; a contained reference; round-11 H2: an
    absolute URL naming this patient's id on a server base not in ``bases``). ``quote``: the reference as sent, at
    most ``SHOWN`` characters. ``bases``: ``_reference_verdict``."""
    if not patient_id or not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return (True, f"Patient/{rid}"[:SHOWN]) if isinstance(rid, str) and rid and rid != patient_id else None
    value = resource.get("subject")  # _MEMBERS, in order, without a loop (every gathered resource comes here)
    if value is None:
        value = resource.get("patient")
    if isinstance(value, str):  # a bare reference string (not valid FHIR, but sent): read as the Reference it means
        value = {"reference": value}
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if isinstance(ref, str):
        if ref == "Patient/" + patient_id:  # the usual shape: no pattern needed
            return None
        verdict = _reference_verdict(ref, patient_id, identifiers, full_urls, bases)
        if verdict is not None:
            return (True, verdict) if verdict else None
    if not _may_be_a_patient(value, ref):
        return None  # a Group, a Device, a Location: not a patient (kept, as before)
    ident = value.get("identifier")
    system, ivalue = (ident.get("system"), ident.get("value")) if isinstance(ident, dict) else (None, None)
    if identifiers and isinstance(ident, dict):
        other = _identifier_verdict(system, ivalue, identifiers)
        if other is not None:
            return (True, quoted(f"identifier {str(system).strip()}|{str(ivalue).strip()}")) if other else None
    # present, names a patient, and cannot be confirmed to be this one (round-10 H1)
    if isinstance(ref, str) and ref.strip():
        return False, quoted(ref.strip())
    if isinstance(ivalue, str) and ivalue.strip():
        sys_part = f"{system.strip()}|" if isinstance(system, str) and system.strip() else ""
        return False, quoted(f"identifier {sys_part}{ivalue.strip()}")
    display = value.get("display")
    if isinstance(display, str) and display.strip():
        return False, quoted(f"display '{display.strip()}'")
    return None
