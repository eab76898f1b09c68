"""One hook call of a review case, in-process, as the service answers it (the value tests of the clinical review
rounds share it): the service of the request's hook, no FHIR server, the reviewers' date."""
from __future__ import annotations

from datetime import date

from hooks.pipeline import HookEnv, run
from hooks.registry import SERVICES
from outbound.fhir_client import FhirClient

REVIEW_DAY = date(2026, 12, 7)
_SERVICE_OF_HOOK = {"order-sign": "thiopurine-order-sign", "order-select": "thiopurine-order-select"}


def case_cards(request: dict, today: date = REVIEW_DAY) -> list[dict]:
    """The cards the service answers ``request`` with (a legacy medication-prescribe request by its service)."""
    service = SERVICES[_SERVICE_OF_HOOK.get(request["hook"], "thiopurine-medication-prescribe")]
    return run(service, request, HookEnv(client=FhirClient(), today=lambda: today)).response["cards"]
