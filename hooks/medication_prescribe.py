"""medication-prescribe (legacy, CDS Hooks 1.0): the orders are in ``context.medications``."""
from __future__ import annotations

from .common import DESCRIPTION, SERVICE_DEFAULTS
from .pipeline import HookEnv, HookResult, bundle_resources, evaluate
from .prefetch import PREFETCH, REQUIRED_KEYS
from .registry import cds_service


@cds_service(
    id="thiopurine-medication-prescribe",
    hook="medication-prescribe",
    title="Thiopurine safety check while prescribing (legacy hook)",
    description=DESCRIPTION,
    **SERVICE_DEFAULTS,
)
def medication_prescribe(request: dict, env: HookEnv) -> HookResult:
    drafts = bundle_resources(request["context"].get("medications"), "medications")
    return evaluate(request, env, templates=PREFETCH, required=REQUIRED_KEYS, drafts=drafts)
