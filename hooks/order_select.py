"""order-select: the clinician selected orders (``context.selections``) among ``context.draftOrders``.

Cards concern the selected orders; the other draft orders are context.
"""
from __future__ import annotations

from .common import DESCRIPTION, SERVICE_DEFAULTS
from .errors import BadContext
from .pipeline import HookEnv, HookResult, bundle_resources, evaluate
from .prefetch import PREFETCH, REQUIRED_KEYS
from .registry import cds_service


@cds_service(
    id="thiopurine-order-select",
    hook="order-select",
    title="Thiopurine safety check when an order is selected",
    description=DESCRIPTION,
    **SERVICE_DEFAULTS,
)
def order_select(request: dict, env: HookEnv) -> HookResult:
    context = request["context"]
    drafts = bundle_resources(context.get("draftOrders"), "draftOrders")
    selections = context.get("selections")
    selected = None  # CDS Hooks 1.0 clients may omit selections: then every draft order counts
    if selections is not None:
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise BadContext("context.selections must be an array of references", field="context.selections")
        selected = {s.split("/_history")[0] for s in selections}
    return evaluate(request, env, templates=PREFETCH, required=REQUIRED_KEYS, drafts=drafts, selected=selected)
