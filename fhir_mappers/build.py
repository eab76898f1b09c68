"""The mapping stage of one hook call: the draft orders and the gathered data groups (one value per prefetch
key: a resource, a Bundle, or ``None`` when the group could not be obtained) -> ``ClinicalFacts``.
Mappers are lenient about shape and strict about units; they never decide what a value means clinically.
"""
from __future__ import annotations

import heapq
import msgspec
from datetime import date, timedelta
from typing import Any, Container, Iterable, Iterator

from .facts import ClinicalFacts, DailyDose, DataGap, MedicationFact, PriorTherapy
from .fhirjson import concept_text, one_call, parse_date, ref_of, resource_list, resources_of
from .medications import ingredients_of, medication_concept, medication_fact
from .observations import (PRELIMINARY_STATUS, analyte_named, classified_measurements, classify, component_results,
                           gene_results, genes_of_uncoded_result, status_observations)
from .patient import allergy_facts, condition_facts, patient_fact, procedure_facts
from .subject import (SHOWN, BundlePatients, context_patient_id, foreign_host, naming_part, other_base, other_patient,
                      patient_identifiers, patient_verdict, reference_base, server_base)


class Prefetch:
    """Every gathered value of one call read once: its resources in order (as ``resources_of`` reads them) and
    grouped by resourceType, so that each mapper is handed its resources without walking the Bundles again."""

    __slots__ = ("in_order", "by_type", "set_aside", "unconfirmed", "identifiers", "full_urls")

    def __init__(self, data: dict[str, Any], patient_id: str | None = None, bases: Container[str] | None = None) -> None:
        self.in_order: dict[str, list[dict]] = {}
        self.by_type: dict[str, dict[str, list[dict]]] = {}
        # resources that name another patient than ``patient_id`` (round-8 H1), per key: (resource, reference as
        # sent); they are in no list a mapper reads
        self.set_aside: dict[str, list[tuple[dict, str]]] = {}
        # resources whose subject names a patient in a form that cannot be confirmed to be ``patient_id`` (round-10
        # H1: display only, an identifier the Patient cannot be compared with, an unresolved urn:uuid), per key
        self.unconfirmed: dict[str, list[tuple[dict, str]]] = {}
        # the context Patient's identifiers (system -> values; round-9 H1): from the ``patient`` key's Patient
        # resources that are this patient's (its id, or none), for identifier-only and conditional references
        self.identifiers: dict[str, frozenset[str]] = {}
        # per key, the Patient entries of its Bundle by fullUrl (round-9 H2: urn:uuid references resolve to them)
        self.full_urls: dict[str, BundlePatients] = {}
        if patient_id is not None:
            self.identifiers = patient_identifiers(
                p for p in resources_of(data.get("patient"), "Patient") if other_patient(p, patient_id) is None)
        # one walk of each value's resources: each is judged (whose data it is) and filed under its type at once
        for key, value in data.items():
            items = resource_list(value)
            groups: dict[str, list[dict]] = {}
            if patient_id is None:
                for r in items:
                    rtype = r.get("resourceType")
                    if isinstance(rtype, str):  # a list or object here is no resource type any mapper reads
                        group = groups.get(rtype)
                        if group is None:
                            groups[rtype] = [r]
                        else:
                            group.append(r)
            else:
                kept = []
                full_urls = self.full_urls[key] = BundlePatients(value)
                identifiers = self.identifiers
                # a Patient is compared only where it is read (the ``patient`` key), not as a search's _include
                include_patients = key != "patient"
                for r in items:
                    rtype = r.get("resourceType")
                    verdict = None if include_patients and rtype == "Patient" else \
                        patient_verdict(r, patient_id, identifiers, full_urls, bases)  # bases: round-11 H2
                    if verdict is not None:
                        (self.set_aside if verdict[0] else self.unconfirmed).setdefault(key, []).append(
                            (r, verdict[1]))
                        continue
                    kept.append(r)
                    if isinstance(rtype, str):
                        group = groups.get(rtype)
                        if group is None:
                            groups[rtype] = [r]
                        else:
                            group.append(r)
                items = kept
            self.in_order[key] = items
            self.by_type[key] = groups

    def of(self, key: str, resource_type: str) -> list[dict]:
        """The resources of ``resource_type`` under ``key``, in order (``resources_of(data[key], type)``)."""
        groups = self.by_type.get(key)
        return groups.get(resource_type, []) if groups else []

    def everywhere(self, resource_type: str) -> list[dict]:
        """The resources of ``resource_type`` under every key, key by key."""
        return [r for groups in self.by_type.values() for r in groups.get(resource_type, ())]


def _medication_index(pf: Prefetch) -> dict[str, dict]:
    index = {}
    for med in pf.everywhere("Medication"):
        if isinstance(med.get("id"), str):
            index[f"Medication/{med['id']}"] = med
            index[med["id"]] = med
    return index


def order_facts(draft_orders: Iterable[dict], medications: dict[str, dict] | None = None) -> list[MedicationFact]:
    with one_call():
        facts = []
        for resource in draft_orders:
            fact = medication_fact(resource, is_draft=True, medications=medications)
            if fact is not None:
                facts.append(fact)
        return facts


_ACTIVE = {"active", "on-hold"}
_ENDED = ("stopped", "completed")  # a tuple: a status sent as an object is compared, never hashed


_SUPPLY_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30}


def _supply_end(mr: dict, dispense: dict, period: dict) -> date | None:
    """Round-20 M2: the end of an order's expected supply (FHIR R4 ``dispenseRequest.expectedSupplyDuration``, the
    days one dispense lasts, times the dispenses allowed: 1 + ``numberOfRepeatsAllowed``) counted from its validity
    start, else its authoredOn; None when the order gives no such duration (or one in a unit not of days)."""
    supply = dispense.get("expectedSupplyDuration")
    if not isinstance(supply, dict):
        return None
    value, unit = supply.get("value"), str(supply.get("code") or supply.get("unit") or "").strip().lower()
    start = parse_date(period.get("start")) or parse_date(mr.get("authoredOn"))
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or unit not in _SUPPLY_DAYS \
            or start is None:
        return None
    repeats = dispense.get("numberOfRepeatsAllowed")
    fills = 1 + (repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and 0 <= repeats < 100 else 0)
    try:
        return start + timedelta(days=min(float(value) * _SUPPLY_DAYS[unit] * fills, 36500))
    except OverflowError:
        return None


def _end_date(mr: dict) -> date | None:
    """When a stopped or completed order ended: its validity or dosage bounds end, if given; else (round-20 M2) the
    end of its expected supply (``_supply_end``)."""
    dispense = x if isinstance(x := mr.get("dispenseRequest"), dict) else {}
    period = x if isinstance(x := dispense.get("validityPeriod"), dict) else {}
    ends = [parse_date(period.get("end"))]
    for d in mr.get("dosageInstruction") or []:
        repeat = ((d or {}).get("timing") or {}).get("repeat") if isinstance(d, dict) else None
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict):
            ends.append(parse_date(bounds.get("end")))
    return max(filter(None, ends), default=None) or _supply_end(mr, dispense, period)


def build_facts(
    draft_orders: list[dict],
    data: dict[str, Any],
    *,
    today: date,
    gaps: list[DataGap] | None = None,
    orders: list[MedicationFact] | None = None,
    patient_id: str | None = None,
    fhir_server: str | None = None,
) -> ClinicalFacts:
    """``orders``: the draft orders already mapped (the hooks map them first to
    decide whether the call concerns thiopurines); mapped here when omitted.

    ``patient_id``: ``context.patientId``. A gathered resource whose subject (or patient) names another Patient,
    and a Patient resource with another id, is set aside, never read as this patient's data, and named by a gap
    (key ``other_patient``); a draft order that names another patient is still read (it is the order being
    signed) and named by a gap too (``fhir_mappers.subject``: what can be compared). A gathered resource whose
    subject names a patient in a form that cannot be confirmed to be this one is set aside too, with its own gap
    (key ``unconfirmed_patient``, round-10 H1). None: nothing is compared.

    ``fhir_server``: the request's ``fhirServer`` (round-11 H2). An absolute reference naming this patient's id is
    this patient's only when its base is that server's or the base of a ``fullUrl`` of the context Patient in a
    Bundle of the request; else it cannot be confirmed (``_Bases``). Without a fhirServer only such a fullUrl can
    confirm an absolute reference.

    Each prefetch value is walked once (``Prefetch``) and each resource is handed to its one mapper; the
    look-ups the mappers memoise (dates, units, drug and result names) live for this call only."""
    with one_call():
        return _build_facts(draft_orders, data, today, list(gaps or []), orders, context_patient_id(patient_id),
                            fhir_server)


class _Bases:
    """The server bases an absolute reference to this patient may have (round-11 H2): the request's fhirServer and
    the base of the ``fullUrl`` of a Bundle entry that is the context Patient: a Patient with the context id that is
    the ``patient`` data's resource itself (equal), or shares an identifier (system and value) with it. The id alone
    does not make it this patient's: another server's Patient may carry the same local id. The entries are walked
    only when a reference's base is not the fhirServer's (most calls send relative references and never ask)."""

    __slots__ = ("_server", "_data", "_patient_id", "_more")

    def __init__(self, data: dict[str, Any], patient_id: str | None, fhir_server: str | None) -> None:
        self._server = server_base(fhir_server)
        self._data, self._patient_id = data, patient_id
        self._more: frozenset[str] | None = None

    def __contains__(self, base: object) -> bool:
        if base is None:
            return False
        if base == self._server:
            return True
        if self._more is None:
            self._more = self._full_url_bases()
        return base in self._more

    def _full_url_bases(self) -> frozenset[str]:
        pid = self._patient_id
        context = next(iter(resources_of(self._data.get("patient"), "Patient")), None) if pid else None
        if not isinstance(context, dict) or context.get("id") != pid:
            return frozenset()
        own = {(sy, v) for sy, vs in patient_identifiers([context]).items() for v in vs}
        out = set()
        for value in self._data.values():
            if not isinstance(value, dict) or value.get("resourceType") != "Bundle" \
                    or not isinstance(value.get("entry"), list):
                continue
            for e in value["entry"]:
                r = e.get("resource") if isinstance(e, dict) else None
                if not isinstance(r, dict) or r.get("resourceType") != "Patient" or r.get("id") != pid:
                    continue
                if r == context or own & {(sy, v) for sy, vs in patient_identifiers([r]).items() for v in vs}:
                    out.add(reference_base(e.get("fullUrl")))
        return frozenset(b for b in out if b is not None)


def _build_facts(draft_orders: list[dict], data: dict[str, Any], today: date, gaps: list[DataGap],
                 orders: list[MedicationFact] | None, patient_id: str | None = None,
                 fhir_server: str | None = None) -> ClinicalFacts:
    unavailable = {key for key, value in data.items() if value is None}
    bases = _Bases(data, patient_id, fhir_server)
    pf = Prefetch(data, patient_id, bases)
    set_aside = dict(pf.set_aside)
    unconfirmed = dict(pf.unconfirmed)
    meds_index = _medication_index(pf)
    if orders is None:
        orders = order_facts(draft_orders, meds_index)
    draft_refs = {o.ref for o in orders if o.ref}

    active = []
    for mr in pf.of("medications", "MedicationRequest"):
        status = mr.get("status")
        if not isinstance(status, str) or status not in _ACTIVE or mr.get("intent") in ("proposal", "plan"):
            continue
        fact = medication_fact(mr, is_draft=False, medications=meds_index)
        if fact is not None and fact.ref not in draft_refs:
            active.append(fact)

    mapped: dict[int, frozenset[str]] = {}  # ingredients of the resources mapped to facts (by ``id`` of the resource)
    active += _statement_facts(pf, meds_index, draft_refs, active, orders, mapped)

    past = []
    for mr in pf.of("past_medications", "MedicationRequest"):
        fact = medication_fact(mr, is_draft=False, medications=meds_index) if mr.get("status") in _ENDED else None
        if fact is not None and fact.ref not in draft_refs:
            past.append(msgspec.structs.replace(fact, ended_on=_end_date(mr) or fact.authored_on))
    immunizations = []
    for imm in pf.of("immunizations", "Immunization"):
        fact = medication_fact(imm, is_draft=False) if imm.get("status") in (None, "completed") else None
        if fact is not None and fact.authored_on is not None:
            immunizations.append(fact)

    # renewal evidence: earlier orders, dispenses and statements of the same drug (both medication keys)
    mapped.update((id(f.resource), f.ingredients) for f in (*active, *past) if f.resource is not None)
    history_ends: list[date | None] = []
    history = _history([pf.in_order.get("medications", []), pf.in_order.get("past_medications", [])],
                       meds_index, draft_refs, mapped, history_ends)
    if history:
        index = _HistoryIndex(history, history_ends)
        orders = [_with_history(o, index) for o in orders]
        active = [_with_history(m, index) for m in active]
    observations = [o for key in ("weight", "height", "labs", "lab_results", "pgx", "pregnancy")
                    for o in pf.of(key, "Observation")]
    # DiagnosticReports may carry their results as contained Observations
    for key in ("pgx", "labs", "lab_results"):
        for report in pf.of(key, "DiagnosticReport"):
            for obs in report_observations(report):
                verdict = patient_verdict(obs, patient_id, pf.identifiers, pf.full_urls.get(key), bases)
                if verdict is None:
                    observations.append(obs)
                else:
                    (set_aside if verdict[0] else unconfirmed).setdefault(key, []).append((obs, verdict[1]))
    if patient_id is not None:
        gaps += _other_patient_gaps(draft_orders, set_aside, patient_id, pf.identifiers, bases)
        gaps += _unconfirmed_gaps(unconfirmed)
    numeric, genomic, status = _classify(observations)
    texts: dict = {}
    absent: dict = {}
    by_analyte = classified_measurements(numeric, gaps, texts, absent)
    weights = _lowest_first_of_same_time(by_analyte.pop("weight", []), gaps)
    heights = by_analyte.pop("height", [])
    orders = [_with_weight(o, weights) for o in orders]
    active = [_with_weight(o, weights) for o in active]
    if any(o.is_draft and o.ingredients for o in orders):
        ended = [_with_weight(f, weights) for f in _ended_orders(pf, meds_index, draft_refs, orders)]
        orders = [_with_established(o, active, [*ended, *(_with_weight(f, weights) for f in past)]) for o in orders]
        # round-18 H1: a stopped / completed order under ``medications`` that a draft renews (priorPrescription,
        # basedOn) is kept with the ended orders, as one under ``past_medications`` is: the rules decide whether the
        # renewal continues it (rules.evaluate.without_replaced)
        named = {r for o in orders if o.is_draft for r in o.replaces}
        known = {f.ref for f in past if f.ref}
        past += [f for f in ended if f.ref and f.ref not in known and _short_ref(f.ref) in named]
    patient = next(iter(pf.of("patient", "Patient")), None)  # a Patient with another id is set aside (Prefetch)

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
        result_texts=texts,
        absent_results=absent,
        gene_results=gene_results(genomic),
        conditions=condition_facts(pf.of("conditions", "Condition")),
        procedures=procedure_facts(pf.everywhere("Procedure")),  # round-11 M1: in any group (no key of its own)
        status_observations=status_observations(status),
        allergies=allergy_facts(pf.of("allergies", "AllergyIntolerance")),
        gaps=gaps,
        unavailable=unavailable,
    )


# what each data group holds, in a clinician's words, for the gap that names data of another patient
_GROUP_WORDS = {"patient": "demographics (age, sex)", "medications": "medications", "past_medications": "stopped medications",
                "pgx": "TPMT / NUDT15 results", "labs": "blood counts and liver tests", "lab_results": "laboratory results",
                "weight": "body weight", "height": "height", "pregnancy": "pregnancy and breastfeeding status",
                "conditions": "conditions", "allergies": "allergies", "immunizations": "immunizations"}
_NOUNS = {"Observation": ("result", "results"), "DiagnosticReport": ("report", "reports"),
          "MedicationRequest": ("order", "orders"), "MedicationStatement": ("medication statement", "medication statements"),
          "MedicationDispense": ("dispense", "dispenses"), "Condition": ("condition", "conditions"),
          "AllergyIntolerance": ("allergy record", "allergy records"), "Immunization": ("immunization", "immunizations"),
          "Patient": ("patient record", "patient records"), "Procedure": ("procedure", "procedures")}


def _set_aside_groups(groups: dict[str, list[tuple[dict, str]]], named: bool = False
                      ) -> Iterator[tuple[str, set[str], int, tuple[str, str], list[str], str]]:
    """Per data group of set-aside resources (the same resource under two keys is named once, under the first):
    (key, resource types, how many, the nouns for one and many, the references as sent in order, the first two
    quoted and "and N more")."""
    seen: set = set()
    for key, items in groups.items():
        fresh = []
        for r, ref in items:
            rid = ref_of(r) or id(r)
            if rid not in seen:
                seen.add(rid)
                fresh.append((r, ref))
        if not fresh:
            continue
        types = {str(r.get("resourceType")) for r, _ in fresh}
        nouns = _NOUNS.get(next(iter(types)), ("record", "records")) if len(types) == 1 else ("record", "records")
        refs = list(dict.fromkeys(ref for _, ref in fresh))
        quoted = ", ".join(refs[:2]) + (f" and {len(refs) - 2} more" if len(refs) > 2 else "")
        yield key, types, len(fresh), nouns, refs, quoted + (_named_items(fresh) if named else "")


# the member that names what a set-aside resource is (round-12 review of session 11: "1 order could not be
# confirmed" did not say it was an allopurinol order, the one that would have changed the dose)
_NAMING_MEMBER = {"Observation": "code", "Immunization": "vaccineCode", "Condition": "code",
                  "AllergyIntolerance": "code", "Procedure": "code"}


def _value_as_sent(r: dict) -> str:
    """An Observation's value as sent, in words: valueString, a coded value's text, or a quantity's number and unit
    ("" when none is readable as text)."""
    v = r.get("valueString")
    if isinstance(v, str):
        return v.strip()
    if r.get("valueCodeableConcept") is not None:
        t = concept_text(r["valueCodeableConcept"])
        return t.strip() if isinstance(t, str) else ""
    q = r.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), (int, float)) and not isinstance(q.get("value"), bool):
        unit = q.get("unit") if isinstance(q.get("unit"), str) else q.get("code") if isinstance(q.get("code"), str) else ""
        return f"{q['value']:g} {unit}".strip()
    return ""


def _named_items(fresh: list[tuple[dict, str]]) -> str:
    """"; what they are: 'allopurinol 300 MG Oral Tablet'" (at most two names, as sent, each cut to ``SHOWN``), or
    "" when none is named: the prescriber sees which drug, vaccine or result was not used."""
    names: list[str] = []
    for r, _ in fresh:
        rtype = r.get("resourceType")
        if rtype in ("MedicationRequest", "MedicationStatement", "MedicationDispense", "MedicationAdministration"):
            concept = medication_concept(r, {})
        else:
            member = _NAMING_MEMBER.get(rtype) if isinstance(rtype, str) else None
            concept = r.get(member) if member else None
        text = concept_text(concept) if concept is not None else ""
        if rtype == "Observation" and isinstance(text, str):
            # round-13 M3: a result that may be this patient's (not confirmed) is named with its value as sent
            # ("Genotype display name: TPMT *3A/*3A"), so a set-aside TPMT result is not taken for no result at all
            value = _value_as_sent(r)
            text = f"{text.strip()}: {value}" if text.strip() and value else (text or value)
        if isinstance(text, str) and text.strip():
            t = text.strip()
            names.append("'" + (t if len(t) <= SHOWN else t[:SHOWN - 1] + "…") + "'")
    names = list(dict.fromkeys(names))
    if not names:
        return ""
    more = f" and {len(names) - 2} more" if len(names) > 2 else ""
    return f"; what {'it is' if len(fresh) == 1 else 'they are'}: {', '.join(names[:2])}{more}"


def _other_patient_gaps(draft_orders: list[dict], set_aside: dict[str, list[tuple[dict, str]]],
                        patient_id: str, identifiers: dict[str, frozenset[str]] | None = None,
                        bases: Container[str] = frozenset()) -> list[DataGap]:
    """One gap per data group that held resources about another patient (round-8 H1), quoting the references as
    sent; and one for draft orders that name another patient (still read: they are the orders being signed; key
    ``other_patient_order``, round-9 M4). ``sent``: the part of the first reference that names the patient
    (``naming_part``: "Patient/pt-999", "MRN-9999"), which the summary quotes (round-9 m1)."""
    out = []
    for key, types, n, (one, many), refs, quoted in _set_aside_groups(set_aside):
        what = _GROUP_WORDS.get(key, f"data under '{key[:40]}'")
        if types == {"Patient"}:
            why = (f"the patient record sent ({quoted}) is not this patient's (Patient/{patient_id[:40]}) "
                   "and was not used: age and sex are unknown")
        else:
            why = (f"{n} {one if n == 1 else many} {'names' if n == 1 else 'name'} another patient ({quoted}) "
                   f"and {'was' if n == 1 else 'were'} not used")
        out.append(DataGap(what, why, key="other_patient", sent=naming_part(refs[0]), group=key))
    draft_refs = [other_patient(r, patient_id, identifiers) for r in draft_orders]
    refs = list(dict.fromkeys(ref for ref in draft_refs if ref is not None))
    if refs:
        out.append(DataGap("the order being signed", f"it names another patient ({', '.join(refs[:2])}), not "
                           f"Patient/{patient_id[:40]}: it was checked as written; check that the order is for "
                           "this patient", key="other_patient_order", sent=naming_part(refs[0])))
    # round-11 H2: an order naming this patient's id on another FHIR server: still checked, and named
    foreign = list(dict.fromkeys(ref for r in draft_orders if (ref := other_base(r, patient_id, bases)) is not None))
    if foreign and not refs:
        out.append(DataGap("the order being signed", f"it names a patient on another FHIR server ({', '.join(foreign[:2])}), "
                           f"which could not be confirmed to be this patient (Patient/{patient_id[:40]}): it was checked "
                           "as written; check that the order is for this patient", key="other_patient_order",
                           sent=foreign_host(foreign[0]) or naming_part(foreign[0])))
    return out


def _unconfirmed_gaps(unconfirmed: dict[str, list[tuple[dict, str]]]) -> list[DataGap]:
    """One gap per data group that held resources whose subject names a patient in a form that cannot be confirmed
    to be this one (round-10 H1; key ``unconfirmed_patient``), quoting the references as sent: they were not used,
    so they neither clear a check nor make a finding."""
    out = []
    # named (what each is, with its value): they may be this patient's; another patient's data is never described
    # on this patient's card beyond the reference that names that patient (privacy)
    for key, _types, n, (one, many), refs, quoted in _set_aside_groups(unconfirmed, named=True):
        why = (f"could not confirm that {n} {one if n == 1 else many} {'is' if n == 1 else 'are'} this patient's "
               f"(subject sent as {quoted}); {'it was' if n == 1 else 'they were'} not used")
        out.append(DataGap(_GROUP_WORDS.get(key, f"data under '{key[:40]}'"), why, key="unconfirmed_patient",
                           sent=foreign_host(refs[0]) or naming_part(refs[0]), group=key))
    return out


# MedicationStatement.status (R4) that means the patient takes, or is about to take, the drug
_STATEMENT_CURRENT = {"active", "intended", "on-hold"}


def _statement_facts(pf: Prefetch, meds_index: dict, draft_refs: set[str], active: list[MedicationFact],
                     orders: list[MedicationFact], mapped: dict[int, frozenset[str]] | None = None) -> list[MedicationFact]:
    """Current MedicationStatements (status active, intended or on-hold) in any prefetched group, as active
    medication for the checks that look at what the patient takes (interactions, duplicate thiopurines).
    A statement of a drug that an active MedicationRequest or a draft order already carries adds nothing and is
    left out (it is the same therapy, already read as renewal history). ``mapped``: filled with the ingredients
    of every statement read (by ``id`` of the resource), so that the history does not read them again.

    Round-19 H4: an active order that a draft of another drug names as the order it replaces (priorPrescription /
    basedOn, no ingredient shared: a switch) is being ended: it does not stand for a statement of its drug, which is
    kept (therapy that may be prescribed elsewhere), unless the statement records taking that order (its basedOn /
    derivedFrom names it: ``MedicationFact.records``)."""
    drafts = [o for o in orders if o.is_draft and o.replaces]
    switched = [f for f in active if f.ref and any(_short_ref(f.ref) in o.replaces and not f.ingredients & o.ingredients
                                                   for o in drafts)]
    known = {i for f in (*active, *orders) if not any(f is g for g in switched) for i in f.ingredients}
    switched_refs = {_short_ref(f.ref) for f in switched}
    out, seen = [], set()
    for ms in pf.everywhere("MedicationStatement"):
        ref = ref_of(ms)
        if ms.get("status") not in _STATEMENT_CURRENT or (ref and (ref in seen or ref in draft_refs)):
            continue
        seen.add(ref)
        fact = medication_fact(ms, is_draft=False, medications=meds_index)
        if fact is not None and mapped is not None:
            mapped[id(ms)] = fact.ingredients
        if fact is not None and fact.ingredients and not fact.ingredients & known \
                and not fact.records & switched_refs:
            out.append(fact)
    return out


# a stopped order is therapy that was stopped: an order after it is a restart (a new start), not a renewal
_HISTORY_STATUS = {"completed", "on-hold", "active"}
_NOT_HISTORY = {"entered-in-error", "cancelled", "draft", "not-taken", "declined", "stopped"}


def _history(values: list[Any], meds_index: dict, draft_refs: set[str],
             mapped: dict[int, frozenset[str]] | None = None,
             ends: list[date | None] | None = None) -> list[tuple[frozenset[str], str, str, date | None]]:
    """Earlier therapy the request carries: other MedicationRequests (active, on hold,
    completed, stopped), MedicationDispenses and MedicationStatements, as
    (ingredients, ref, evidence text, date). ``mapped``: the ingredients of resources already
    mapped to facts (by ``id`` of the resource), read by the same ``medication_concept``. ``ends`` (round-20 M2),
    when given, gets one item per entry: a completed order's end as recorded (``_end_date``: validity, bounds or
    expected supply end), ``date.max`` for any other entry (therapy the record does not show ended), None for a
    completed order whose end is not given."""
    mapped = mapped or {}
    out, seen = [], set()
    for r in (r for value in values for r in resources_of(value)):
        rtype, status = r.get("resourceType"), r.get("status")
        ref = ref_of(r)
        if rtype not in ("MedicationRequest", "MedicationDispense", "MedicationStatement") or ref in draft_refs:
            continue
        if ref and ref in seen:
            continue
        seen.add(ref)
        if not isinstance(status, str) or status in _NOT_HISTORY:
            continue
        if rtype == "MedicationRequest" and status not in _HISTORY_STATUS:
            continue
        ingredients = mapped.get(id(r))
        if ingredients is None:
            ingredients = frozenset(ingredients_of(medication_concept(r, meds_index)))
        if not ingredients:
            continue
        period = x if isinstance(x := r.get("effectivePeriod"), dict) else {}
        when = next((v for v in (r.get("whenHandedOver"), r.get("whenPrepared"), r.get("authoredOn"), period.get("start"),
                                 r.get("effectiveDateTime"), r.get("dateAsserted")) if isinstance(v, str)), "")
        kind = {"MedicationRequest": f"earlier order ({status})", "MedicationDispense": "dispensed",
                "MedicationStatement": f"medication statement ({status})"}[rtype]
        out.append((ingredients, ref, " ".join(filter(None, [kind, ref, when[:10]])), parse_date(when) if when else None))
        if ends is not None:
            ends.append(_end_date(r) if rtype == "MedicationRequest" and status == "completed" else date.max)
    return out


class _HistoryIndex:
    """The history of a call indexed by ingredient, so that pairing every order with the earlier
    orders of its drug costs about the same per order however long the history is (a call with
    thousands of active and stopped orders once took seconds: each order scanned all of them).

    Per ingredient: the entries in history order (for the evidence text, which names the first
    entries that qualify), the dated ones sorted by date (for the earliest date) and the undated
    ones. An entry qualifies for an order when it is not the order itself and is not dated after
    the order."""

    SCAN = 64  # entries read per order for the evidence text (the first 3 that qualify are named)

    def __init__(self, history: list[tuple[frozenset[str], str, str, date | None]],
                 ends: list[date | None] | None = None) -> None:
        self.history = history
        self.in_order: dict[str, list[int]] = {}
        self.by_date: dict[str, list[int]] = {}
        self.undated: dict[str, list[int]] = {}
        # round-20 M2: per ingredient, the latest end of its entries (``_history`` ends: date.max for therapy not
        # shown ended, None for a completed order with no end given, which then stands for the whole ingredient)
        self.last_end: dict[str, date | None] = {}
        for i, (ingredients, _ref, _text, when) in enumerate(history):
            end = ends[i] if ends is not None and i < len(ends) else date.max
            for ing in ingredients:
                self.in_order.setdefault(ing, []).append(i)
                (self.by_date if when else self.undated).setdefault(ing, []).append(i)
                last = self.last_end.get(ing, date.min)
                self.last_end[ing] = None if last is None or end is None else max(last, end)
        for indices in self.by_date.values():
            indices.sort(key=lambda i: (history[i][3], i))

    def _qualifies(self, i: int, order: MedicationFact) -> bool:
        _ings, ref, _text, when = self.history[i]
        return (not ref or ref != order.ref) and not (when and order.authored_on and when > order.authored_on)

    def _first(self, indices: list[int], order: MedicationFact) -> int | None:
        """The first entry of ``indices`` (sorted by date) that qualifies. The order itself is at most one
        entry (non-empty refs are unique in the history); after it, the first other entry decides: if it is
        dated after the order, so is every later one."""
        for i in indices[:2]:
            _ings, ref, _text, when = self.history[i]
            if ref and ref == order.ref:
                continue
            return None if when and order.authored_on and when > order.authored_on else i
        return None

    def prior(self, order: MedicationFact) -> tuple[list[str], date | None, bool]:
        """(evidence texts, earliest qualifying date, any entry qualifies?) for ``order``."""
        earliest: date | None = None
        found = False
        fallback: list[int] = []
        for ing in order.ingredients:
            dated = self._first(self.by_date.get(ing, []), order)
            if dated is not None:
                found = True
                fallback.append(dated)
                when = self.history[dated][3]
                earliest = when if earliest is None or (when and when < earliest) else earliest
            undated = next((i for i in self.undated.get(ing, [])[:2] if self._qualifies(i, order)), None)
            if undated is not None:
                found = True
                fallback.append(undated)
        if not found:
            return [], None, False
        candidates = heapq.merge(*(self.in_order.get(ing, []) for ing in sorted(order.ingredients)))
        texts: list[int] = []
        for n, i in enumerate(candidates):
            if n >= self.SCAN * max(len(order.ingredients), 1) or len(texts) == 3:
                break
            if (not texts or texts[-1] != i) and self._qualifies(i, order):
                texts.append(i)
        if not texts:  # the first entries of a very long history were all dated after the order
            texts = sorted(set(fallback))[:3]
        return [self.history[i][2] for i in texts], earliest, True


def _with_history(order: MedicationFact, history: "list[tuple[frozenset[str], str, str, date | None]] | _HistoryIndex") -> MedicationFact:
    """``prior_therapy``: the evidence that the order continues earlier therapy of the same drug and the
    earliest date that history shows (the order's own priorPrescription / basedOn come from medication_fact)."""
    index = history if isinstance(history, _HistoryIndex) else _HistoryIndex(history)
    texts, earliest, found = index.prior(order)
    if not found:
        return order
    before = order.prior_therapy
    dates = [d for d in (before.since if before else None, earliest) if d]
    evidence = "; ".join(filter(None, [before.evidence if before else "", *texts]))
    earlier = "; ".join(filter(None, [before.history if before else "", *texts]))  # the records, not the links
    ends = [index.last_end.get(ing, date.max) for ing in order.ingredients]
    last = None if not ends or any(e is None for e in ends) else max(e for e in ends if e is not None)
    return msgspec.structs.replace(order, prior_therapy=PriorTherapy(evidence, min(dates) if dates else None,
                                                                     earlier, None if last == date.max else last))


def _lowest_first_of_same_time(weights: list, gaps: list[DataGap]) -> list:
    """Body weights recorded with the same (newest) date and time that disagree: the lowest comes first
    (the conservative one for a dose in mg/kg) and a gap says they disagree, so the card says so."""
    newest = next((w.when for w in weights if w.when is not None), None)
    same = [w for w in weights if newest is not None and w.when == newest]
    if newest is None or len({round(w.value, 3) for w in same}) < 2:
        return weights
    low = min(same, key=lambda w: w.value)
    values = ", ".join(f"{w.value:g} kg" for w in sorted(same, key=lambda w: w.value))
    gaps.append(DataGap("body weight", f"body weights recorded at the same time ({newest.date().isoformat()}) "
                        f"disagree ({values}); the lowest, {low.value:g} kg, is used: check which is correct",
                        key="weight_conflict"))
    return [low, *[w for w in weights if w is not low]]


_ESTABLISHED_SCAN = 64  # ended orders of the ordered drugs read per call for the established dose


def _short_ref(ref: str) -> str:
    """"MedicationRequest/id" of a reference, relative or absolute (how ``replaces`` names an order)."""
    return "/".join(ref.rsplit("/", 2)[-2:])


def _ended_orders(pf: "Prefetch", meds_index: dict, draft_refs: set[str],
                  orders: list[MedicationFact]) -> list[MedicationFact]:
    """Stopped and completed MedicationRequests of a drug ordered now, under the ``medications`` key (those under
    ``past_medications`` are read as ``past``): the dose taken before (round-9 M2). At most ``_ESTABLISHED_SCAN``."""
    wanted = frozenset(i for o in orders if o.is_draft for i in o.ingredients)
    out: list[MedicationFact] = []
    for mr in pf.of("medications", "MedicationRequest"):
        if len(out) >= _ESTABLISHED_SCAN:
            break
        if mr.get("status") not in _ENDED or ref_of(mr) in draft_refs \
                or wanted.isdisjoint(ingredients_of(medication_concept(mr, meds_index))):
            continue  # the drug is read first: only an ordered drug's orders are mapped in full
        fact = medication_fact(mr, is_draft=False, medications=meds_index)
        if fact is not None and fact.ref not in draft_refs and fact.ingredients & wanted:
            out.append(msgspec.structs.replace(fact, ended_on=_end_date(mr) or fact.authored_on))
    return out


def _with_established(order: MedicationFact, active: list[MedicationFact],
                      ended: list[MedicationFact]) -> MedicationFact:
    """``established_dose``: the daily dose of the same drug the record shows before this draft order (round-9 M2):
    the order it replaces, else an active order or statement of the drug, else the latest ended order dated on or
    before it. Read only; the rules decide whether it is a usual dose."""
    if not order.is_draft or not order.ingredients:
        return order

    def same(m: MedicationFact) -> bool:
        return m.ingredients == order.ingredients and m.daily_dose is not None and not m.is_draft \
            and (not m.ref or m.ref != order.ref) \
            and not (m.authored_on and order.authored_on and m.authored_on > order.authored_on)

    def latest(items: list[MedicationFact]) -> MedicationFact | None:
        dated = sorted((m for m in items if same(m)), key=lambda m: m.authored_on or date.min, reverse=True)
        return dated[0] if dated else None

    replaced = [m for m in (*active, *ended) if m.ref and m.ref in order.replaces]
    found = latest(replaced) or latest(active) or latest(ended)
    if found is None or found.daily_dose is None:
        return order
    return msgspec.structs.replace(order, established_dose=found.daily_dose, established_ref=found.ref,
                   established_status=found.status, established_on=found.authored_on)


def _with_weight(order: MedicationFact, weights: list) -> MedicationFact:
    """An order in mg/kg/day becomes mg/day with the newest dated body weight (the rules judge its age)."""
    if order.dose_per_kg is None:
        return order
    w = next((w for w in weights if w.when is not None), None)
    if w is None:
        return order
    d = order.dose_per_kg
    text = (f"{d.high_mg:g} mg/kg/day × {w.value:g} kg (weight of {w.when.date().isoformat()})"
            + (f"; {d.text}" if d.text else ""))
    return msgspec.structs.replace(order, daily_dose=DailyDose(round(d.low_mg * w.value, 3), round(d.high_mg * w.value, 3), text),
                   dose_problem="")


_REPORT_EXCLUDED = {"entered-in-error", "cancelled"}


def report_observations(report: dict) -> list[dict]:
    """The contained Observations of a DiagnosticReport. A withdrawn report
    (entered-in-error) contributes none, a cancelled one only results marked cancelled (no values);
    a preliminary or partial report makes its results preliminary."""
    status = report.get("status") if isinstance(report.get("status"), str) else ""
    if status == "cancelled":
        # a cancelled report's results are not results, but the tests were ordered and not done: its contained
        # Observations are passed on as cancelled (AbsentResult facts; the rules decide whether to name them,
        # round-8 H2). An entered-in-error report contributes nothing.
        return [{**c, "status": "cancelled"} for c in report.get("contained") or []
                if isinstance(c, dict) and c.get("resourceType") == "Observation"]
    if status in _REPORT_EXCLUDED:
        return []
    out = []
    for c in report.get("contained") or []:
        if isinstance(c, dict) and c.get("resourceType") == "Observation":
            if status in PRELIMINARY_STATUS and c.get("status") not in _REPORT_EXCLUDED:
                c = {**c, "status": "preliminary"}
            out.append(c)
    if not out and not report.get("result") and isinstance(report.get("conclusion"), str) and report["conclusion"].strip():
        # a report that states its result only as a conclusion (no contained or referenced results) ("TPMT *3A/*3C (poor metabolizer)"): read as a
        # result of the report's own code, in its words; the classifier decides whether that code is genomic
        out.append({"resourceType": "Observation", "id": f"{report.get('id')}-conclusion", "status": status or "final",
                    "code": report.get("code"), "valueString": report["conclusion"],
                    **{k: report[k] for k in ("effectiveDateTime", "effectivePeriod", "issued")
                       if k in report}})
    return out


def _classify(observations: list[dict]) -> tuple[list[tuple[dict, str | None]], list[dict], list[dict]]:
    """Read each Observation's code once and send it to the one mapper that uses it:
    (numeric results with the analyte of their LOINC code, TPMT/NUDT15 genotype or phenotype,
    pregnancy/breastfeeding status). The same Observation arriving under two keys is read once."""
    numeric, genomic, status = [], [], []
    seen: set = set()
    for obs in observations:
        rid = obs.get("id")
        key = rid if isinstance(rid, str) and rid else id(obs)  # an id that is a list or object must not raise
        if key in seen:
            continue
        seen.add(key)
        kind, analyte = classify(obs)
        if "component" not in obs:  # the usual shape, a result with no components: sent on directly
            if kind == "numeric":
                if analyte is None and genes_of_uncoded_result(obs) and analyte_named(concept_text(obs.get("code"))) is None:
                    genomic.append(obs)  # as below: names TPMT / NUDT15 but no code or name this service reads
                else:
                    numeric.append((obs, analyte))
            elif kind == "genomic":
                genomic.append(obs)
            else:
                status.append(obs)
            continue
        # its components are results of their own (round-11 H1: a CBC panel's WBC, neutrophils, platelets)
        parts = [(c, classify(c)) for c in component_results(obs, kind)] if "component" in obs else []
        # a panel whose genotype / phenotype is a component of its own: the component is the result, not the panel
        panel_of_genes = any(k == "genomic" for _, (k, _a) in parts)
        for o, (k, a) in ((obs, (kind, analyte)), *parts):
            if o is obs and k == "genomic" and panel_of_genes:
                continue  # round-12 H2: a TPMT / NUDT15 panel with no value of its own: its components are the results
            if k == "numeric" and a is None and not (o is obs and panel_of_genes) and genes_of_uncoded_result(o) \
                    and analyte_named(concept_text(o.get("code"))) is None:
                # names TPMT / NUDT15 but no code or name this service reads (round-5 M2): gene_results reads it
                # from its words or reports it found but unreadable, never absent
                genomic.append(o)
            elif k == "numeric":
                numeric.append((o, a))
            elif k == "genomic":
                genomic.append(o)
            else:
                status.append(o)
    return numeric, genomic, status
