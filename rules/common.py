"""Small helpers shared by the rules: which orders matter, indication, body size, guideline profile."""
from __future__ import annotations

import msgspec

import math
import re
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from functools import cache
from typing import Any

from fhir_mappers.facts import ClinicalFacts, ConditionFact, MedicationFact, Measurement, ResultText

from .knowledge_base import load
from .knowledge_schema import PgxDrug

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"  # and its national modifications (icd-10-cm, ...): a prefix


@cache
def thiopurines() -> frozenset[str]:
    return frozenset(load().pgx.drugs)


def thiopurine_of(med: MedicationFact) -> str | None:
    """The thiopurine ingredient of an order (the first by name if several), or None."""
    found = med.ingredients & thiopurines()
    return min(found) if found else None


def thiopurine_orders(facts: ClinicalFacts) -> list[tuple[MedicationFact, str]]:
    return [(o, d) for o in facts.orders if o.selected and (d := thiopurine_of(o))]


def therapy_unknown(facts: ClinicalFacts, order: MedicationFact) -> bool:
    """Whether the order starts or continues therapy is unknown: the active medications could not be
    obtained and the order itself shows no earlier therapy (medications unavailable is never 'none')."""
    return "medications" in facts.unavailable and order.prior_therapy is None


@cache
def drug_spec(drug: str, guideline: str = "cpic") -> PgxDrug:
    """pgx.toml's spec of a drug, with the guideline profile's overrides (DPWG) applied."""
    pgx = load().pgx
    spec = pgx.drugs[drug]
    override = pgx.profiles[guideline].drugs.get(drug)
    if override is None:
        return spec
    return replace(spec, **{f.name: getattr(override, f.name) for f in fields(override)
                            if getattr(override, f.name) is not None})


def below(m: Measurement, cutoff: float) -> bool:
    """The result may be below ``cutoff``: a limit result ("< 17", "<= 0.5") is open downwards, so it
    counts as below whatever its figure (the safe reading: data you cannot read is never normal)."""
    return m.value < cutoff or m.comparator in ("<", "<=")


def above(m: Measurement, cutoff: float) -> bool:
    """The result may be above ``cutoff`` (a "> 300" result is open upwards)."""
    return m.value > cutoff or m.comparator in (">", ">=")


LabFlag = str  # "critical_low" | "critical_high" | "critical" | "low" | "high" | "abnormal" | ""
_FLAG_RANK = ("critical_low", "critical_high", "critical", "low", "high", "abnormal")


@cache
def _flag_spec() -> tuple[dict[str, str], tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]]:
    spec = load().monitoring.lab_flags
    by_kind = {"critical_low": spec.critical_low, "critical_high": spec.critical_high, "critical": spec.critical,
               "low": spec.low, "high": spec.high, "abnormal": spec.abnormal}
    codes = {c: kind for kind in reversed(_FLAG_RANK) for c in by_kind[kind]}  # the most severe kind wins a code

    def words(listed: tuple[str, ...]) -> re.Pattern[str]:
        return re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in listed) + r")(?![\w-])")
    return codes, (words(spec.critical_words), words(spec.low_words), words(spec.high_words))


def lab_flag(result: Measurement | ResultText) -> LabFlag:
    """What the laboratory's own flag on a result says (monitoring.toml [lab_flags], HL7 v2-0078): the most
    severe of its codes and its words ("Critical low" is critical_low). "" when it sent no flag."""
    codes, (critical, low, high) = _flag_spec()
    found = {codes[c] for c in (*result.flags, result.interpretation) if c in codes}
    text = result.interpretation_text if isinstance(result, Measurement) else result.text
    if text:  # a flag sent as text only ("LL", no coding): the whole text, or a critical code among its words
        words = {text.strip().upper()} | {w for w in re.findall(r"[a-z]+", text) if len(w) == 2 and w[0] == w[1]}
        found |= {codes[w.upper()] for w in words if w.upper() in codes}
    if text and critical.search(text):
        found.add("critical_low" if low.search(text) else "critical_high" if high.search(text) else "critical")
    return next((kind for kind in _FLAG_RANK if kind in found), "")


def recent(measurements: list[Measurement], today, max_age_days: int) -> Measurement | None:
    """The newest measurement no older than ``max_age_days`` (undated ones do not count)."""
    for w in measurements:
        if w.when is None:
            continue
        if w.when.date() >= today - timedelta(days=max_age_days):
            return w
        return None
    return None


def recent_weight(facts: ClinicalFacts, max_age_days: int) -> Measurement | None:
    return recent(facts.weights, facts.today, max_age_days)


def plausible_height(cm: float) -> bool:
    """A body height inside ``dosing.toml``'s ``height_plausible_cm``: anything else (a negative or
    zero height, a value in mm read as cm) is a recording error and never enters a body surface area."""
    low, high = load().dosing.general.height_plausible_cm
    return low <= cm <= high


def usable_weight(facts: ClinicalFacts, max_age_days: int) -> Measurement | None:
    """The recent weight if it is plausible (``dosing.toml`` limits); else None (the weight rule says why)."""
    low, high = load().dosing.general.weight_plausible_kg
    w = recent_weight(facts, max_age_days)
    return w if w is not None and low <= w.value <= high else None


def mosteller(height_cm: float, weight_kg: float) -> float:
    """Body surface area in m² (Mosteller: sqrt(height cm x weight kg / 3600)), the one formula of the service."""
    return math.sqrt(height_cm * weight_kg / 3600)


def body_surface_area(facts: ClinicalFacts, weight_days: int) -> tuple[float, Measurement, Measurement] | None:
    """(BSA, height, weight) from a recent plausible height (``height_max_age_days``) and a usable weight; else None."""
    w = usable_weight(facts, weight_days)
    h = recent(facts.heights, facts.today, load().dosing.general.height_max_age_days)
    if w is None or h is None or not plausible_height(h.value):
        return None
    return mosteller(h.value, w.value), h, w


@dataclass(frozen=True)
class CodeMatcher:
    """``matches`` with a spec's code lists read once: SNOMED codes as a set, ICD-10 prefixes as a tuple."""

    snomed: frozenset[str]
    icd10: tuple[str, ...]

    def __call__(self, codes: frozenset[str]) -> bool:
        for key in codes:
            system, _, code = key.partition("|")
            if system == SNOMED:
                if code in self.snomed:
                    return True
            elif system.startswith(ICD10) and code.upper().startswith(self.icd10):
                return True
        return False


    def read(self, codes: "ConditionCodes") -> bool:
        """``self(codes)`` for codes read once (``condition_codes``): the same answer, without splitting them again."""
        return not self.snomed.isdisjoint(codes.snomed) or any(c.startswith(self.icd10) for c in codes.icd10)


class ConditionCodes(msgspec.Struct, frozen=True):
    """A Condition's "system|code" keys read once per call: its SNOMED codes, and its ICD-10 codes (any ICD-10
    system, national modifications included) in upper case. Every code list a rule matches it against (the
    indications, pregnancy, breastfeeding, acute kidney injury) reads these instead of splitting the keys again."""

    snomed: frozenset[str]
    icd10: tuple[str, ...]


def condition_codes(codes: frozenset[str]) -> ConditionCodes:
    snomed: set[str] = set()
    icd10: list[str] = []
    for key in codes:
        system, _, code = key.partition("|")
        if system == SNOMED:
            snomed.add(code)
        elif system.startswith(ICD10):
            icd10.append(code.upper())
    return ConditionCodes(frozenset(snomed), tuple(icd10))


def matches(spec: dict, codes: frozenset[str]) -> bool:
    """Whether any "system|code" matches the spec's SNOMED codes or ICD-10 prefixes."""
    return CodeMatcher(frozenset(spec.get("snomed", [])), tuple(spec.get("icd10", [])))(codes)


@dataclass(frozen=True)
class _IndicationIndex:
    """dosing.toml's indications in the file's order (most specific first, without "unknown"), and for a
    code the position of the first indication listing it: SNOMED codes, ICD-10 prefixes (by length)."""

    keys: tuple[str, ...]
    snomed: dict[str, int]
    icd10: dict[str, int]  # prefix -> position of the first indication listing it
    icd10_lengths: tuple[int, ...]


@cache
def _indication_index() -> _IndicationIndex:
    table = load().dosing.indications
    keys = tuple(k for k in table if k != "unknown")
    snomed: dict[str, int] = {}
    icd10: dict[str, int] = {}
    for i, k in enumerate(keys):
        for code in table[k].snomed:
            snomed.setdefault(code, i)
        for prefix in table[k].icd10:
            icd10.setdefault(prefix, i)
    return _IndicationIndex(keys, snomed, icd10, tuple(sorted({len(p) for p in icd10})))


def _first_indication(index: _IndicationIndex, key: str) -> int:
    """The position of the first indication one "system|code" matches (as ``matches``), or the number of
    indications when none does."""
    none = len(index.keys)
    system, _, code = key.partition("|")
    if system == SNOMED:
        return index.snomed.get(code, none)
    if system.startswith(ICD10):
        code = code.upper()  # an ICD-10 code matches every prefix it starts with: the first indication of those
        return min((index.icd10.get(code[:n], none) for n in index.icd10_lengths if n <= len(code)), default=none)
    return none


def _first_of(index: _IndicationIndex, codes) -> int:
    return min((_first_indication(index, c) for c in codes), default=len(index.keys))


def _indication_of(codes_per_item) -> str | None:
    index = _indication_index()
    i = min((_first_of(index, codes) for codes in codes_per_item), default=len(index.keys))
    return index.keys[i] if i < len(index.keys) else None


def condition_indication(conditions: list[ConditionFact]) -> str | None:
    """The first indication (the knowledge file's order, most specific first) any active Condition matches."""
    return _indication_of(c.codes for c in conditions)


def read_condition_indication(read: list[ConditionCodes]) -> str | None:
    """``condition_indication`` of Conditions whose codes were read once (``condition_codes``): the same answer."""
    index = _indication_index()
    none = len(index.keys)
    i = none
    for codes in read:
        for code in codes.snomed:
            i = min(i, index.snomed.get(code, none))
        for code in codes.icd10:
            for n in index.icd10_lengths:
                if n <= len(code):
                    i = min(i, index.icd10.get(code[:n], none))
    return index.keys[i] if i < none else None


def reason_indication(order: MedicationFact) -> str | None:
    """The first indication the order's reasonCode matches."""
    return _indication_of((order.reason_codes,))


def indication(order: MedicationFact, conditions: list[ConditionFact]) -> tuple[str, str]:
    """(indication key, "reason" | "condition" | "unrecognised" | "none"). The order's reasonCode wins; then
    active Conditions in the knowledge file's order (most specific first): the first indication
    any code matches. "unrecognised": Conditions (or a reason) are on record but name no indication the
    knowledge knows; "none": nothing is on record."""
    return indication_from(reason_indication(order), lambda: condition_indication(conditions),
                           bool(order.reason_codes or conditions))


def indication_from(by_reason: str | None, by_condition, recorded: bool = False) -> tuple[str, str]:
    """``indication`` from the order's reason match, a callable giving the Conditions' match and whether
    any Condition or reason is on record at all (round-5 M1: "not recognised" is not "none on record")."""
    if by_reason is not None:
        return by_reason, "reason"
    ind = by_condition()
    if ind is not None:
        return ind, "condition"
    return ("unknown", "unrecognised") if recorded else ("unknown", "none")


def recorded_indications(order: MedicationFact, conditions: list[ConditionFact], limit: int = 4) -> list[str]:
    """What the record says the patient has, as sent (a Condition's text or display, else its codes), for a
    card that says the indication was not recognised: the order's reason first, at most ``limit`` items and
    "N more"."""
    items = [", ".join(sorted(order.reason_codes))] if order.reason_codes else []
    items += [c.display.strip() or ", ".join(sorted(c.codes)) or "(no code or text)" for c in conditions]
    items = list(dict.fromkeys(i for i in items if i))
    return items[:limit] + ([f"{len(items) - limit} more"] if len(items) > limit else [])


def taken_orders(facts: ClinicalFacts, drug: str, order: MedicationFact | None = None) -> list[MedicationFact]:
    """The orders of ``drug`` the patient takes now: the active (or on-hold) orders and statements of the drug, and
    the orders a draft renews or replaces (priorPrescription / basedOn: ``rules.evaluate.without_replaced`` moves them
    from ``active_medications`` to ``renewed_medications`` so they get no card of their own). Round-17 H4 (the class
    of round-15 H1): a renewed order is therapy taken, never gone; the one list every "new start or established
    therapy" decision on a thiopurine reads (PGx, the start regimen and dose range, monitoring), with the established
    dose and start date taken from these orders. Round-18 H1: a renewed order that is ``completed`` (or stopped on or
    after the renewal's date) is among them too (``without_replaced``); one stopped before the renewal is a restart.
    ``order`` itself is left out."""
    return [m for m in (*facts.active_medications, *facts.renewed_medications)
            if drug in m.ingredients and m is not order]


TOLERANCE_COUNTS = ("neutrophils", "wbc", "platelets", "lymphocytes")  # monitoring.toml [cytopenia] *_below
_LOW_FLAGS = ("low", "critical_low", "critical")


def hold_may_be_toxic(reason: str) -> bool:
    """Round-20 m1: whether an order's statusReason (as sent) may name a toxicity: no reason, a reason with no
    letters (a code only: not readable, never read as benign), or one naming a word of monitoring.toml [hold]
    ``toxic_words`` (matched at a word start, case-insensitive). Round-21 H1: a hold is for another reason only when
    its reason names one of ``benign_words`` ("held for surgery") and no toxic word; any other text ("ANC 0.6 on
    10/11 - held", "per haematology", "unwell") cannot be read as benign and may name a toxicity."""
    text = reason.strip().lower()
    spec = load().monitoring.hold
    if not re.search(r"[a-z]", text) or spec is None:
        return True

    def names(words: tuple[str, ...]) -> bool:
        return any(re.search(r"(?<![a-z])" + re.escape(w.lower()), text) for w in words)

    return names(spec.toxic_words) or not names(spec.benign_words)


def dose_not_tolerated(facts: ClinicalFacts, drug: str, order: MedicationFact | None = None) -> dict[str, Any] | None:
    """Round-19 H3: why the therapy of ``drug`` taken now (``taken_orders``) is NOT an established, tolerated dose,
    or None. Taken is not tolerated: an order on hold (``held``: its ref, date and statusReason as sent; round-20 m1:
    only a hold with no reason or one that may name a toxicity, ``hold_may_be_toxic``, counts on its own: a hold for
    a stated other reason is still listed, with ``toxic`` False, when a low count makes the dose untolerated), or a blood
    count since the therapy began (its earliest order's date; any, when undated) and within monitoring.toml
    ``result_max_age_days`` that is below the BSR 2017 action limits ([cytopenia] ``*_below``) or that the
    laboratory flagged low or critical (``low``: each such count, as sent). CPIC 2018 (intermediate metabolizer:
    "adjust doses based on degree of myelosuppression"), the Imuran label (reduce or withdraw on low counts) and
    BSR/BHPR 2017 (withhold, discuss) make such a dose one to restart reduced, never one to keep as tolerated. Read by
    every "established, tolerated" decision (``rules.pgx.established_dose`` and the raised renewal it keeps, the
    allopurinol combination renewal in ``rules.interactions``); ``taken_orders`` itself stays the therapy taken
    (an order on hold is still an order: duplicates, interactions). For ``order`` treating leukaemia (an oncology
    indication, or the drug among the indication's ``malignancy_drugs``) only a hold counts: maintenance counts are
    titrated low on purpose (mercaptopurine label 2.1; the cytopenia cards exclude them too)."""
    taken = taken_orders(facts, drug)
    if not taken:
        return None
    held = [{"ref": m.ref, "date": m.authored_on.isoformat() if m.authored_on else "", "reason": m.status_reason,
             "toxic": hold_may_be_toxic(m.status_reason)}
            for m in taken if m.status == "on-hold"]
    dates = [m.authored_on for m in taken]
    since = min(dates) if all(d is not None for d in dates) else None  # type: ignore[type-var]
    kb = load().monitoring
    oldest = facts.today - timedelta(days=kb.cbc.result_max_age_days)
    low: list[dict[str, Any]] = []
    spec = load().dosing.indications[indication(order, indication_records(facts))[0]] if order is not None else None
    titrated = spec is not None and (spec.oncology or drug in spec.malignancy_drugs)
    for analyte in TOLERANCE_COUNTS if not titrated else ():
        cutoff = getattr(kb.cytopenia, f"{analyte}_below")
        results: list[Measurement | ResultText] = [*facts.labs.get(analyte, []), *facts.result_texts.get(analyte, [])]
        for r in results:
            if r.when is None or r.when.date() < oldest or (since is not None and r.when.date() < since):
                continue
            flag = lab_flag(r)
            if isinstance(r, Measurement):
                if not (below(r, cutoff) or flag in _LOW_FLAGS):
                    continue
                low.append({"analyte": analyte, "value": round(r.value, 2), "comparator": r.comparator,
                            "date": r.when.date().isoformat(), "flag": flag,
                            "flag_code": r.interpretation if r.interpretation not in ("<", ">") else ""})
            elif flag in _LOW_FLAGS:
                low.append({"analyte": analyte, "value": None, "as_sent": r.value_text or r.text[:60],
                            "unit_text": r.unit_text, "date": r.when.date().isoformat(), "flag": flag,
                            "flag_code": r.interpretation})
    if not low and not any(h["toxic"] for h in held):
        return None  # round-20 m1: a hold for a stated reason that names no toxicity, counts never low: tolerated
    low.sort(key=lambda c: c["date"])
    worst = min(low, key=_severity, default=None)  # the one a summary names: critical first, then the lowest
    return {"held": held, "low": low, "worst": worst, "since": since.isoformat() if since else "",
            "window_days": kb.cbc.result_max_age_days}


def _severity(count: dict[str, Any]) -> tuple[int, float]:
    """Sort key of a low count: flagged critical first, then the lowest share of its BSR limit (a text result last)."""
    cutoff = getattr(load().monitoring.cytopenia, f"{count['analyte']}_below")
    share = count["value"] / cutoff if count.get("value") is not None and cutoff else math.inf
    return (0 if count["flag"] in ("critical_low", "critical") else 1, share)


def is_new_start(facts: ClinicalFacts, order: MedicationFact, drug: str) -> bool:
    """No order of the drug taken now (``taken_orders``: active, or renewed by a draft) and no earlier therapy the
    request shows (priorPrescription, basedOn, earlier orders, dispenses: ``order.prior_therapy``, read by
    fhir_mappers). Round-19: a draft's own link counts only when ``link_shows_therapy`` (``rules.evaluate.
    without_replaced`` drops it from ``prior_therapy`` otherwise): a restart after a stop and a switch from another
    thiopurine are new starts of the drug for every rule (PGx, dose, monitoring, renal, populations, gaps)."""
    return not order.prior_therapy and not taken_orders(facts, drug)  # an order on record is itself therapy taken


def short_ref(ref: str) -> str:
    """"MedicationRequest/id" of a reference, relative or absolute (how ``MedicationFact.replaces`` names one): the
    one comparison of an order's reference with a draft's priorPrescription / basedOn, for every rule."""
    return "/".join(ref.rsplit("/", 2)[-2:]) if ref else ""


def continued_up_to(m: MedicationFact, when: date) -> bool:
    """An order on record, named by a draft dated ``when``, is therapy taken up to that draft: not ended (active, on
    hold), ``completed`` (many EHRs complete the renewed order when the renewal is signed), or ``stopped`` on or after
    ``when`` (stopped by the renewal: discontinue and reorder). Stopped before it (or on no known date): a restart
    (round-18 H1). Round-20 M2: a completed order whose recorded end is more than monitoring.toml
    ``restart_after_days`` before ``when`` (``ended_long_before``) is a restart too."""
    if m.status == "stopped":
        return m.ended_on is not None and m.ended_on >= when
    return not ended_long_before(m, when)


def recorded_end(m: MedicationFact) -> date | None:
    """An ended order's end as the record gives it (validityPeriod.end, a dosage's boundsPeriod.end, else its expected
    supply end: ``fhir_mappers`` ``ended_on``), None when it gives none (``ended_on`` then falls back to authoredOn:
    the order ended on or after that, a lower bound only)."""
    return None if m.ended_on is None or m.ended_on == m.authored_on else m.ended_on


def long_ended(end: date | None, when: date) -> bool:
    """Round-20 M2: an end more than monitoring.toml ``restart_after_days`` before ``when`` (a draft's date): therapy
    that ended then is not taken now; a draft of the drug is a restart (a new start for every rule)."""
    return end is not None and (when - end).days > load().monitoring.cbc.restart_after_days


def ended_long_before(m: MedicationFact, when: date) -> bool:
    """A completed or stopped order whose recorded end (``recorded_end``) is ``long_ended`` before ``when``. One with
    no end given is not (round-18 H1: the prescriber's word that the renewal continues it)."""
    return m.status in ("completed", "stopped") and long_ended(recorded_end(m), when)


def link_shows_therapy(facts: ClinicalFacts, draft: MedicationFact) -> bool:
    """Round-19 (one order, one answer): the draft's priorPrescription / basedOn (``replaces``) is evidence that it
    continues therapy of its own drug: an order it names is of that drug and taken up to the draft
    (``continued_up_to``), or is not on record (what could not be read is taken at the prescriber's word, never as a
    start or a stop). A link whose every order is on record and none continues the drug (each stopped before the
    draft: a restart; or another drug's: a switch, mercaptopurine to azathioprine) shows no therapy of it."""
    if not draft.replaces:
        return False
    when = draft.authored_on or facts.today
    records = {short_ref(m.ref): m for m in (*facts.past_medications, *facts.active_medications,
                                              *facts.renewed_medications) if m.ref and not m.is_draft}
    for ref in draft.replaces:
        m = records.get(ref)
        if m is None or (m.ingredients & draft.ingredients and continued_up_to(m, when)):
            return True
    return False


def _status_code(spec: Any, key: str) -> bool:
    """A "system|code" that records an established graft (``status_snomed`` / ``status_icd10``, dosing.toml)."""
    system, _, code = key.partition("|")
    if system == SNOMED:
        return code in spec.status_snomed
    return system.startswith(ICD10) and any(code.upper().startswith(p) for p in spec.status_icd10)


# Procedure.status (FHIR R4 event-status) of a procedure done or being done: a transplant counts only then (not
# on-hold, stopped before completion, or of unknown status); fhir_mappers.patient reads every Procedure but those
# that did not happen (round-19 H2: a transfusion stopped part way may still have given donor cells)
PROCEDURE_DONE = ("completed", "in-progress")


def indication_records(facts: ClinicalFacts) -> list[ConditionFact]:
    """What the indication is read from besides the order's reason: the active Conditions, and (round-11 M1) the
    Procedures done whose code names an indication (a kidney transplant recorded as a Procedure, SNOMED CT
    70536003 Transplantation of kidney, in dosing.toml's code list). Other Procedures (an appendectomy) name no
    indication and are not quoted as an unrecognised one."""
    procedures = [p for p in facts.procedures if p.status in PROCEDURE_DONE and condition_indication([p]) is not None]
    return [*facts.conditions, *procedures] if procedures else facts.conditions


def _transplant_events(facts: ClinicalFacts, ind: str, spec: Any) -> list[ConditionFact]:
    """The records of ``ind`` (Conditions and Procedures, ``indication_records``) that name it."""
    return [c for c in indication_records(facts) if _indication_of((c.codes,)) == ind]


def induction_start(facts: ClinicalFacts, order: MedicationFact, drug: str, ind: str) -> bool:
    """Round-10 H2: a new start of an indication whose new-start range differs (renal homotransplantation: 3-5
    mg/kg/day "initially", beginning at the time of transplant) is dosed on that range only when the record shows a
    recent transplant: an active Condition, or (round-11 M1) a Procedure done (completed or in-progress), of this
    indication coded as the event (no status code such as Z94.0 "kidney transplant status") whose onset (else
    recordedDate; a Procedure's performedDateTime or performedPeriod.start) is within ``induction_window_days``
    before today. Anything else (an old or undated transplant, a status code) is maintenance: the lower basis,
    never the induction's. An earlier thiopurine course (an ended order) does not make it maintenance (round-11
    m1): the label's initial dose applies "beginning at the time of transplant", whatever was taken before."""
    if not is_new_start(facts, order, drug):
        return False
    spec = load().dosing.indications.get(ind)
    if spec is None or (spec.new_start_min_mg_per_kg is None and spec.new_start_max_mg_per_kg is None):
        return False
    window = spec.induction_window_days
    if window is None:
        return True
    for c in _transplant_events(facts, ind, spec):
        if c.onset is None or not 0 <= (facts.today - c.onset).days <= window:
            continue
        if not any(_status_code(spec, k) for k in c.codes):
            return True
    return False


def induction_unconfirmed(facts: ClinicalFacts, ind: str, spec: Any) -> dict[str, Any]:
    """Why a new start of ``ind`` is held to the maintenance basis (round-10 H2), in terms true of what was read
    (round-11 M1): the window, the label's initial range, and each record of the indication that was read
    (``read``: at most three, each its kind "Condition" / "Procedure", text, date as given or "", whether its
    code is a status code and whether its date is after today; ``more``: how many others)."""
    read = []
    for c in _transplant_events(facts, ind, spec):
        read.append({"kind": c.resource_type, "display": (c.display.strip() or ", ".join(sorted(c.codes)))[:60],
                     "date": c.onset.isoformat() if c.onset else "",
                     "status": any(_status_code(spec, k) for k in c.codes),
                     "future": c.onset is not None and c.onset > facts.today})
    return {"days": spec.induction_window_days,
            "low": spec.new_start_min_mg_per_kg or spec.new_start_max_mg_per_kg,
            "high": spec.new_start_max_mg_per_kg, "read": read[:3], "more": max(len(read) - 3, 0)}


def _usual_for_indication(facts: ClinicalFacts, order: MedicationFact, drug: str, ind: str, standard: float,
                          weight: float) -> dict[str, Any]:
    """Round-8 H4: the normal dose a reduction (a TPMT/NUDT15 band, allopurinol's fraction) applies to is the usual
    dose for THIS indication, not a fixed 2 mg/kg/day. The indication's usual range runs from the normal dose
    (``standard``, CPIC's 2 mg/kg/day; a new start's lowest usual starting dose when the indication sets one:
    renal homotransplantation 3 mg/kg/day, Imuran label) to the indication's maximum (a new start's, 5 mg/kg/day
    in renal homotransplantation; dosing.toml). An order inside that range is the usual dose the prescriber chose:
    the reduction applies to it (CPIC: "30-80 % of the normal starting dose"; label: "one-third or one-quarter of
    the usual dose"). An order below it may already be reduced, and one above it is above the range: the normal
    dose then stands (never the ordered dose). ``top_mg`` (the top of the range) bounds what an order already
    following the advice may be (rules.doseplan, rules.pgx): a reduction the service suggests from the top of
    the range is not cut again. Only for a drug whose range this indication gives (azathioprine, or the
    indication's ``drugs``)."""
    dosing = load().dosing
    spec = dosing.indications[ind]
    if ind == "unknown" or spec.max_mg_per_kg is None or not (drug == "azathioprine" or drug in spec.drugs):
        # no indication known (or none with a cited range: liver, heart transplant): no usual range to place the
        # order in; CPIC's normal dose stands
        return {}
    own = spec
    new_start = induction_start(facts, order, drug, ind)  # round-10 H2: a recent transplant only
    low, high, start = standard, float(own.max_mg_per_kg or standard), False
    if new_start and spec.new_start_max_mg_per_kg is not None:
        high = spec.new_start_max_mg_per_kg
    if new_start and spec.new_start_min_mg_per_kg is not None and spec.new_start_min_mg_per_kg > low:
        low, start = spec.new_start_min_mg_per_kg, True
    high = max(high, low)
    out: dict[str, Any] = {"standard": low, "reference_mg": low * weight, "normal_mg": low * weight,
                           "top_per_kg": high, "top_mg": high * weight, "usual_start": start,
                           "usual_name": spec.name, "usual_text": own.range_text,
                           "usual_source": own.source, "from_order": False, "taken": not order.is_draft}
    if not new_start and spec.induction_window_days is not None and spec.new_start_max_mg_per_kg is not None \
            and is_new_start(facts, order, drug):
        # round-10 H2: a start held to the maintenance basis because no recent transplant is on record: every card
        # that states the basis says so, and names the label's initial range (a start in the first weeks after
        # transplant is not reduced unseen)
        out["induction_unconfirmed"] = induction_unconfirmed(facts, ind, spec)
    ordered = order.daily_dose.mg if order.daily_dose is not None else None
    if ordered is not None and low * weight + 1e-6 < ordered <= high * weight + 1e-6:
        out.update(reference_mg=ordered, from_order=True)
        return out
    # round-9 M2: the dose the patient took before this order (the order it replaces, an active order, the latest
    # ended one: ``established_dose``, read by fhir_mappers), when the order itself is not a usual dose. Inside the
    # range above it is the usual dose (as an order there would be); at or above the indication's lowest usual dose
    # (``usual_min_mg_per_kg``, e.g. the label's RA start of 1 mg/kg/day) but under the normal dose it is what
    # allopurinol's one-third to one-quarter applies to (rules.evaluate.attach_plans), never a PGx band's basis
    est = order.established_dose.mg if order.established_dose is not None and order.is_draft else None
    if est is not None and not new_start_only(spec, new_start):
        state = {"established_ref": order.established_ref, "established_status": order.established_status,
                 "established_mg": est}
        if low * weight + 1e-6 < est <= high * weight + 1e-6:
            out.update(reference_mg=est, from_order=True, from_established=True, taken=True, **state)
        elif spec.usual_min_mg_per_kg is not None and spec.usual_min_mg_per_kg * weight - 1e-6 <= est <= low * weight + 1e-6:
            out.update(established_below_mg=est, **state)
    return out


def new_start_only(spec: Any, new_start: bool) -> bool:
    """An indication whose usual range differs for a new start (renal homotransplantation: 3-5 mg/kg/day initially):
    a dose taken before under maintenance is not the start's usual dose (round-9 M2: not used as the basis)."""
    return new_start and spec.new_start_min_mg_per_kg is not None


def size_basis(facts: ClinicalFacts, order: MedicationFact, drug: str, weight_days: int,
               indication_how: tuple[str, str] | None = None) -> dict:
    """The normal (reference) daily dose for this patient and how it was found: mg/m² x body surface area
    for a thiopurine in oncology (ALL), mg/kg x weight otherwise, else the ordered dose.
    ``indication_how``: ``indication(order, indication_records(facts))`` when the caller has it."""
    dosing = load().dosing
    ind, how = indication_how or indication(order, indication_records(facts))
    onc = dosing.oncology.get(drug) if dosing.indications[ind].oncology else None
    w = usable_weight(facts, weight_days)
    recorded = recent(facts.heights, facts.today, dosing.general.height_max_age_days)
    h = recorded if recorded is not None and plausible_height(recorded.value) else None
    malignancy = drug in dosing.indications[ind].malignancy_drugs  # ALL, AML: CPIC malignancy advice
    out: dict[str, Any] = {"indication": ind, "indication_how": how, "oncology": onc is not None, "malignancy": malignancy,
           "weight": w.value if w else None,
           "weight_date": w.when.date().isoformat() if w and w.when else "", "height": h.value if h else None,
           "bsa": None, "kind": "ordered", "standard": None, "reference_mg": None, "height_missing": False,
           "height_implausible": recorded.value if recorded is not None and h is None else None}
    if onc is not None:
        out["standard"] = onc.standard_mg_per_m2
        if w is not None and h is not None:
            bsa = mosteller(h.value, w.value)
            out.update(bsa=bsa, kind="m2", reference_mg=onc.standard_mg_per_m2 * bsa)
        else:
            out["height_missing"] = h is None
            if w is not None and onc.max_mg_per_kg_by_weight:
                # round-6 M3: no body surface area, but a weight: the label's own per-kg form of the dose
                # (mercaptopurine 1.5-2.5 mg/kg = 50-75 mg/m2; its top, as 75 mg/m2 is the normal start), never
                # an assumed body surface area (no mg/m2 figure is computed without a height)
                out.update(kind="kg_label", per_kg=onc.max_mg_per_kg_by_weight,
                           reference_mg=onc.max_mg_per_kg_by_weight * w.value)
    else:
        # the indication's own normal dose per kg (thioguanine in AML: Tabloid label), else the drug's (pgx.toml)
        spec = dosing.indications[ind]
        per_kg = load().pgx.drugs[drug].standard_mg_per_kg_day or \
            (spec.standard_mg_per_kg_day if drug in spec.drugs else None)
        out["standard"] = per_kg
        if w is not None and per_kg:
            out.update(kind="kg", reference_mg=per_kg * w.value)
            out.update(_usual_for_indication(facts, order, drug, ind, per_kg, w.value))
    if onc is not None and out["reference_mg"] is None:
        # round-6 M3: a mg/m2 dose with no body surface area and no per-kg label figure for the weight: no normal
        # dose is computed (never an assumed body surface area); the cards say the height (and weight) is needed
        out.update(kind="no_size")
        return out
    if out["reference_mg"] is None and out["standard"]:
        # no usable size: the usual dose of a small reference adult (dosing.toml size_missing_reference_*),
        # never the ordered dose (a reduction from the ordered dose would cut an order already reduced again)
        general = dosing.general
        size = general.size_missing_reference_m2 if onc is not None else general.size_missing_reference_kg
        out.update(kind="reference_adult", reference_size=size, reference_mg=out["standard"] * size)
        if onc is None:
            # round-18 M3: the indication's own normal dose per kg (renal homotransplantation, a recent transplant:
            # the label's 3 mg/kg/day initially) x the reference adult, as with a weight; never the ordered dose or
            # a dose taken before (an order is not placed in the usual range of a weight the patient may not have)
            usual = _usual_for_indication(facts, order, drug, ind, out["standard"], size)
            if usual:
                usual.update(reference_mg=usual["normal_mg"], from_order=False)
                for key in ("from_established", "established_ref", "established_status", "established_mg",
                            "established_below_mg"):
                    usual.pop(key, None)
                out.update(usual)
    if out["reference_mg"] is None and order.daily_dose is not None:
        out["reference_mg"] = order.daily_dose.mg
    return out


# ------------------------------------------------------------------ age (populations, the start regimen)

def _age(facts: ClinicalFacts) -> int | None:
    if facts.patient is None or facts.patient.birth_date is None:
        return None
    b, t = facts.patient.birth_date, facts.today
    return t.year - b.year - ((t.month, t.day) < (b.month, b.day))


def age_years(facts: ClinicalFacts) -> int | None:
    """The patient's age in whole years today, or None without a birth date."""
    return _age(facts)


def is_child(facts: ClinicalFacts) -> bool:
    age = _age(facts)
    return age is not None and age < load().populations.children.age_below
