"""Pure clinical logic over ``fhir_mappers`` facts: no HTTP, no FHIR, no Flask.

``evaluate(facts)`` (``rules/evaluate.py``) runs every rule and returns findings (rule id, order, values; no
English), with superseded dose advice removed and one dose plan per order attached to every finding about that
order (``values["plan"]``); ``hooks/wording.py`` words them. ``needs_data(orders)`` (``rules/gaps.py``) tells the
hooks whether a hook call concerns thiopurines at all, so that an unrelated order costs no FHIR queries.
"""
from .evaluate import (CONSISTENT_AS_INFO, GUIDELINES, RuleOptions, attach_plans, check_catalogue, drop_range_under_pgx,
                       drop_superseded, emitted, evaluate, knowledge_version, unreadable_doses, without_replaced)
from .findings import Finding
from .gaps import (INTERACTION_ONLY_GROUPS, XOI_DOSE_GROUPS, data_gap_findings, groups_needed, needs_data,
                   thiopurine_ordered, truncation_findings)

__all__ = ["evaluate", "needs_data", "groups_needed", "thiopurine_ordered", "RuleOptions", "Finding",
           "knowledge_version", "GUIDELINES", "emitted", "check_catalogue", "attach_plans", "drop_superseded",
           "unreadable_doses", "data_gap_findings", "truncation_findings", "drop_range_under_pgx", "without_replaced",
           "CONSISTENT_AS_INFO", "INTERACTION_ONLY_GROUPS", "XOI_DOSE_GROUPS"]
