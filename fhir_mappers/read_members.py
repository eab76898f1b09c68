"""The members of a result resource that the mappers read, as a typed decoder: a prefetch value of results is
decoded with only them.

A laboratory result as an EHR sends it carries members no mapper reads (``meta``, ``identifier``,
``performer``, ``category``, ``encounter``, ``specimen``, the narrative ``text``...): in the
realistic request of the benchmarks they are about a third of the objects parsed, then freed, per call.
``decode_results`` reads a value of a results key (a searchset Bundle of Observations, DiagnosticReports and
whatever else the server put there) into the same plain dicts and lists that a whole parse gives, with each
entry's resource cut to ``RESOURCE_MEMBERS`` (msgspec skips the other members while it reads). A member that is
kept is kept whole (``Any``: as a whole parse gives it), so every mapper reads exactly what it read before.

What is kept is decided here, from what the mappers read, for every resource type that can be under a results
key: Observation, DiagnosticReport (and its contained results), Medication and MedicationStatement (read from
every key: ``fhir_mappers.build``), and the Bundle around them. A shape this decoder does not take (an entry that
is not an object, a resource that is a list...) raises ``msgspec.ValidationError``; the caller then parses the
value whole, as it always did, so a strange shape is read as before, never dropped.

``tests/test_read_members.py`` holds the equivalence: every request in the test data, the examples and the
reviewers' cases, and random mutations of them, answer the same through this decoder as through the whole parse.
When a mapper starts to read a new member of a resource, add it here (that test fails until it is).
"""
from __future__ import annotations

from typing import Any, TypedDict

import msgspec

# prefetch keys whose values are result searches (hooks/prefetch.py): their resources are read only by the mappers
RESULT_KEYS = frozenset({"weight", "height", "pgx", "labs", "lab_results", "pregnancy"})


class Resource(TypedDict, total=False):
    """A resource under a results key: the members any mapper reads, each as sent.

    Declared in the order FHIR R4 defines an Observation's elements (the order servers write them in), the other
    types' members after: the decoder looks a member up from where the previous one was found, so members read in
    the declared order are found at once (the decoded dicts keep the order of the JSON, whatever this order is)."""

    # every resource
    resourceType: Any  # noqa: N815 - FHIR member names
    id: Any
    contained: Any
    extension: Any
    modifierExtension: Any  # noqa: N815
    # a Patient a search _includes: its identifier says whether it is the context Patient, whose fullUrl then names
    # the server base of this patient's absolute references (round-11 H2, fhir_mappers.build._Bases)
    identifier: Any
    basedOn: Any  # noqa: N815
    status: Any
    # Observation (R4): code, value[x], effective[x], issued, interpretation, reference range, components,
    # the genomics members (derivedFrom, hasMember), note and method
    code: Any
    # whose data it is (fhir_mappers.subject: a resource about another patient is set aside, round-8 H1)
    subject: Any
    patient: Any
    effectiveDateTime: Any  # noqa: N815
    effectivePeriod: Any  # noqa: N815
    effectiveTiming: Any  # noqa: N815
    effectiveInstant: Any  # noqa: N815
    issued: Any
    valueQuantity: Any  # noqa: N815
    valueCodeableConcept: Any  # noqa: N815
    valueString: Any  # noqa: N815
    valueBoolean: Any  # noqa: N815
    valueInteger: Any  # noqa: N815
    valueRange: Any  # noqa: N815
    valueRatio: Any  # noqa: N815
    valueSampledData: Any  # noqa: N815
    valueTime: Any  # noqa: N815
    valueDateTime: Any  # noqa: N815
    valuePeriod: Any  # noqa: N815
    dataAbsentReason: Any  # noqa: N815
    interpretation: Any
    note: Any
    method: Any
    referenceRange: Any  # noqa: N815
    hasMember: Any  # noqa: N815
    derivedFrom: Any  # noqa: N815
    component: Any
    # DiagnosticReport
    result: Any
    conclusion: Any
    conclusionCode: Any  # noqa: N815
    # Medication
    form: Any
    amount: Any
    ingredient: Any
    # MedicationStatement (read as an order: fhir_mappers.medications), and the STU3-era order members
    intent: Any
    medicationCodeableConcept: Any  # noqa: N815
    medicationReference: Any  # noqa: N815
    medication: Any
    dosage: Any
    dosageInstruction: Any  # noqa: N815
    dateAsserted: Any  # noqa: N815
    authoredOn: Any  # noqa: N815
    dateWritten: Any  # noqa: N815
    reasonCode: Any  # noqa: N815
    priorPrescription: Any  # noqa: N815
    # OperationOutcome (a search's warnings: skipped by the mappers, kept as sent)
    issue: Any


class Entry(TypedDict, total=False):
    """A Bundle entry (its members in FHIR's order)."""

    fullUrl: Any  # noqa: N815
    resource: Resource
    search: Any


class Value(Resource, total=False):
    """A results key's value: a Bundle (``entry`` typed), or a single resource sent in its place."""

    type: Any
    total: Any
    link: Any
    entry: list[Entry]


RESOURCE_MEMBERS = frozenset(Resource.__annotations__)
_DECODER = msgspec.json.Decoder(Value | None)


def decode_results(raw: bytes) -> Any:
    """The value of a results key with each resource cut to ``RESOURCE_MEMBERS``. Raises ``msgspec.DecodeError``
    (``msgspec.ValidationError``: a shape this decoder does not take; the caller then parses the value whole)."""
    return _DECODER.decode(raw)
