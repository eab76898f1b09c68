"""One module per CDS hook (where its orders are), the service registry and the shared pipeline;
importing this package registers every service (``hooks/services.py``)."""
from . import services  # noqa: F401  (registration)
from .pipeline import HookEnv, HookResult
from .registry import SERVICES, HookContext, OnMissing, PrefetchKey, ServiceDefinition

__all__ = ["SERVICES", "HookContext", "HookEnv", "HookResult", "OnMissing", "PrefetchKey", "ServiceDefinition"]
