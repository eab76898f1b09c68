"""The path every thiopurine service shares:

draft orders → (are they about thiopurines?) → gather data → fhir_mappers →
rules → cards. Hook modules only say where their orders are in the context;
the service definition (``hooks/registry.py``) says which data to gather and
what to do when a prefetch key is missing.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec
from datetime import date
from typing import TYPE_CHECKING, Any, Callable

import rules
from fhir_mappers import build_facts, order_facts
from fhir_mappers.facts import DataGap
from fhir_mappers.fhirjson import ref_of, resources_of
from fhir_mappers.medications import find_medication

from .bounds import MAX_DRAFT_ORDERS, merge_cards
from .cards import AppLink, render_cards
from .errors import BadContext
from outbound.fhir_client import Deadline, FhirClient
from .gather import FhirAccess, fetch_references, gather, usable
from .registry import OnMissing
from .wording import group_label, phrase

if TYPE_CHECKING:
    from .registry import ServiceDefinition


class HookEnv(msgspec.Struct):
    """What a handler needs from the running service (built once per process)."""

    client: FhirClient
    deadline_seconds: float = 1.5
    rule_options: rules.RuleOptions = msgspec.field(default_factory=rules.RuleOptions)
    max_info_cards: int = 1
    today: Callable[[], date] = date.today
    request_deadline: Deadline | None = None  # this call's limits, set per request by the service
    # the fhirServer of a request checked offline (``azathioprine-cds check``, which never contacts it): absolute
    # references are compared with it (round-11 H2), nothing is fetched from it
    offline_fhir_server: str | None = None
    # the SMART app's launch URL (cards link it), set per request by the service: the URL, or a function that
    # gives it, asked only when a card is rendered (most calls answer no card)
    app_launch_url: str | Callable[[], str | None] | None = None


class HookResult(msgspec.Struct):
    response: dict
    rule_ids: list[str] = msgspec.field(default_factory=list)
    fhir_ms: float = 0.0


def patient_id(request: dict) -> str | None:
    ctx = request.get("context") or {}
    pid = ctx.get("patientId") or request.get("patient")  # pre-1.0 clients put it at the top level
    return pid if isinstance(pid, str) and pid else None


def bundle_resources(value: Any, where: str) -> list[dict]:
    """Resources of a draft-orders Bundle (or a bare list of resources, as old clients send)."""
    if value is None:
        raise BadContext(f"context.{where} is required", field=f"context.{where}")
    if isinstance(value, dict) and value.get("resourceType") not in (None, "Bundle"):
        return [value]
    if not isinstance(value, (dict, list)):
        raise BadContext(f"context.{where} must be a FHIR Bundle", field=f"context.{where}")
    if isinstance(value, list):
        resources: list[dict] = []
        for item in value:
            resources.extend(resources_of(item.get("resource") if isinstance(item, dict) and "resource" in item else item))
        return resources
    return list(resources_of(value))


def access_of(request: dict) -> FhirAccess:
    server = request.get("fhirServer") if isinstance(request.get("fhirServer"), str) else None
    auth = request.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, dict) else None
    return FhirAccess(server=server or None, token=token if isinstance(token, str) else None)


def selected_references(value: Any, where: str) -> set[str] | None:
    """The references in ``context.selections`` (without ``/_history``); None when the client sent none."""
    if value is None:
        return None  # CDS Hooks 1.0 clients may omit selections: then every draft order counts
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise BadContext(f"context.{where} must be an array of references", field=f"context.{where}")
    return {s.split("/_history")[0] for s in value}


def run(service: ServiceDefinition, request: dict, env: HookEnv) -> HookResult:
    """One hook call to ``service``: its orders from where its hook puts them, then the pipeline."""
    context = request["context"]
    drafts = bundle_resources(context.get(service.context.orders), service.context.orders)
    if len(drafts) > MAX_DRAFT_ORDERS:
        raise BadContext(f"context.{service.context.orders} holds {len(drafts)} orders; this service checks at most "
                         f"{MAX_DRAFT_ORDERS} in one call (send them in smaller calls)",
                         field=f"context.{service.context.orders}")
    selections = service.context.selections
    selected = selected_references(context.get(selections), selections) if selections else None
    return evaluate(request, env, service=service, drafts=drafts, selected=selected)


def evaluate(request: dict, env: HookEnv, *, service: ServiceDefinition, drafts: list[dict],
             selected: set[str] | None = None, keep: dict | None = None,
             reference_server: str | None = None) -> HookResult:
    """Run the whole pipeline for one hook call. ``keep``: filled with the call's ``facts`` and
    ``findings`` (the SMART app shows them beside the cards: the same values, from this code).
    ``reference_server``: the FHIR server the data were read from when the request names none (the SMART app):
    absolute references are compared with it (round-11 H2), nothing is fetched from it."""
    started = time.monotonic()
    deadline = env.request_deadline or Deadline(env.deadline_seconds)
    access = access_of(request)
    raw_prefetch = request.get("prefetch")
    prefetch: Mapping = raw_prefetch if isinstance(raw_prefetch, Mapping) else {}
    pid = patient_id(request)

    # The drafts decide (most calls: an order that concerns no thiopurine, no interacting drug, no live vaccine).
    # The prefetch is read only for a draft that names its drug by a Medication outside itself, and otherwise
    # once the call needs data, and then only the keys it needs (``prefetch`` may decode a key when read:
    # ``hooks.envelope.Prefetch``). A Medication sent beside the orders in the draftOrders Bundle is known
    # (FHIR R4 "Resolving references in Bundles").
    known_meds: dict[str, dict] = {f"Medication/{r['id']}": r for r in drafts
                                   if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)}
    if _references_outside(drafts):
        known_meds = _prefetched_medications(prefetch) | known_meds
        known_meds |= _resolve_draft_medications(drafts, known_meds, env.client, access, deadline)
    orders = order_facts(drafts, known_meds)
    if selected is not None:
        orders = [_with_selection(o, selected) for o in orders]
    if not rules.needs_data(orders):
        unread = _unidentified_references(orders, known_meds)
        if unread:  # the drug could be a thiopurine: not an all-clear
            cards = render_cards([_unidentified_finding(unread)], drafts={}, patient_id=pid, today=env.today(),
                                 max_info_cards=env.max_info_cards, guideline=env.rule_options.guideline)
            return HookResult({"cards": cards}, rule_ids=["data-incomplete"], fhir_ms=(time.monotonic() - started) * 1000)
        return HookResult({"cards": []}, fhir_ms=(time.monotonic() - started) * 1000)

    context = dict(request.get("context") or {})
    if pid:
        context["patientId"] = pid
    # an interacting drug only asks "is a thiopurine active?"; immunizations matter for a thiopurine order,
    # recently stopped thiopurines for a live vaccine order
    needed = rules.groups_needed(orders, service.prefetch)
    wanted = {k: p for k, p in service.prefetch.items() if k in needed}
    fetchable = {k: p.template for k, p in wanted.items() if p.on_missing is not OnMissing.OMIT}
    data, gaps = gather(env.client, access, fetchable, service.required_keys, context, prefetch, deadline,
                        service.optional_keys)
    data, gaps = _omitted_keys(wanted, prefetch, data, gaps)
    if "pgx" in needed:  # a TPMT activity is read: a transfusion Procedure may be under any key (round-17 M7)
        data = _prefetched_procedures(prefetch, data, service.prefetch, getattr(deadline, "max_entries", None))
    fhir_ms = (time.monotonic() - started) * 1000
    today = env.today()
    facts = build_facts(drafts, data, today=today, gaps=gaps, orders=orders, patient_id=pid,
                        fhir_server=access.server or reference_server or env.offline_fhir_server)
    findings = rules.evaluate(facts, env.rule_options)
    if keep is not None:
        keep.update(facts=facts, findings=findings)
    # only this call's drafts can be updated by a suggestion: an update of an active order is applied by some
    # clients (the public CDS Hooks sandbox) to the draft being signed, turning it into another drug
    by_ref = {ref_of(r): r for r in drafts if ref_of(r)}
    launch_url = env.app_launch_url() if callable(env.app_launch_url) else env.app_launch_url
    app = AppLink(launch_url, pid, tuple(drafts)) if launch_url else None
    cards = merge_cards(render_cards(findings, drafts=by_ref, patient_id=pid, today=today,
                                     max_info_cards=env.max_info_cards, guideline=env.rule_options.guideline, app=app))
    shown = {c["source"]["topic"]["code"] for c in cards}
    shown |= {r for c in cards for r in c["extension"]["azathioprine-cds"].get("mergedRuleIds", [])}
    return HookResult({"cards": cards}, rule_ids=[f.rule_id for f in findings if f.rule_id in shown], fhir_ms=fhir_ms)


def _prefetched_procedures(prefetch: Mapping, data: dict, keys: Mapping, cap: int | None = None) -> dict:
    """Round-17 M7: Procedures are read in any data group (round-11 M1: a transplant; a red-cell transfusion before
    a TPMT activity): one the EHR prefetched under a key this call does not otherwise read (stopped medications, for
    a thiopurine start) is still read. Only its Procedures are kept (nothing is fetched, nothing else of the key is
    read, so the key's own checks do not change); a key with none is left out as before. Only the service's own
    prefetch keys, and at most ``cap`` entries of each (the bound every key's Bundle has, ``gather._capped``)."""
    for key in keys:
        if key in data or key not in prefetch:
            continue
        value = prefetch.get(key)
        if not isinstance(value, dict) or not usable(value) or value.get("resourceType") != "Bundle":
            continue
        entries = value.get("entry")
        if isinstance(entries, list) and cap:
            entries = entries[:cap]
        procedures = [e for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                      and e["resource"].get("resourceType") == "Procedure"] if isinstance(entries, list) else []
        if procedures:
            data = {**data, key: {"resourceType": "Bundle", "type": value.get("type", "collection"),
                                  "entry": procedures}}
    return data


def _omitted_keys(wanted: dict, prefetch: Mapping, data: dict, gaps: list[DataGap]) -> tuple[dict, list[DataGap]]:
    """Keys that are never fetched: the prefetched value, else a gap (the check could not be done)."""
    for key, p in wanted.items():
        if p.on_missing is OnMissing.OMIT:
            if usable(prefetch.get(key)):
                data[key] = prefetch[key]
            else:
                data[key] = None
                gaps.append(DataGap(group_label(key), phrase("not_prefetched"), key))
    return data, gaps


def _unidentified_references(orders, known: dict[str, dict]) -> list[str]:
    """Medication references of selected draft orders whose drug could not be read (nor recognised otherwise)."""
    out = []
    for o in orders:
        mref = (o.resource or {}).get("medicationReference")
        ref = mref.get("reference") if isinstance(mref, dict) else None
        if (o.selected and not o.ingredients and isinstance(ref, str) and not ref.startswith("#")
                and find_medication(ref, known) is None):
            out.append(ref[:80])
    return sorted(set(out))


def _unidentified_finding(refs: list[str]) -> rules.Finding:
    return rules.Finding("data-incomplete", "", {"variant": "unidentified", "refs": refs}, indicator="warning")


def _with_selection(order, selected: set[str]):
    return msgspec.structs.replace(order, selected=order.ref in selected)


def _medication_reference(resource: dict) -> str | None:
    mref = resource.get("medicationReference")
    ref = mref.get("reference") if isinstance(mref, dict) else None
    return ref if isinstance(ref, str) else None


def _references_outside(drafts: list[dict]) -> bool:
    """Whether a draft order names its drug by a reference to a Medication that is not contained in it (the
    only use of the prefetched and fetched Medications: ``medication_concept`` follows such references)."""
    for r in drafts:
        ref = _medication_reference(r) if isinstance(r, dict) else None
        if ref is not None and not ref.startswith("#"):
            return True
    return False


def _prefetched_medications(prefetch: Mapping) -> dict[str, dict]:
    index = {}
    for value in prefetch.values():
        if usable(value):
            for med in resources_of(value, "Medication"):
                if isinstance(med.get("id"), str):
                    index[f"Medication/{med['id']}"] = med
    return index


def _resolve_draft_medications(drafts, known, client, access, deadline) -> dict[str, dict]:
    """Fetch Medications that draft orders reference but nobody sent, so the drug can be recognised."""
    wanted = []
    for r in drafts:
        ref = (r.get("medicationReference") or {}).get("reference") if isinstance(r.get("medicationReference"), dict) else None
        if isinstance(ref, str) and not ref.startswith("#") and ref.count("/") == 1 and ref not in known:
            wanted.append(ref)
    return fetch_references(client, access, sorted(set(wanted)), deadline)

