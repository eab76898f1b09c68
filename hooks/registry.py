"""The service registry: one entry per CDS service, filled by ``@cds_service``.

The discovery document is generated from these entries, so it cannot drift
from the handlers (HAPI's CDS Hooks module works the same way).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    usage_requirements: str
    handler: Callable = field(compare=False)
    required_keys: frozenset[str] = frozenset()

    def discovery(self) -> dict:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": self.usage_requirements,
        }


SERVICES: dict[str, ServiceDefinition] = {}


def cds_service(*, id: str, hook: str, title: str, description: str, prefetch: dict[str, str],
                usage_requirements: str, required_keys: frozenset[str] = frozenset()):
    """Register the decorated function as the handler of CDS service ``id``."""

    def register(handler: Callable) -> Callable:
        if id in SERVICES:
            raise ValueError(f"CDS service {id!r} registered twice")
        SERVICES[id] = ServiceDefinition(id, hook, title, description, dict(prefetch), usage_requirements,
                                         handler, frozenset(required_keys))
        return handler

    return register
