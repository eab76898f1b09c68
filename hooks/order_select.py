"""order-select: the clinician selected orders (``context.selections``) among ``context.draftOrders``.

Cards concern the selected orders; the other draft orders are context. CDS Hooks 1.0 clients may
omit ``selections``: then every draft order counts as selected.
"""
from .registry import HookContext

CONTEXT = HookContext(hook="order-select", orders="draftOrders", selections="selections")
