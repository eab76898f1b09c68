"""medication-prescribe (legacy, CDS Hooks 1.0): the orders are in ``context.medications``."""
from .registry import HookContext

CONTEXT = HookContext(hook="medication-prescribe", orders="medications")
