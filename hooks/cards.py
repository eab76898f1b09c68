"""Findings → CDS Hooks 2.0 cards, abstract actions → FHIR resources."""
from __future__ import annotations

import uuid
from datetime import date, timedelta

from rules import Finding, knowledge_version
from rules.common import fmt_mg
from rules.findings import SEVERITY, CancelOrder, ChangeDose, OrderTest
from rules.knowledge_base import load

from . import r4

RULE_SYSTEM = "https://github.com/azathioprine-cds/rules"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
TIMING = {1: "once daily", 2: "twice daily", 3: "three times daily"}

# Override reasons: HL7 CDS Hooks non-adherence reason codes (CDS Hooks 3.0.0-ballot
# vocabulary, CodeSystem non-adherence-reason-codes; copied from shared/fixtures/
# hl7-cds-hooks-spec-3.0.0-ballot/vocabulary/, Apache-2.0).
_OVERRIDE_SYSTEM = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
_OVERRIDE_CODES = [
    ("risk-benefit-ratio", "Recipient assessment of risk/benefit ratio"),
    ("action-completed", "Recommended action was already completed"),
    ("indication-order-exists", "Patient has indication/order for intended action"),
    ("expert-contradicts", "Advice from expert contradicts the recommended action"),
    ("need-more-info", "Could not address recommended action due to need for more information/pending results/pending consult"),
    ("patient-ineligible", "Patient does not meet eligibility for recommended action"),
]
OVERRIDE_REASONS = [{"system": _OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in _OVERRIDE_CODES]


def render_cards(findings: list[Finding], *, drafts: dict[str, dict], patient_id: str | None,
                 today: date, max_info_cards: int = 1) -> list[dict]:
    ordered = sorted(findings, key=lambda f: (-SEVERITY[f.indicator], f.priority))
    cards, infos = [], 0
    for f in ordered:
        if f.indicator == "info":
            if infos >= max_info_cards:
                continue
            infos += 1
        cards.append(card(f, drafts=drafts, patient_id=patient_id, today=today))
    return cards


def card(f: Finding, *, drafts: dict[str, dict], patient_id: str | None, today: date) -> dict:
    kb = load()
    main = kb.source(f.sources[0])
    out: dict = {
        "uuid": str(uuid.uuid4()),
        "summary": f.summary,
        "indicator": f.indicator,
        "detail": f.detail + _footer(f),
        "source": {
            "label": main.label,
            "topic": {"system": RULE_SYSTEM, "code": f.rule_id, "display": f.title or f.rule_id},
        },
        "extension": {"azathioprine-cds": {"ruleId": f.rule_id, "knowledgeVersion": knowledge_version()}},
    }
    if main.url:
        out["source"]["url"] = main.url
    links, seen = [], set()
    for key in f.sources:
        s = kb.source(key)
        if s.url and s.url not in seen:
            seen.add(s.url)
            links.append({"label": s.label, "url": s.url, "type": "absolute"})
    if links:
        out["links"] = links
    suggestions = [s for s in (_suggestion(a, drafts, patient_id, today) for a in f.actions) if s]
    if suggestions:
        suggestions[0]["isRecommended"] = True
        out["suggestions"] = suggestions
        alternatives = sum(isinstance(a, (ChangeDose, CancelOrder)) for a in f.actions) > 1
        out["selectionBehavior"] = "at-most-one" if alternatives or len(suggestions) == 1 else "any"
    if f.indicator != "info":
        out["overrideReasons"] = OVERRIDE_REASONS
    return out


def _footer(f: Finding) -> str:
    kb = load()
    cites = "\n".join(f"- {kb.source(k).citation or kb.source(k).label}" for k in dict.fromkeys(f.sources))
    return f"\n\n**Sources**\n{cites}\n\n_Rule `{f.rule_id}`, knowledge version {knowledge_version()}._"


def _suggestion(action, drafts: dict[str, dict], patient_id: str | None, today: date) -> dict | None:
    if isinstance(action, ChangeDose):
        draft = drafts.get(action.order_ref)
        if draft is None:
            return None
        old = next((d for d in draft.get("dosageInstruction") or [] if isinstance(d, dict)), {})
        resource = r4.updated_medication_request(
            draft, dosage(action.daily_mg, action.times_per_day, route=r4.codeable_concept(old.get("route"))),
            patient_id=patient_id)
        if resource is None:
            return None
        return {"uuid": str(uuid.uuid4()), "label": action.label, "actions": [{
            "type": "update",
            "description": action.label,
            "resource": resource,
        }]}
    if isinstance(action, CancelOrder):
        if not action.order_ref:
            return None
        return {"uuid": str(uuid.uuid4()), "label": action.label, "actions": [{
            "type": "delete", "description": action.label, "resourceId": action.order_ref,
        }]}
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
        return {"uuid": str(uuid.uuid4()), "label": action.label, "actions": [{
            "type": "create", "description": action.label, "resource": resource,
        }]}
    return None


def dosage(daily_mg: float, times_per_day: int = 1, route: dict | None = None) -> dict:
    """A structured R4 Dosage: ``daily_mg`` split into ``times_per_day`` equal doses."""
    per_dose = daily_mg / times_per_day
    value = int(per_dose) if float(per_dose).is_integer() else round(per_dose, 2)
    out = {
        "text": f"{fmt_mg(per_dose)} mg {TIMING.get(times_per_day, f'{times_per_day} times daily')}",
        "timing": {"repeat": {"frequency": times_per_day, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}}],
    }
    if isinstance(route, dict) and route:
        out["route"] = route
    return out
