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
from rules.findings import SEVERITY, CancelOrder, ChangeDose, OrderTest
from rules.knowledge_base import load

from . import r4
from .dose_suggestion import DoseShape, shape
from .wording import Rendered, label, merged_summary, phrase, regimen_text, render

RULE_SYSTEM = "https://github.com/azathioprine-cds/rules"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
EXTENSION = "azathioprine-cds"

log = logging.getLogger("aza_cds.cards")

# a suggestion whose label template fails at run time keeps its action, under one of these (catalogue [phrases])
_FALLBACK_LABELS = {ChangeDose: "label_change_dose", CancelOrder: "label_cancel", OrderTest: "label_order_test"}


def override_reasons(rule_id: str) -> list[dict]:
    cat = catalogue()
    return [{"system": cat.override_system, "code": c, "display": cat.override_reasons[c]}
            for c in cat[rule_id].override_reasons]


def all_override_reasons() -> list[dict]:
    """Every code a card may offer (the report names them); read when asked, never at import."""
    cat = catalogue()
    return [{"system": cat.override_system, "code": c, "display": d} for c, d in cat.override_reasons.items()]


def render_cards(findings: list[Finding], *, drafts: dict[str, dict], patient_id: str | None,
                 today: date, max_info_cards: int = 1, guideline: str = "cpic",
                 app: AppLink | None = None) -> list[dict]:
    """One card per finding, most severe first; info cards beyond ``max_info_cards`` are merged into
    the last info card (never dropped: a check that could not be done, age, pregnancy... stay). Among info
    cards a data gap comes after the clinical notes (``_rank``): a merged card leads with a clinical note."""
    ordered = sorted(findings, key=_rank)
    keep = max(1, max_info_cards)
    to_merge = [f for f in ordered if _indicator(f) == "info"][keep - 1:]
    merging = {id(f) for f in to_merge} if len(to_merge) > 1 else set()  # only these need the shortest summary
    memo: dict = {}  # this answer's findings share their order's dose-plan line
    rendered = [(f, render(f, guideline, shortest=id(f) in merging, memo=memo)) for f in ordered]
    main = [(f, r) for f, r in rendered if r.indicator != "info"]
    infos = [(f, r) for f, r in rendered if r.indicator == "info"]
    kw: dict[str, Any] = {"drafts": drafts, "patient_id": patient_id, "today": today, "guideline": guideline,
                          "version": knowledge_version(), "app": app}
    cards = [card(f, r, **kw) for f, r in main]
    cards += [card(f, r, **kw) for f, r in infos[:keep - 1]]
    rest = infos[keep - 1:]
    if len(rest) == 1:
        cards.append(card(*rest[0], **kw))
    elif rest:
        cards.append(merged_card(rest, **kw))
    return cards


# findings that say a check could not be done (which data, why): among info cards they come after the clinical
# notes, so that a merged info card leads with a clinical finding, never with "some data could not be read"
GAP_RULES = frozenset({"data-incomplete", "record-truncated"})


def _rank(f: Finding) -> tuple[int, bool, int]:
    """Most severe first; among info cards, clinical notes before data gaps; then the catalogue's priority."""
    indicator = _indicator(f)
    return -SEVERITY[indicator], indicator == "info" and f.rule_id in GAP_RULES, catalogue()[f.rule_id].priority


def _indicator(f: Finding) -> str:
    return f.indicator or catalogue()[f.rule_id].indicator


def merged_card(items: list[tuple[Finding, Rendered]], **kw) -> dict:
    first, r0 = items[0]
    detail = "\n\n".join(f"**{r.title}**: {r.summary}\n\n{r.detail}" for _, r in items)
    shorts = [r.short or r.summary for _, r in items]  # rendered with shortest=True: short is set
    merged = Rendered(r0.rule_id, r0.title, "info", merged_summary(shorts), detail, shorts[0])
    extra = Finding(first.rule_id, first.order_ref, first.values, [a for f, _ in items for a in f.actions],
                    sources=tuple(k for f, _ in items for k in sources_of(f)), drug=first.drug)
    out = card(extra, merged, **kw)
    out["extension"][EXTENSION]["mergedRuleIds"] = [f.rule_id for f, _ in items]
    app = kw.get("app")
    if app is not None:
        out["links"][-1] = app.link([f.rule_id for f, _ in items], first.order_ref)
    return out


def card(f: Finding, r: Rendered, *, drafts: dict[str, dict], patient_id: str | None, today: date,
         guideline: str = "cpic", version: str | None = None, app: AppLink | None = None) -> dict:
    """One card; ``version``: the knowledge version (``rules.knowledge_version()``, found once per answer)."""
    kb = load()
    keys = sources_of(f)
    profile = guideline_source(guideline)
    if profile in f.sources and profile in keys:  # the profile's guideline set this card's dose: cite it first
        keys = [profile, *(k for k in keys if k != profile)]
    main = kb.source(keys[0])
    version = version or knowledge_version()
    out: dict = {
        "uuid": new_uuid(),
        "summary": r.summary,
        "indicator": r.indicator,
        "detail": r.detail + _footer(f.rule_id, keys, version, guideline),
        "source": {
            "label": main.label,
            "topic": {"system": RULE_SYSTEM, "code": f.rule_id, "display": r.title},
        },
        "extension": {EXTENSION: {"ruleId": f.rule_id, "knowledgeVersion": version, "guideline": guideline}},
    }

    if main.url:
        out["source"]["url"] = main.url
    links, seen = [], set()
    for key in keys:
        s = kb.source(key)
        if s.url and s.url not in seen:
            seen.add(s.url)
            links.append({"label": s.label, "url": s.url, "type": "absolute"})
    if app is not None:
        links.append(app.link([f.rule_id], f.order_ref))
    if links:
        out["links"] = links
    made = [(a, s) for a, s in ((a, _suggestion(f, a, drafts, patient_id, today, guideline)) for a in f.actions) if s]
    suggestions = [s for _, s in made]
    if suggestions:
        # the first suggestion that may be recommended (cancelling allopurinol is only ever an option)
        first = next((s for a, s in made if getattr(a, "recommended", True)), None)
        if first is not None:
            first["isRecommended"] = True
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
        # the JSON object {"patient", "order", "findings", "draftOrders"}: the draft orders are the same on every
        # card of the answer, so they are encoded once (``_drafts_json``) and written after the card's own keys
        head = json.dumps({"patient": self.patient_id, "order": order_ref, "findings": rule_ids}, separators=(",", ":"))
        return {"label": catalogue().app_link_label, "url": self.launch_url, "type": "smart",
                "appContext": f'{head[:-1]},"draftOrders":{self._drafts_json}}}'}

    @cached_property
    def _drafts_json(self) -> str:
        return json.dumps([_draft_for_app(r) for r in self.drafts if isinstance(r, dict)], separators=(",", ":"))


def _draft_for_app(resource: dict) -> dict:
    """What the app needs of a draft order to evaluate it again: the drug, the dose, the reason."""
    keep = ("resourceType", "id", "status", "intent", "medicationCodeableConcept", "medicationReference",
            "dosageInstruction", "reasonCode", "authoredOn", "subject", "vaccineCode", "priorPrescription")
    return {k: resource[k] for k in keep if k in resource}


def new_uuid() -> str:
    return str(uuid.uuid4())


def _footer(rule_id: str, keys: list[str], version: str, guideline: str) -> str:
    return _footer_text(rule_id, tuple(keys), version, guideline)


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
        return {"what": action.what}
    return {"loinc": action.loinc, "display": action.display, "within_days": action.within_days}


def _suggestion(f: Finding, action, drafts: dict[str, dict], patient_id: str | None, today: date,
                guideline: str) -> dict | None:
    words: dict = {}  # the regimen in words, once for the label and the Dosage.text
    if isinstance(action, ChangeDose):
        draft = drafts.get(action.order_ref)
        if draft is None:
            return None  # not a draft of this call (an active order): no update is offered, the card says so
        shaped = _shape(action, draft)  # as it will be ordered (form and schedule kept): for the label and the order
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
        dosages = (shaped or _shape(action, draft)).dosages
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
