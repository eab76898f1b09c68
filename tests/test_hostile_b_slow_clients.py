"""Slow clients cost no thread (issue 18, R6 and R8), on the real server.

``azathioprine-cds serve`` reads every request whole in the worker's main loop (head and body,
any size up to the body limit, Content-Length or chunked, and the next request on a kept-alive
connection) before a thread is used. Here one worker with 2 threads is held by 8 connections
that drip, each in another way, while 12 discovery and hook calls are made: all are answered.

- a body over 1 MiB, sent slowly after its head;
- a chunked body, one chunk at a time;
- a kept-alive connection that drips its second request;
- a request head dripped byte by byte.

And the answers a client gets instead of silence: a body shorter than its Content-Length is
answered 400 when the client closes its side, 408 when it just stops sending (after
half of ``AZA_CDS_CLIENT_SECONDS``); a declared body over the limit is answered 413 before it is
sent; a client waiting for ``100 Continue`` gets it. Nothing here measures speed.
"""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from tests.builders import SERVICE, hook_request, prefetch
from tests.test_serving import Serve

SIGN = f"/cds-services/{SERVICE['order-sign']}"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def server(tmp_path):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "2",
                env={"AZA_CDS_CLIENT_SECONDS": "60"})  # requests must be in whole within 30 s
    yield srv
    srv.close()


def _connect(srv: Serve) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=30)


def _status(sock: socket.socket) -> int:
    """The status code of the first answer on ``sock`` (reads the head only)."""
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            raise AssertionError(f"connection closed without an answer: {data!r}")
        data += piece
    return int(data.split(b" ", 2)[1])


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def _openers(srv: Serve) -> list[socket.socket]:
    """Eight connections, each stopped inside its request (never finished by the test)."""
    big = json.dumps(hook_request(pre=prefetch())).encode()
    big = big[:-1] + b', "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    socks = []
    for i in range(8):
        s = _connect(srv)
        kind = i % 4
        if kind == 0:  # a body over 1 MiB: head and the first half
            s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(big)}\r\n\r\n".encode() + big[:len(big) // 2])
        elif kind == 1:  # chunked: the first chunk only
            s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode() + b"10\r\n" + big[:16] + b"\r\n")
        elif kind == 2:  # kept alive: one whole request, answered, then the next one's first bytes
            s.sendall(b"GET /cds-services HTTP/1.1\r\nHost: a\r\n\r\n")
            assert _read_answer(s).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /cds-services HTTP/1.1\r\nHo")
        else:  # a request head, dripping
            s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nX-Slow: ".encode())
        socks.append(s)
    return socks


def test_eight_dripping_connections_hold_no_thread_of_a_two_thread_worker(server):
    slow = _openers(server)
    try:
        for s in slow:  # a drop more from each: still not a whole request
            s.sendall(b"x" if slow.index(s) % 4 != 1 else b"8\r\nxxxxxxxx\r\n")
        answered = []
        call = json.dumps(hook_request(pre=prefetch())).encode()
        for i in range(12):
            if i % 2:
                req = urllib.request.Request(server.base + SIGN, data=call, method="POST",
                                             headers={"Content-Type": "application/json"})
            else:
                req = urllib.request.Request(server.base + "/cds-services")
            with _OPENER.open(req, timeout=20) as resp:
                answered.append(resp.status)
                resp.read()
        assert answered == [200] * 12
    finally:
        for s in slow:
            s.close()


def test_a_dripped_chunked_body_is_answered_once_it_is_complete(server):
    body = json.dumps(hook_request(pre=prefetch())).encode()
    s = _connect(server)
    try:
        s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
        for start in range(0, len(body), 4096):
            piece = body[start:start + 4096]
            s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        assert _status(s) == 200
    finally:
        s.close()


def test_a_body_shorter_than_its_length_is_answered_400_when_the_client_closes(server):
    s = _connect(server)
    try:
        s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{\"hook\":".encode())
        s.shutdown(socket.SHUT_WR)
        assert _status(s) == 400
    finally:
        s.close()


def test_a_body_shorter_than_its_length_is_answered_408_not_left_in_silence(tmp_path):
    srv = Serve(tmp_path, "--insecure-no-auth", "--workers", "1", "--threads", "2",
                env={"AZA_CDS_CLIENT_SECONDS": "2"})  # requests must be in whole within 1 s
    s = _connect(srv)
    try:
        s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{\"hook\":".encode())
        head = _read_answer(s)
        assert head.startswith(b"HTTP/1.1 408"), head
    finally:
        s.close()
        srv.close()


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    s = _connect(server)
    try:
        s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
        assert _status(s) == 413
    finally:
        s.close()


def test_expect_100_continue_is_answered_so_the_body_comes(server):
    body = json.dumps(hook_request(pre=prefetch())).encode()
    s = _connect(server)
    try:
        s.sendall(f"POST {SIGN} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        assert _status(s) == 100
        s.sendall(body)
        data = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
        assert b"HTTP/1.1 200" in data
    finally:
        s.close()
