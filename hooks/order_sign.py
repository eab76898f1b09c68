"""order-sign: the clinician is about to sign the draft orders in ``context.draftOrders``."""
from .registry import HookContext

CONTEXT = HookContext(hook="order-sign", orders="draftOrders")
