"""Findings → CDS Hooks 2.0 cards, rendered once, after consolidation; abstract actions → FHIR resources.

Wording comes from the rule catalogue (``hooks/wording.py``); this module only
assembles cards: sources and links, suggestions, override reasons, the info-card
cap (which merges, never drops) and the guideline / knowledge version in every
card's extension. ``suggestion_resource`` is the one place suggested FHIR
resources are built.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property, lru_cache
from typing import Any

import jinja2

from rules import Finding, knowledge_version
from rules.catalogue import catalogue, guideline_source, sources_of
from rules.common import short_ref
from rules.findings import SEVERITY, CancelOrder, ChangeDose, OrderTest
from rules.knowledge_base import load

from . import r4
from .bounds import MAX_CARDS, merged_of
from .dose_suggestion import DoseShape, shape
from .wording import Rendered, asks_action, label, merged_summary, phrase, regimen_text, render, render_summary

RULE_SYSTEM = "https://github.com/azathioprine-cds/rules"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
EXTENSION = "azathioprine-cds"

log = logging.getLogger("aza_cds.cards")

# a suggestion whose label template fails at run time keeps its action, under one of these (catalogue [phrases])
_FALLBACK_LABELS = {ChangeDose: "label_change_dose", CancelOrder: "label_cancel", OrderTest: "label_order_test"}


def override_reasons(rule_id: str) -> list[dict]:
    return [{"system": system, "code": code, "display": display} for system, code, display in _override_reasons(rule_id)]


@lru_cache(maxsize=None)  # catalogue data: one tuple per rule id
def _override_reasons(rule_id: str) -> tuple[tuple[str, str, str], ...]:
    cat = catalogue()
    return tuple((cat.override_system, c, cat.override_reasons[c]) for c in cat[rule_id].override_reasons)


def all_override_reasons() -> list[dict]:
    """Every code a card may offer (the report names them); read when asked, never at import."""
    cat = catalogue()
    return [{"system": cat.override_system, "code": c, "display": d} for c, d in cat.override_reasons.items()]


def render_cards(findings: list[Finding], *, drafts: dict[str, dict], patient_id: str | None,
                 today: date, max_info_cards: int = 1, guideline: str = "cpic",
                 app: AppLink | None = None, max_cards: int = MAX_CARDS) -> list[dict]:
    """One card per finding, most severe first; info cards beyond ``max_info_cards`` are merged into
    the last info card (never dropped: a check that could not be done, age, pregnancy... stay). Among info
    cards a data gap comes after the clinical notes (``_rank``): a merged card leads with a clinical note; a note
    that asks the prescriber to act (check by hand, could not be checked) comes before those that do not
    (``_acting_first``), so the merged card's summary names it.
    Over ``max_cards`` cards, the cards of one rule and indicator are merged, as ``hooks.bounds.merge_cards``
    merges them (which then leaves the answer as it is).

    What is shown is decided first, from the findings as values (order, indicator, the info-card limit, the
    merge above ``max_cards``); only then is it worded: a card merged away above ``max_cards`` gives only its
    summary (no detail, suggestions, links or footer are built for it), and the first card of such a merge
    offers no suggestions, so none are built for it."""
    ordered = sorted(findings, key=_rank)
    keep = max(1, max_info_cards)
    main = [f for f in ordered if _indicator(f) != "info"]
    infos = _acting_first([f for f in ordered if _indicator(f) == "info"])
    # one entry per card, in the answer's order: its findings (several: the merged info card)
    shown = [[f] for f in main] + [[f] for f in infos[:keep - 1]]
    if infos[keep - 1:]:
        shown.append(infos[keep - 1:])
    memo: dict = {}  # this answer's findings share their order's dose-plan line
    kw: dict[str, Any] = {"drafts": drafts, "patient_id": patient_id, "today": today, "guideline": guideline,
                          "version": knowledge_version(), "app": app}
    if len(shown) <= max_cards:
        return [_card_of(items, memo, kw) for items in shown]
    groups: dict[tuple[str, str], list[list[Finding]]] = {}  # as hooks.bounds.merge_cards groups the cards
    for items in shown:
        groups.setdefault((items[0].rule_id, _indicator(items[0])), []).append(items)
    cards = []
    for group in groups.values():
        if len(group) == 1:
            cards.append(_card_of(group[0], memo, kw))
            continue
        first = _card_of(group[0], memo, kw, suggest=False)
        cards.append(merged_of(first, [first["summary"], *(_summary_of(items, kw["guideline"]) for items in group[1:])]))
    return cards


def _card_of(items: list[Finding], memo: dict, kw: dict[str, Any], suggest: bool = True) -> dict:
    """The card of one finding, or the merged info card of several."""
    guideline = kw["guideline"]
    if len(items) == 1:
        return card(items[0], render(items[0], guideline, shortest=False, memo=memo), suggest=suggest, **kw)
    return merged_card([(f, render(f, guideline, shortest=True, memo=memo)) for f in items], suggest=suggest, **kw)


def _summary_of(items: list[Finding], guideline: str) -> str:
    """The summary of a card that a merge above ``max_cards`` lists by its summary only."""
    if len(items) == 1:
        return render_summary(items[0], guideline, shortest=False).summary
    shorts = []
    for f in items:
        r = render_summary(f, guideline, shortest=True)
        shorts.append(r.short or r.summary)
    return merged_summary(shorts)


# findings that say a check could not be done (which data, why): among info cards they come after the clinical
# notes, so that a merged info card leads with a clinical finding, never with "some data could not be read"
GAP_RULES = frozenset({"data-incomplete", "record-truncated"})


def _rank(f: Finding) -> tuple[int, bool, int]:
    """Most severe first; among info cards, clinical notes before data gaps; then the catalogue's priority."""
    indicator = _indicator(f)
    return -SEVERITY[indicator], indicator == "info" and f.rule_id in GAP_RULES, catalogue()[f.rule_id].priority


def _acting_first(infos: list[Finding]) -> list[Finding]:
    """Info findings in ``_rank`` order, then those that ask the prescriber to act (catalogue ``asks_action``: check
    by hand, could not be checked) before those that do not (round-8 m1: "indication not recognised; check the start
    dose by hand" was hidden behind "patient aged 66: start low"). The lead stays a clinical note when there is one
    (a data gap never leads): an acting clinical note leads; after the lead, every acting note (data gaps included)
    comes before the notes that only inform, so the merged summary names it first."""
    if len(infos) < 2:
        return infos
    acting = {id(f): asks_action(f) for f in infos}
    clinical = [f for f in infos if f.rule_id not in GAP_RULES]
    lead = next((f for f in clinical if acting[id(f)]), clinical[0] if clinical else infos[0])
    rest = [f for f in infos if f is not lead]
    return [lead, *(f for f in rest if acting[id(f)]), *(f for f in rest if not acting[id(f)])]


def _indicator(f: Finding) -> str:
    return f.indicator or catalogue()[f.rule_id].indicator


def merged_card(items: list[tuple[Finding, Rendered]], **kw) -> dict:
    first, r0 = items[0]
    detail = "\n\n".join(f"**{r.title}**: {r.summary}\n\n{r.detail}" for _, r in items)
    shorts = [r.short or r.summary for _, r in items]  # rendered with shortest=True: short is set
    merged = Rendered(r0.rule_id, r0.title, "info", merged_summary(shorts), detail, shorts[0])
    extra = Finding(first.rule_id, first.order_ref, first.values, [a for f, _ in items for a in f.actions],
                    sources=tuple(k for f, _ in items for k in sources_of(f)), drug=first.drug)
    # round-18 m1: each suggestion is labelled by the rule that asked for it (the bilirubin test of the AIH start
    # check under a merged card led by a PGx note was labelled by the PGx rule's labels: "Order the test")
    out = card(extra, merged, owners={id(a): f for f, _ in items for a in f.actions}, **kw)
    out["extension"][EXTENSION]["mergedRuleIds"] = [f.rule_id for f, _ in items]
    app = kw.get("app")
    if app is not None:
        out["links"][-1] = app.link([f.rule_id for f, _ in items], first.order_ref)
    return out


@dataclass(frozen=True)
class _Frame:
    """What a card takes from the knowledge alone: the same for every card of one rule, source keys, guideline
    and knowledge version (``_frame``: found once)."""

    label: str  # source.label: the primary source's
    url: str | None  # source.url
    links: tuple[tuple[str, str], ...]  # (label, url) of each source with a url, once per url
    footer: str  # the detail's sources and version lines


@lru_cache(maxsize=1024)  # knowledge data only: a rule id, source keys, the knowledge version, the guideline profile
def _frame(rule_id: str, keys: tuple[str, ...], version: str, guideline: str) -> _Frame:
    kb = load()
    main = kb.source(keys[0])
    links, seen = [], set()
    for key in keys:
        s = kb.source(key)
        if s.url and s.url not in seen:
            seen.add(s.url)
            links.append((s.label, s.url))
    return _Frame(main.label, main.url, tuple(links), _footer_text(rule_id, keys, version, guideline))


def card(f: Finding, r: Rendered, *, drafts: dict[str, dict], patient_id: str | None, today: date,
         guideline: str = "cpic", version: str | None = None, app: AppLink | None = None,
         suggest: bool = True, owners: dict[int, Finding] | None = None) -> dict:
    """One card; ``version``: the knowledge version (``rules.knowledge_version()``, found once per answer);
    ``suggest=False``: without suggestions (the first card of a merge above the card limit offers none);
    ``owners``: for a merged info card, the finding each action (by ``id``) came from, whose labels word it."""
    keys = sources_of(f)
    profile = guideline_source(guideline)
    if profile in f.sources and profile in keys:  # the profile's guideline set this card's dose: cite it first
        keys = [profile, *(k for k in keys if k != profile)]
    version = version or knowledge_version()
    frame = _frame(f.rule_id, tuple(keys), version, guideline)
    source: dict = {"label": frame.label, "topic": {"system": RULE_SYSTEM, "code": f.rule_id, "display": r.title}}
    out: dict = {
        "uuid": new_uuid(),
        "summary": r.summary,
        "indicator": r.indicator,
        "detail": r.detail + frame.footer,
        "source": source,
        "extension": {EXTENSION: {"ruleId": f.rule_id, "knowledgeVersion": version, "guideline": guideline}},
    }
    if frame.url:
        source["url"] = frame.url
    links = [{"label": label, "url": url, "type": "absolute"} for label, url in frame.links]
    if app is not None:
        links.append(app.link([f.rule_id], f.order_ref))
    if links:
        out["links"] = links
    if suggest and f.actions:
        made = [(a, s) for a, s in ((a, _suggestion((owners or {}).get(id(a), f), a, drafts, patient_id, today,
                                                    guideline)) for a in f.actions) if s]
        suggestions = [s for _, s in made]
        if suggestions:
            # the first suggestion that may be recommended (cancelling allopurinol is only ever an option)
            first = next((s for a, s in made if getattr(a, "recommended", True)), None)
            if first is not None:
                first["isRecommended"] = True
            for a, s in made:  # an option only (round-16 m3): said so, not left for the EHR to guess
                if not getattr(a, "recommended", True):
                    s["isRecommended"] = False
            out["suggestions"] = suggestions
            alternatives = sum(isinstance(a, (ChangeDose, CancelOrder)) for a in f.actions) > 1
            out["selectionBehavior"] = "at-most-one" if alternatives or len(suggestions) == 1 else "any"
    if r.indicator != "info":
        out["overrideReasons"] = override_reasons(f.rule_id)
    return out


@dataclass(frozen=True)
class AppLink:
    """Where the SMART app is launched from and what a card hands it: every card links to it
    (``links[].type = "smart"``); ``appContext`` (a JSON string the EHR passes to the app in its token
    response) names the card's rule ids, the order the card is about and this call's draft orders, so
    that the app runs the same rules on the same orders."""

    launch_url: str
    patient_id: str | None
    drafts: tuple[dict, ...]

    def link(self, rule_ids: list[str], order_ref: str) -> dict:
        # the JSON object {"patient", "order", "findings", "draftOrders"} as ``json.dumps(..., separators=(",", ":"))``
        # writes it: what is the same on every card of the answer (the patient, the draft orders) is encoded once
        # (``_head``, ``_drafts_json``), the card's own values in between
        context = f'{self._head}{_JSON.encode(order_ref)},"findings":{_JSON.encode(rule_ids)},"draftOrders":{self._drafts_json}}}'
        return {"label": catalogue().app_link_label, "url": self.launch_url, "type": "smart", "appContext": context}

    @cached_property
    def _head(self) -> str:
        return f'{{"patient":{_JSON.encode(self.patient_id)},"order":'

    @cached_property
    def _drafts_json(self) -> str:
        return _JSON.encode([_draft_for_app(r) for r in self.drafts if isinstance(r, dict)])


# json.dumps(x, separators=(",", ":")) builds this encoder on every call; one, built once, encodes alike
_JSON = json.JSONEncoder(separators=(",", ":"))


def _draft_for_app(resource: dict) -> dict:
    """What the app needs of a draft order to evaluate it again: the drug, the dose, the reason."""
    keep = ("resourceType", "id", "status", "intent", "medicationCodeableConcept", "medicationReference",
            "dosageInstruction", "reasonCode", "authoredOn", "subject", "vaccineCode", "priorPrescription")
    return {k: resource[k] for k in keep if k in resource}


def new_uuid() -> str:
    return str(uuid.uuid4())


@lru_cache(maxsize=512)  # a pure function of the rule, its source keys, the knowledge version and the guideline
def _footer_text(rule_id: str, keys: tuple[str, ...], version: str, guideline: str) -> str:
    kb = load()
    cites = "\n".join(f"- {kb.source(k).citation or kb.source(k).label}" for k in dict.fromkeys(keys))
    line = phrase("footer_line", rule_id=rule_id, version=version, profile=load().pgx.profiles[guideline].name)
    return f"\n\n**{phrase('footer_sources')}**\n{cites}\n\n_{line}_"


def _action_values(action, words: dict | None = None) -> dict:
    """The label's values; ``words``: where the regimen's words are kept for the suggested Dosage.text."""
    if isinstance(action, ChangeDose):
        text = (words or {}).get(action.regimen) or regimen_text(action.regimen)
        if words is not None:
            words[action.regimen] = text
        return {"regimen": text, "mg": action.daily_mg}
    if isinstance(action, CancelOrder):
        # round-19 m7: the order ("MedicationRequest/id"), for a label that names it (two orders of one drug)
        return {"what": action.what, "ref": short_ref(action.order_ref)}
    return {"loinc": action.loinc, "display": action.display, "within_days": action.within_days}


def _suggestion(f: Finding, action, drafts: dict[str, dict], patient_id: str | None, today: date,
                guideline: str) -> dict | None:
    words: dict = {}  # the regimen in words, once for the label and the Dosage.text
    if isinstance(action, ChangeDose):
        draft = drafts.get(action.order_ref)
        if draft is None:
            return None  # not a draft of this call (an active order): no update is offered, the card says so
        if action.other_product:
            return None  # round-17 H3/M8: the plan found the ordered product cannot give it (the card says which)
        shaped = _shape(action, draft)  # as it will be ordered (form and schedule kept): for the label and the order
        if shaped.other_product:
            return None  # another product is needed (the card says which): never the tablet product at that dose
        words[action.regimen] = shaped.words
    else:
        shaped = None
    text = _label(f, action, guideline, words)
    built = suggestion_resource(action, text, drafts=drafts, patient_id=patient_id, today=today, words=words,
                                shaped=shaped)
    if built is None:
        return None
    return {"uuid": new_uuid(), "label": text, "actions": [built]}


def _label(f: Finding, action, guideline: str, words: dict | None = None) -> str:
    """The suggestion's label; like ``render``, a template that fails on unforeseen values still gives
    the suggestion, under a plain fixed label (logged by rule id only)."""
    try:
        return label(f, action.label, _action_values(action, words), guideline)
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
        log.error("suggestion label failed", extra={"rule_id": f.rule_id, "error": type(exc).__name__})
        return phrase(_FALLBACK_LABELS.get(type(action), "label_other"))


def suggestion_resource(action, description: str, *, drafts: dict[str, dict], patient_id: str | None,
                        today: date, words: dict | None = None, shaped: DoseShape | None = None) -> dict | None:
    """The one place a suggestion's CDS Hooks action (and its FHIR resource) is built; ``words``: regimens
    already put in words (``regimen_text``) for this suggestion's label; ``shaped``: the ChangeDose's
    ``_shape`` of its draft, when the caller has it already (shaped once per suggestion)."""
    if isinstance(action, ChangeDose):
        draft = drafts.get(action.order_ref)
        if draft is None:
            return None
        shaped = shaped or _shape(action, draft)
        if action.other_product or shaped.other_product:
            return None  # round-17 H3: never an update writing a dose onto a product that cannot give it
        dosages = shaped.dosages
        resource = r4.updated_medication_request(draft, dosages, patient_id=patient_id)
        if resource is None:
            return None
        return {"type": "update", "description": description, "resource": resource}
    if isinstance(action, CancelOrder):
        if not action.order_ref:
            return None
        return {"type": "delete", "description": description, "resourceId": action.order_ref}
    if isinstance(action, OrderTest):
        resource = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                                      "display": "Laboratory procedure"}]}],
            "code": {"coding": [{"system": LOINC, "code": action.loinc, "display": action.display}],
                     "text": action.display},
            "authoredOn": today.isoformat(),
        }
        if patient_id:
            resource["subject"] = {"reference": f"Patient/{patient_id}"}
        if action.reason:
            resource["reasonCode"] = [{"text": action.reason}]
        if action.within_days:
            resource["occurrencePeriod"] = {"start": today.isoformat(),
                                            "end": (today + timedelta(days=action.within_days)).isoformat()}
        return {"type": "create", "description": description, "resource": resource}
    return None


def _shape(action: ChangeDose, draft: dict) -> DoseShape:
    old = next((d for d in draft.get("dosageInstruction") or [] if isinstance(d, dict)), {})
    return shape(action.regimen, draft, action.drug, route=r4.codeable_concept(old.get("route")))


def _quantity(mg: float) -> dict:
    value = int(mg) if float(mg).is_integer() else round(mg, 2)
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}
