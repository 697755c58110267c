"""The same request split into reads at every byte boundary gives the same scope.

The splits are made in-process (tests/support/harness.py): each piece is exactly one read of
the protocol, whatever the kernel would have done with it. The last test sends over a real
socket, one byte at a time, on each event loop: their buffered read paths differ.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from tests import apps
from tests.support.client import RawConn
from tests.support.harness import Harness, check_invariants, split_at

GET_REQ = (
    b"GET /frag/a%20b?x=1&y=%41 HTTP/1.1\r\nHost: example.org\r\nX-One: first\r\n"
    b"X-Dup: a\r\nX-Dup: b\r\nAccept: */*\r\n\r\n"
)
CHUNKED_REQ = (
    b"POST /frag HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;e=1\r\n world\r\n0\r\nX-Trailer: v\r\n\r\n"
)
CL_REQ = (
    b"PUT /frag/cl?z HTTP/1.1\r\nHost: example.org\r\nContent-Length: 11\r\n"
    b"Content-Type: text/plain\r\n\r\nhello world"
)


@pytest.fixture(scope="module")
def scope_harness():
    with Harness(apps.scope_app) as harness:
        yield harness


@pytest.fixture(scope="module")
def app_harness():
    with Harness(apps.app) as harness:
        yield harness


def comparable(scope: dict) -> dict:
    scope = dict(scope)
    scope.pop("client")
    return scope


def fetch(harness: Harness, reads: list[bytes]) -> dict:
    """The scope scope_app reports for a request arriving in ``reads``."""
    (resp,) = check_invariants(harness.run_connection(reads))
    assert resp.status == 200, resp
    return json.loads(resp.body)


@pytest.mark.parametrize(
    "request_bytes", [GET_REQ, CHUNKED_REQ, CL_REQ], ids=["get", "chunked", "cl"]
)
def test_split_at_every_byte(scope_harness, request_bytes):
    reference = comparable(fetch(scope_harness, [request_bytes]))
    if request_bytes is GET_REQ:
        assert reference["path"] == "/frag/a b"
        assert reference["raw_path"] == "/frag/a%20b"
        assert reference["query_string"] == "x=1&y=%41"
        assert reference["headers"] == [
            ["host", "example.org"],
            ["x-one", "first"],
            ["x-dup", "a"],
            ["x-dup", "b"],
            ["accept", "*/*"],
        ]
    else:
        assert reference["_body"] == "hello world"
    for i in range(1, len(request_bytes)):
        got = comparable(fetch(scope_harness, split_at(request_bytes, i)))
        assert got == reference, f"split at {i}: {request_bytes[:i]!r} | {request_bytes[i:]!r}"


def test_three_way_random_splits(scope_harness):
    rng = random.Random(42)
    for request_bytes in (GET_REQ, CHUNKED_REQ):
        reference = comparable(fetch(scope_harness, [request_bytes]))
        for _ in range(25):
            a, b = sorted(rng.sample(range(1, len(request_bytes)), 2))
            got = comparable(fetch(scope_harness, split_at(request_bytes, a, b)))
            assert got == reference, (a, b)


def test_byte_at_a_time(scope_harness):
    reference = comparable(fetch(scope_harness, [CHUNKED_REQ]))
    got = comparable(fetch(scope_harness, [bytes([c]) for c in CHUNKED_REQ]))
    assert got == reference


def test_pipelined_pair_split_everywhere(app_harness):
    data = (
        b"GET /echo-path/one HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo-path/two HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    for i in range(1, len(data)):
        responses = check_invariants(app_harness.run_connection(split_at(data, i)))
        assert [r.body for r in responses] == [b"/echo-path/one", b"/echo-path/two"], i


@pytest.mark.parametrize("request_bytes", [GET_REQ, CHUNKED_REQ], ids=["get", "chunked"])
def test_byte_at_a_time_over_a_socket(any_loop_scope_server, request_bytes):
    def scope_of(parts: list[bytes]) -> dict:
        with RawConn(any_loop_scope_server.port) as conn:
            for i, part in enumerate(parts):
                if i:
                    # A client that dribbles its request: the pause is that client (over
                    # loopback the server then mostly reads one byte at a time).
                    time.sleep(0.001)
                conn.send(part)
            resp = conn.read_response()
        assert resp.status == 200, resp
        return comparable(json.loads(resp.body))

    assert scope_of([bytes([c]) for c in request_bytes]) == scope_of([request_bytes])
