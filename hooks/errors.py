"""Exceptions the hooks raise; the service turns them into HTTP answers."""
from __future__ import annotations


class HookError(Exception):
    status = 400

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadContext(HookError):
    """The request's context is unusable (400)."""

    status = 400


class PreconditionFailed(HookError):
    """Data the service cannot work without is neither prefetched nor fetchable (412)."""

    status = 412
