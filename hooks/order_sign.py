"""order-sign: the clinician is about to sign the draft orders in ``context.draftOrders``."""
from __future__ import annotations

from .common import DESCRIPTION, SERVICE_DEFAULTS
from .pipeline import HookEnv, HookResult, bundle_resources, evaluate
from .prefetch import PREFETCH, REQUIRED_KEYS
from .registry import cds_service


@cds_service(
    id="thiopurine-order-sign",
    hook="order-sign",
    title="Thiopurine safety check at signing",
    description=DESCRIPTION,
    **SERVICE_DEFAULTS,
)
def order_sign(request: dict, env: HookEnv) -> HookResult:
    drafts = bundle_resources(request["context"].get("draftOrders"), "draftOrders")
    return evaluate(request, env, templates=PREFETCH, required=REQUIRED_KEYS, drafts=drafts)
