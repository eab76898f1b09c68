"""One module per CDS hook; importing this package registers every service."""
from . import medication_prescribe, order_select, order_sign  # noqa: F401  (registration)
from .pipeline import HookEnv, HookResult
from .registry import SERVICES, ServiceDefinition

__all__ = ["SERVICES", "ServiceDefinition", "HookEnv", "HookResult"]
