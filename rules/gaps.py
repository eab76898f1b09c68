"""Which data a hook call needs, and the findings about data that could not be had: a check that could
not be done is never dropped (``data_gap_findings``), a record read only in part is said (``truncation_findings``)."""
from __future__ import annotations

from dataclasses import replace

from fhir_mappers.facts import ClinicalFacts, MedicationFact
from fhir_mappers.fhirjson import clip

from .catalogue import catalogue as _catalogue
from .common import is_new_start, thiopurine_of
from .context import CallContext, context_of
from .findings import Finding, Indicator
from .interactions import interacting_ingredients, is_live_vaccine
from .knowledge_base import load
from .monitoring import absent_count_gaps, neutrophil_gap
from .plausibility import FUTURE_WHY_TAIL, SERIOUS_FUTURE


def _concerns(o: MedicationFact) -> bool:
    return bool(thiopurine_of(o) or o.ingredients & interacting_ingredients() or is_live_vaccine(o))


# Data groups an order needs when it is not a thiopurine itself but may interact with one
# (warfarin, allopurinol, a live vaccine...): whether a thiopurine is active, or was lately.
INTERACTION_ONLY_GROUPS = frozenset({"patient", "medications", "past_medications"})
# an allopurinol (xanthine oxidase inhibitor) order also reads weight, height and conditions: its card states the
# active thiopurine's dose, one-quarter to one-third of the usual dose for the indication and body size (never a
# 50-kg reference adult's when the weight is on record; audit round 2, allopurinol-new-order-on-aza-150)
# round-12 H1: and the TPMT / NUDT15 results: the active thiopurine's one dose plan takes its PGx band too (a poor
# metabolizer is told the alternative, not a reduced dose), as when the thiopurine is the draft (rules.pgx
# active_order_pgx_findings)
XOI_DOSE_GROUPS = frozenset({"weight", "height", "conditions", "pgx"})


def groups_needed(orders: list[MedicationFact], keys) -> set[str]:
    """The data groups (prefetch keys) this hook call needs: an interacting drug only asks whether a thiopurine
    is active; the immunization history matters for a thiopurine order, recently stopped thiopurines for a
    live vaccine order, and the renewed order for a thiopurine renewal (round-18 H1)."""
    keys = set(keys)
    if not thiopurine_ordered(orders):
        allowed = set(INTERACTION_ONLY_GROUPS)
        if any(o.selected and is_live_vaccine(o) for o in orders):
            # zoster vaccine live: the active thiopurine's dose per kg (weight; a child's window: patient;
            # leukaemia: conditions) decides low- or high-level immunosuppression (rules.interactions)
            allowed |= {"weight", "patient", "conditions"}
        # round-14 m4: a drug whose combination is standard practice in some indications (co-trimoxazole in ALL:
        # interactions.toml routine_in) needs the conditions to tell that indication from the others
        routine = {i for spec in load().interactions.others.values() if spec.routine_in for i in spec.ingredients}
        if any(o.selected and o.ingredients & routine for o in orders):
            allowed.add("conditions")
        # round-15 M5: ... and, when only a prophylactic dose is routine (routine_max_mg_per_m2_day for a child), the
        # age, height and weight to compare the order's dose with it
        per_m2 = {i for spec in load().interactions.others.values()
                  if spec.routine_in and spec.routine_max_mg_per_m2_day is not None for i in spec.ingredients}
        if any(o.selected and o.ingredients & per_m2 for o in orders):
            allowed |= {"patient", "weight", "height"}
        xoi = set(load().interactions.xanthine_oxidase_inhibitors.ingredients)
        if any(o.selected and o.ingredients & xoi for o in orders):
            allowed |= XOI_DOSE_GROUPS
        keys &= allowed
    # round-18 H1: a thiopurine draft that names the order it renews (priorPrescription / basedOn) reads the stopped
    # and completed orders: the renewed order is often completed when the renewal is signed, and is still therapy
    # taken (rules.evaluate.without_replaced)
    if thiopurine_ordered(orders):
        if not any(o.selected and o.replaces and thiopurine_of(o) for o in orders):
            keys.discard("past_medications")
    elif not any(o.selected and is_live_vaccine(o) for o in orders):
        keys.discard("past_medications")
    return keys


def thiopurine_ordered(orders: list[MedicationFact]) -> bool:
    return any(o.selected and thiopurine_of(o) for o in orders)


def needs_data(orders: list[MedicationFact]) -> bool:
    """True when a selected draft order is a thiopurine or a drug/vaccine that interacts with one."""
    return any(o.selected and _concerns(o) for o in orders)


# Data groups whose absence leaves a safety check undone (the catalogue words which check).
_GROUPS = ("medications", "labs", "weight", "height", "conditions", "allergies", "pregnancy", "patient", "immunizations",
           "past_medications")
# conditions: without them the indication (dose range), renal impairment and pregnancy checks are undone
_SERIOUS_GROUPS = {"medications", "labs", "weight", "patient", "allergies", "conditions"}
# eGFR: an unreadable one may hide renal impairment (a dose reduction)
# ALT / AST: the liver-test check (withhold); 6-TGN / 6-MMP: a result that exists and cannot be read hides a
# toxicity finding (a safety check that could not be done is never info)
# haemoglobin: severe anaemia is a severe-cytopenia finding (CTCAE v5 grade 3)
# other_patient: data sent about another patient, set aside (round-8 H1): this patient's data were not sent
# other_patient_order: the order being signed names another patient (round-9 M4): it was checked; confirm the patient
_OTHER_PATIENT = ("other_patient", "other_patient_order")
# unconfirmed_patient: data whose subject could not be confirmed to be this patient, set aside (round-10 H1)
_SET_ASIDE = (*_OTHER_PATIENT, "unconfirmed_patient")
_SERIOUS_GAPS = {"other_patient", "other_patient_order", "unconfirmed_patient", "tpmt_activity", "neutrophils", "wbc", "platelets", "lymphocytes", "hemoglobin", "weight",
                 "weight_conflict", "egfr", "alt", "ast", "alp", "bilirubin", "tgn", "mmp"}
# round-14 H2: results dated after today, set aside (rules.plausibility.future_dated): their keys start "future_"
_SERIOUS_GAPS |= SERIOUS_FUTURE
_SENT_IN_SUMMARY = 24  # characters of a value as sent that a summary quotes ("eGFR '<15'")


def truncation_findings(facts: ClinicalFacts) -> list[Finding]:
    """A record longer than the per-key cap was read only in part: one finding naming each such record
    (never silently shortened), for a thiopurine order and for an interacting drug alike."""
    cut = [{"key": g.key, "entries": g.truncated_from, "read": g.truncated_to} for g in facts.gaps
           if g.truncated_from is not None]
    if not cut or not needs_data(facts.orders):
        return []
    order = next((o for o in facts.orders if o.selected and thiopurine_of(o)), None)
    return [Finding("record-truncated", order.ref if order else "", {"records": cut},
                    drug=(thiopurine_of(order) or "") if order else "")]


def bounds_quoted(findings: list[Finding]) -> frozenset[tuple[str, str]]:
    """(analyte, value as sent) of every result read only as an upper bound ("<0.5" with no unit) that a finding
    rests on and quotes (the severe-cytopenia card: "at most 0.5 ×10⁹/L in any unit"; round-11 m6)."""
    return frozenset((r["analyte"], r.get("as_sent") or "") for f in findings for r in f.values.get("results") or ()
                     if isinstance(r, dict) and r.get("upper_bound") is not None)


def future_genes_named(findings: list[Finding]) -> frozenset[str]:
    """The genes whose TPMT/NUDT15 result dated after today a PGx card already names, with its value and date
    (the ``future_dated`` problem of its results list, ``future_results``): round-17 m2, one card per result."""
    genes = {q.get("gene", "") for f in findings for q in f.values.get("future_results") or ()}
    genes |= {q.get("gene", "") for f in findings for g in f.values.get("genes") or () if isinstance(g, dict)
              for q in g.get("problems") or () if isinstance(q, dict) and q.get("code") == "future_dated"}
    return frozenset(genes - {""})


def data_gap_findings(facts: ClinicalFacts, ctx: CallContext | None = None,
                      quoted: frozenset[tuple[str, str]] = frozenset(),
                      future_genes: frozenset[str] = frozenset(),
                      raised: frozenset[tuple[str, str]] = frozenset()) -> list[Finding]:
    """One finding naming the data that could not be obtained or read, and what to check by hand.
    ``quoted``: results read only as an upper bound that a card already rests on and quotes (``bounds_quoted``):
    used, so not named again as unread (round-11 m6); a bound no card used is still named.
    ``future_genes``: genes whose result dated after today a PGx card names (``future_genes_named``): that card is
    the one card about it (round-17 m2), not named here again.
    ``raised``: (key, date) of results dated after today that raised a card (``rules.future.raised_gaps``): named as
    used only to raise that concern, never "not used" beside it (round-19 m5)."""
    if (quoted or future_genes) and facts.gaps:
        kept = [g for g in facts.gaps if not (g.bound_only and (g.key, g.sent) in quoted)
                and not (g.key == "future_genotype" and g.what.split(" ")[0] in future_genes)]
        if len(kept) != len(facts.gaps):
            facts = replace(facts, gaps=kept)
    # a blood count without an absolute neutrophil count, sent or calculable (round-5 H5): a rule's gap
    anc_gap = neutrophil_gap(facts) if facts.labs else None
    # blood counts sent with dataAbsentReason or cancelled (round-8 H2): quoted, never silently dropped
    absent_gaps = absent_count_gaps(facts) if facts.absent_results else []
    if not facts.unavailable and not facts.gaps and anc_gap is None and not absent_gaps:
        return []  # every group obtained and every value read: nothing to name (the common, complete record)
    ctx = context_of(facts, ctx)
    orders = ctx.thiopurine_orders
    if not orders:
        vaccine = next((o for o in facts.orders if o.selected and is_live_vaccine(o)), None)
        # a live vaccine with a thiopurine is a contraindicated combination: the skipped check is a warning
        skipped: Indicator = "warning" if vaccine is not None else "info"
        if "medications" in facts.unavailable and needs_data(facts.orders):
            other = vaccine or next(o for o in facts.orders if o.selected and _concerns(o))
            return [Finding("data-incomplete", "", {"variant": "interaction_only", "order": other.display[:60],
                                                    "groups": [], "gaps": []}, indicator=skipped)]
        set_aside = [g for g in facts.gaps if g.key in _SET_ASIDE]
        if set_aside and needs_data(facts.orders):
            # an interacting drug or a live vaccine judged on a record that held another patient's data (round-8 H1)
            # or ordered for another patient (round-9 M4)
            gaps = [{"what": g.what, "why": g.why, "key": g.key, "outcome": "", "sent": g.sent, "bound_only": False}
                    for g in set_aside]
            params = {"variant": "thiopurine", "groups": [], "gaps": gaps, "names": _gap_names([], gaps),
                      "other_patient": "only" if all(g["key"] in _OTHER_PATIENT for g in gaps) else
                      "unconfirmed" if all(g["key"] == "unconfirmed_patient" for g in gaps) else "some"}
            return [Finding("data-incomplete", "", _order_patient(params, gaps), indicator="warning")]
        if vaccine is not None and "past_medications" in facts.unavailable \
                and not any(thiopurine_of(m) for m in facts.active_medications):
            gap = next((g for g in facts.gaps if g.key == "past_medications"), None)
            group = {"key": "past_medications", "why": gap.why if gap else "", "outcome": gap.outcome if gap else ""}
            return [Finding("data-incomplete", "", {"variant": "thiopurine", "gaps": [], "groups": [group]},
                            indicator=skipped)]
        return []
    why_by_key = {g.key: g.why for g in facts.gaps}
    outcome_by_key = {g.key: g.outcome for g in facts.gaps if g.outcome}
    relevant = set(_GROUPS) - {"immunizations", "past_medications", "height"}
    if any(load().dosing.indications[ctx.indication(o)[0]].oncology for o, _ in orders):
        relevant.add("height")  # dosing by body surface area (oncology)
    if any(is_new_start(facts, o, d) for o, d in orders):
        relevant.add("immunizations")  # a thiopurine start: live vaccines in the last weeks matter
    groups = [{"key": g, "why": why_by_key.get(g, ""), "outcome": outcome_by_key.get(g, "")}
              for g in _GROUPS if g in facts.unavailable and g in relevant]
    gaps = [{"what": g.what, "why": g.why, "key": g.key, "outcome": g.outcome, "sent": g.sent,
             "bound_only": g.bound_only} for g in facts.gaps
            if not (g.key == "pgx" or g.key in _GROUPS and g.key in facts.unavailable or g.truncated_from is not None)]
    for g in gaps:
        key, sent = str(g["key"]), str(g["sent"])
        if _future(g) and ((key, sent) in raised or (key, sent[:10]) in raised):
            g.update(raised=True, why=str(g["why"]).removesuffix(FUTURE_WHY_TAIL))
    if anc_gap is not None:
        gaps.append(anc_gap)
    gaps += absent_gaps
    serious = bool(facts.unavailable & _SERIOUS_GROUPS) or any(g["key"] in _SERIOUS_GAPS for g in gaps)
    gaps = list({_gap_key(g): g for g in gaps}.values())  # after: a merge never softens
    if not groups and not gaps:
        return []
    order, drug = orders[0]
    params = {"variant": "thiopurine", "groups": groups, "gaps": gaps, "names": _gap_names(groups, gaps)}
    if any(g["key"] in _OTHER_PATIENT for g in gaps):  # the summary says data of another patient were set aside
        params["other_patient"] = "only" if all(g["key"] in _OTHER_PATIENT for g in gaps) and not groups else "some"
    elif gaps and not groups and all(g["key"] == "unconfirmed_patient" for g in gaps):
        params["other_patient"] = "unconfirmed"  # round-10 H1: the summary says the data could not be tied to him
    if any(_future(g) for g in gaps):  # round-14 H2: the summary says results dated after today were not used
        params["future"] = "only" if all(_future(g) for g in gaps) and not groups else "some"
        if params["future"] == "only" and any(g.get("raised") for g in gaps):
            # round-19 m5: a result that raised a card was used for that: the summary does not say "not used"
            params["future"] = "raised" if all(g.get("raised") for g in gaps) else "part_raised"
    return [Finding("data-incomplete", order.ref, _order_patient(params, gaps), indicator="warning" if serious else "info",
                    drug=drug)]


def _gap_key(g: dict) -> tuple:
    """What makes two gaps the same (the card names it once): what, why (a rule's gap: its problem's code and
    values, which the catalogue words) and how a query ended."""
    problem = g.get("problem")
    return g["what"], g["why"], g["outcome"], tuple(sorted(problem.items())) if problem else ()


def _order_patient(params: dict, gaps: list[dict]) -> dict:
    """When the order being signed names another patient (round-9 M4), the summary says so and asks to confirm the
    patient (the order was checked as written): ``order_patient`` (the part of its reference that names the
    patient, as the summary quotes it) and ``also`` (how many other things the card names)."""
    order_gap = next((g for g in gaps if g["key"] == "other_patient_order"), None)
    if order_gap is not None:
        params["order_patient"] = _summary_quote(order_gap)
        params["also"] = max(len(params.get("names", [])) - 1, 0)
    return params


def _summary_quote(gap: dict) -> str:
    """A value as sent, as a summary quotes it: its start; for a reference naming another patient its end (the part
    that names the patient: round-9 m1)."""
    sent = gap.get("sent") or ""
    if len(sent) <= _SENT_IN_SUMMARY:
        return sent
    return "…" + sent[-(_SENT_IN_SUMMARY - 1):] if gap.get("key") in _OTHER_PATIENT else clip(sent, _SENT_IN_SUMMARY)


def _future(g: dict) -> bool:
    """A result dated after today, set aside (round-14 H2, ``rules.plausibility.future_dated``)."""
    return str(g.get("key", "")).startswith("future_")


def _gap_names(groups: list[dict], gaps: list[dict]) -> list[str]:
    """What the summary names, the safety checks first (labs, weight, ...; CBC, eGFR, TPMT activity), each
    result quoted as it was sent ("eGFR '<15'"), once each: a summary too short for all names the first.
    Group names: catalogue.toml [groups] (the one table of group labels)."""
    group_names = _catalogue().raw.get("groups", {})
    named = [(g["key"] not in _SERIOUS_GROUPS, group_names.get(g["key"], {}).get("what", g["key"])) for g in groups]
    future: dict[str, list[str]] = {}  # round-14 H2: results dated after today, named once per date as sent
    for g in gaps:
        if _future(g):
            future.setdefault(g["sent"], []).append(g["what"].split(" dated ")[0])
    for when, whats in future.items():
        named.append((not any(g["key"] in _SERIOUS_GAPS for g in gaps if _future(g) and g["sent"] == when),
                      f"{', '.join(dict.fromkeys(whats))} dated {when} (after today)"))
    for g in gaps:
        if _future(g):
            continue
        sent = _summary_quote(g)
        named.append((g["key"] not in _SERIOUS_GAPS, f"{g['what']} '{sent}'" if sent else g["what"]))
    return list(dict.fromkeys(name for _, name in sorted(named, key=lambda n: n[0])))
