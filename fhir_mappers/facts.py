"""Small typed facts that the rules read.

Mappers (this package) turn FHIR R4 JSON into these; rules never see FHIR.
Every fact keeps the id of the resource it came from (``source_ref``) so a
card can point at it, and the date it refers to, so a rule can judge age.
Nothing here says whether a value is good or bad: that is the rules' job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from datetime import date, datetime
from typing import Literal

Gene = Literal["TPMT", "NUDT15"]
GeneResultKind = Literal["diplotype", "phenotype", "unreadable"]  # see GeneResult


class DataGap(msgspec.Struct, frozen=True):
    """Something that was needed but could not be read or fetched.

    ``what`` is the clinician-facing name of the data ("TPMT / NUDT15 results",
    "body weight"); ``why`` says what went wrong ("the EHR's FHIR server did
    not answer in time", "dose unit 'puff' is not a mass unit").
    """

    what: str
    why: str
    key: str = ""  # prefetch key or fact name, for grouping
    outcome: str = ""  # a failed FHIR query's category (outbound.fhir_client.FhirOutcome): the catalogue words it
    # a record cut short at the per-key cap (rule record-truncated): how many entries it held, how many were read
    truncated_from: int | None = None
    truncated_to: int | None = None
    # a result that could not be used: its value and unit as sent ("<15", "38 10³/uL"), for the card's summary
    sent: str = ""
    # a number without a unit that was still read as an upper bound (ResultText.upper_bound): "read only as at most"
    bound_only: bool = False
    # set-aside data (another patient's, not confirmed as this patient's): the prefetch key it came under ("pgx"),
    # so that a rule that finds no result of its kind can say that some were set aside
    group: str = ""


class DailyDose(msgspec.Struct, frozen=True):
    """A daily amount in mg. ``low_mg`` == ``high_mg`` unless a dose range was ordered."""

    low_mg: float
    high_mg: float
    text: str = ""  # how the order said it, e.g. "50 mg twice daily"
    form: str = ""  # "suspension" when every dose was written in mL, "tablet" in tablets/units, else ""

    @property
    def mg(self) -> float:
        return self.high_mg


class PriorTherapy(msgspec.Struct, frozen=True):
    """Evidence that an order continues earlier therapy with the same drug (a renewal, not a start):
    priorPrescription, basedOn, earlier orders, dispenses, medication statements. ``since`` is the
    earliest date that history shows; None when it shows earlier therapy without a date."""

    evidence: str  # e.g. "renews MedicationRequest/aza-2019 (priorPrescription); dispensed 2026-10-01"
    since: date | None = None
    # the part of ``evidence`` that earlier records of the same drug give (orders, dispenses, statements), not the
    # order's own priorPrescription / basedOn: the rules decide whether a link to an order on record (stopped before,
    # or of another drug) shows therapy of this drug (round-19, rules.evaluate.without_replaced)
    history: str = ""
    # round-20 M2: when every record in ``history`` is a completed order whose end is given (validityPeriod.end, a
    # dosage's boundsPeriod.end, else its expected supply end), the latest of those ends; None otherwise (an active
    # or held order, a dispense, a statement, or a completed order with no end given). As read; the rules decide
    # whether therapy that ended then is taken now.
    history_end: date | None = None


class MedicationFact(msgspec.Struct, frozen=True):
    """One medication order (draft or on record), reduced to what rules read."""

    ref: str  # "MedicationRequest/123" or "" when the order has no id
    ingredients: frozenset[str]  # lower-case ingredient names, e.g. {"azathioprine"}
    display: str
    status: str  # FHIR status as given ("draft", "active", ...)
    is_draft: bool  # part of this hook's orders
    selected: bool = True  # order-select: among the orders the clinician selected
    authored_on: date | None = None
    daily_dose: DailyDose | None = None
    dose_problem: str = ""  # why the daily dose could not be computed, if it could not
    vaccine_codes: frozenset[str] = frozenset()  # CVX codes (immunization orders)
    reason_codes: frozenset[str] = frozenset()  # "system|code" of reasonCode
    schedule_problem: str = ""  # a schedule that is wrong for the drug ("once weekly"), reported, not averaged
    prior_therapy: PriorTherapy | None = None  # evidence the order continues earlier therapy (renewal)
    dose_per_kg: DailyDose | None = None  # an order in mg/kg: mg/kg/day (daily_dose then uses the body weight)
    dose_per_m2: DailyDose | None = None  # an order in mg/m2: mg/m2/day (rules.evaluate.per_m2_doses converts it)
    resource: dict | None = None
    ended_on: date | None = None  # stopped/completed orders: the end date, else authoredOn (it ended after that)
    replaces: frozenset[str] = frozenset()  # "MedicationRequest/id" this order renews (priorPrescription, basedOn)
    # the order says how long it runs (a dosage's timing bounds or count, the dispense validity end or expected supply
    # duration): a course, not an open-ended order (round-8 m5, thioguanine in leukaemia)
    bounded: bool = False
    # round-9 M2: the daily dose of the same drug the record shows the patient on before this (draft) order: the
    # order it replaces (priorPrescription, basedOn), else an active order or statement of the drug, else the latest
    # ended (stopped, completed) order of the drug dated on or before this one. As read; the rules decide its use.
    established_dose: DailyDose | None = None
    established_ref: str = ""
    established_status: str = ""  # that order's status as sent ("active", "stopped", ...)
    established_on: date | None = None  # that order's date (authoredOn, a statement's effective date)
    # round-17 H3/M8: the ordered product's strength as named or coded (mg per tablet/unit, mg per mL of a liquid);
    # None when not known. A dose suggested for this order is built from it (rules.doseplan)
    unit_mg: float | None = None
    ml_mg: float | None = None
    # round-19 H4: a MedicationStatement's basedOn / derivedFrom naming a MedicationRequest ("MedicationRequest/id"):
    # the order whose taking the statement records, as sent. Empty for orders and for statements naming none.
    records: frozenset[str] = frozenset()
    # round-19 H3: the order's statusReason as sent (its text, else a coding's display, else its code; a
    # MedicationStatement's first one), "" when none. Read only; the rules decide what a hold means.
    status_reason: str = ""


class Measurement(msgspec.Struct, frozen=True):
    """A numeric observation in a canonical unit (``unit`` is that unit)."""

    analyte: str  # canonical name from fhir_mappers/codes.toml, e.g. "lymphocytes"
    value: float
    unit: str
    when: datetime | None
    source_ref: str = ""
    ref_low: float | None = None  # laboratory reference range, canonical unit
    ref_high: float | None = None
    interpretation: str = ""  # v3 ObservationInterpretation code (L, LL, H, ...), if given
    preliminary: bool = False  # Observation.status "preliminary": used, and every card built on it says so
    unit_text: str = ""  # the unit as the laboratory wrote it (``unit`` is the canonical one; "" = not convertible)
    comparator: str = ""  # "<", "<=", ">", ">=" when the value was a limit ("< 1.0")
    interpretation_text: str = ""  # the laboratory's interpretation in words ("Deficient"), lower case
    ref_text: str = ""  # the laboratory's reference range as text, when it gave one
    # every interpretation code the laboratory sent, as sent (v2-0078: "L", "LL", "H", "HH", "A", "AA", ...);
    # ``interpretation`` is the first. The rules decide what a flag means (rules.common.lab_flag).
    flags: tuple[str, ...] = ()
    # the number as the laboratory sent it, in ``unit_text`` (4.0 for "4.0 mg/dL" bilirubin, whose ``value`` is
    # 68.4 umol/L): cards quote a result as sent (round-5 H1); None for a value no laboratory sent
    sent_value: float | None = None


class GeneResult(msgspec.Struct, frozen=True):
    """A TPMT or NUDT15 result as the record states it.

    ``kind`` is "diplotype" (``value`` is the star-allele text, e.g. "*1/*3A"),
    "phenotype" (``value`` is a CPIC phenotype term, e.g. "Intermediate Metabolizer"),
    or "unreadable" (``value`` is the raw text that could not be read).
    """

    gene: Gene
    kind: GeneResultKind
    value: str
    when: datetime | None
    source_ref: str = ""
    preliminary: bool = False  # from a preliminary Observation: cards built on it say so
    note: str = ""  # how the value was read, e.g. "ambiguous call", "read from HGVS c.460G>A, c.719A>G"
    # round-20 M3: a phenotype read from a LOINC answer code whose own display / text words name another phenotype
    # (LA10315-2 "Ultrarapid" displayed "Intermediate metabolizer"): what the words say (a CPIC-style term) and the
    # words as sent; the mapper reports both, the rules decide (rules.pgx: never read as normal)
    display_value: str = ""
    display_text: str = ""


class ResultText(msgspec.Struct, frozen=True):
    """A result recognised by its code whose value is words, not a number
    ("Deficient", "Low activity"), or a number that could not be used. Rules
    decide what the words mean; ``why`` says why no number was used."""

    analyte: str
    text: str  # the value / interpretation as written, lower case
    interpretation: str  # v3 ObservationInterpretation code, if given
    why: str
    when: datetime | None
    source_ref: str = ""
    preliminary: bool = False
    value_text: str = ""  # the value and unit exactly as sent ("<10", "1.8 furlongs"), for a card to quote
    unit_text: str = ""  # the unit as sent, when there was one
    flags: tuple[str, ...] = ()  # every interpretation code the laboratory sent, as sent
    value_codes: frozenset[str] = frozenset()  # "system|code" of a coded value (valueCodeableConcept), as sent
    # a number sent with no unit ("<0.5", "0,8"), read in the analyte's canonical unit at the largest factor of any
    # unit the analyte is reported in: the true value is at most this, whichever unit the laboratory meant (None
    # when it cannot bound it: a unit was sent, no number, or a ">" limit). Rules may use it to conclude "low",
    # never "normal" (round-7 M2).
    upper_bound: float | None = None


class AbsentResult(msgspec.Struct, frozen=True):
    """A result recognised by its code that carries no result: sent with ``dataAbsentReason`` (no value), or with
    status ``cancelled`` (round-8 H2). As sent: whether it matters is the rules' decision (a cancelled or absent
    blood count is never a done count; the rules name it as a data gap)."""

    analyte: str
    when: datetime | None
    source_ref: str = ""
    status: str = ""  # Observation.status as sent ("final", "cancelled", ...)
    reason: str = ""  # dataAbsentReason as sent: its codes, else its text ("error", "not-performed"); "" when none
    value_text: str = ""  # a value sent all the same (a cancelled result carrying a number), as sent; "" when none


class CodedObservation(msgspec.Struct, frozen=True):
    """A status observation with a coded or boolean value (pregnancy status, breastfeeding status)."""

    loinc: str
    values: frozenset[str]  # "system|code" of valueCodeableConcept
    text: str  # value text / display, lower case
    flag: bool | None  # valueBoolean, when given
    when: datetime | None
    source_ref: str = ""
    preliminary: bool = False


class AllergyFact(msgspec.Struct, frozen=True):
    """An AllergyIntolerance that names a drug this service knows, as written (fhir_mappers.allergies).
    Whether it contraindicates an order is the rules' decision."""

    ingredients: frozenset[str]  # drugs named (by code, name, or a class word: every drug of the class)
    display: str  # the code's text / display, as written
    source_ref: str = ""
    classes: frozenset[str] = frozenset()  # class words found ("thiopurine analogues"), lower case
    matched_in: tuple[str, ...] = ()  # where the drug was named: "code", "note", "substance", "reaction"
    kind: str = ""  # AllergyIntolerance.type: "allergy", "intolerance" or "" (not given)
    criticality: str = ""  # "low", "high", "unable-to-assess" or ""
    clinical_status: str = ""  # "active", "inactive", "resolved" or "" (not given)
    verification: str = ""  # "unconfirmed", "presumed", "confirmed", "refuted", "entered-in-error" or ""
    reactions: tuple[str, ...] = ()  # manifestations and reaction descriptions, as written
    severities: tuple[str, ...] = ()  # reaction.severity values given: "mild", "moderate", "severe"
    note: str = ""  # the record's note, as written (cut at 300 characters)
    recorded: str = ""  # recordedDate (or onset), YYYY-MM-DD, when given


class ConditionFact(msgspec.Struct, frozen=True):
    codes: frozenset[str]  # "system|code" for every coding
    display: str
    source_ref: str = ""
    # round-10 H2: onsetDateTime (or onsetPeriod.start), else recordedDate, as given; None when neither is a date
    onset: date | None = None
    # round-11 M1: "Condition", or "Procedure" for a Procedure read like a Condition (``procedures``: onset is
    # when it was performed)
    resource_type: str = "Condition"
    # round-19 H2 (a Procedure): its status as sent ("completed", "stopped", "unknown"; "" when absent or not a
    # code), and the code's text and every coding display joined (``fhirjson.all_text``), for words
    status: str = ""
    words: str = ""


class PatientFact(msgspec.Struct, frozen=True):
    birth_date: date | None
    sex: str  # administrative gender as given, "" when absent


@dataclass(slots=True)
class ClinicalFacts:
    """Everything the rules may read for one hook call."""

    today: date
    patient: PatientFact | None = None
    orders: list[MedicationFact] = field(default_factory=list)  # this hook's draft orders
    active_medications: list[MedicationFact] = field(default_factory=list)
    weights: list[Measurement] = field(default_factory=list)  # kg, newest first
    heights: list[Measurement] = field(default_factory=list)  # cm, newest first
    immunizations: list[MedicationFact] = field(default_factory=list)  # given vaccines (authored_on = date given)
    past_medications: list[MedicationFact] = field(default_factory=list)  # stopped / completed orders
    labs: dict[str, list[Measurement]] = field(default_factory=dict)  # analyte -> newest first
    # results recognised by code whose value is words or unusable (TPMT activity "Deficient"), newest first
    result_texts: dict[str, list[ResultText]] = field(default_factory=dict)
    # results recognised by code that carry no result (dataAbsentReason, status cancelled), newest first (round-8 H2)
    absent_results: dict[str, list[AbsentResult]] = field(default_factory=dict)
    gene_results: list[GeneResult] = field(default_factory=list)
    conditions: list[ConditionFact] = field(default_factory=list)
    # round-11 M1: Procedures, in any data group, read like Conditions (codes, text, the date performed); which of
    # them matter (a kidney transplant) is the rules' decision. Round 19 H2: every Procedure but one that did not
    # happen (status preparation, not-done, entered-in-error), with its status (a transplant counts when completed
    # or in-progress; a transfusion stopped part way, or of unknown status, may have given donor cells)
    procedures: list[ConditionFact] = field(default_factory=list)
    status_observations: list[CodedObservation] = field(default_factory=list)
    allergies: list[AllergyFact] = field(default_factory=list)
    gaps: list[DataGap] = field(default_factory=list)
    # data groups we could not look at at all (prefetch key absent and not fetchable / failed)
    unavailable: set[str] = field(default_factory=set)
    # round-15 H1: the active orders a selected draft renews or replaces (its priorPrescription / basedOn names them),
    # which rules.evaluate.without_replaced takes out of active_medications: kept here so that a rule can still tell
    # a renewal of a drug the patient takes (continuing therapy) from a new start of it
    renewed_medications: list[MedicationFact] = field(default_factory=list)
