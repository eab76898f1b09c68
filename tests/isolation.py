"""Test isolation: a module that uses the ``isolated`` fixture cannot open a socket off loopback,
and every ``requests`` call is intercepted by ``responses`` (nothing leaves the machine)."""
from __future__ import annotations

import socket

import pytest
import responses


def _loopback_only(original):
    def connect(self, address, *args):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")) \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            raise ConnectionRefusedError(f"test isolation: no connection to {host}")
        return original(self, address, *args)
    return connect


@pytest.fixture(scope="module", autouse=True)
def isolated():
    with pytest.MonkeyPatch.context() as mp, responses.RequestsMock(assert_all_requests_are_fired=False):
        mp.setattr(socket.socket, "connect", _loopback_only(socket.socket.connect))
        yield
