"""The service registry: one :class:`ServiceDefinition` per CDS service (``hooks/services.py``).

A definition holds everything about a service: its hook (and where that hook puts the orders, as
the hook's module declares), its discovery texts, and its prefetch keys, each with a template and
a policy for when the EHR did not prefetch it (as HAPI's ``CdsServicePrefetch`` failure mode).
Discovery is generated from the definitions and the pipeline (``hooks/pipeline.py``, ``run``) reads them,
so neither can drift from the other (HAPI's CDS Hooks module works the same way).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

class OnMissing(str, Enum):
    """What a service does with a prefetch key the EHR did not send (or sent as an OperationOutcome)."""

    FAIL = "fail"    # fetch it from fhirServer; without a fhirServer to ask, answer 412 Precondition Failed
    FETCH = "fetch"  # fetch it from fhirServer; if that fails, the cards say which check could not be done
    OMIT = "omit"    # never fetched: without it, the cards say which check could not be done
    # fetched from fhirServer when one is given (a failed fetch is a card, as FETCH); without a fhirServer to
    # ask, left out silently: the key only adds results a check needs when they exist (6-TGN, 6-MMP by name)
    OPTIONAL = "optional"


@dataclass(frozen=True)
class PrefetchKey:
    template: str
    on_missing: OnMissing = OnMissing.FETCH


@dataclass(frozen=True)
class HookContext:
    """What a hook module declares: its hook and where in ``context`` the orders are."""

    hook: str
    orders: str  # context key of the draft orders (a Bundle, or a list from 1.0 clients)
    selections: str | None = None  # context key of the references that narrow the orders (order-select)


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    context: HookContext
    title: str
    description: str
    usage_requirements: str
    prefetch: Mapping[str, PrefetchKey] = field(default_factory=dict)

    @property
    def hook(self) -> str:
        return self.context.hook

    @property
    def templates(self) -> dict[str, str]:
        return {key: p.template for key, p in self.prefetch.items()}

    @property
    def required_keys(self) -> frozenset[str]:
        return frozenset(key for key, p in self.prefetch.items() if p.on_missing is OnMissing.FAIL)

    @property
    def optional_keys(self) -> frozenset[str]:
        return frozenset(key for key, p in self.prefetch.items() if p.on_missing is OnMissing.OPTIONAL)

    def keys(self, policy: OnMissing) -> list[str]:
        return [key for key, p in self.prefetch.items() if p.on_missing is policy]

    def discovery(self) -> dict:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": self.templates,
            "usageRequirements": self.usage_requirements,
        }


SERVICES: dict[str, ServiceDefinition] = {}


def register(definition: ServiceDefinition) -> ServiceDefinition:
    """Add a CDS service to the registry (and so to discovery)."""
    if definition.id in SERVICES:
        raise ValueError(f"CDS service {definition.id!r} registered twice")
    SERVICES[definition.id] = definition
    return definition
