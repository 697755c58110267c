"""The same request split across TCP segments at every byte boundary gives the same scope."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.support.client import RawConn

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
def scope_server(module_server_factory):
    return module_server_factory("tests.apps:scope_app")


def comparable(scope: dict) -> dict:
    scope = dict(scope)
    scope.pop("client")
    return scope


def fetch(port: int, parts: list[bytes], pause: float = 0.003) -> dict:
    with RawConn(port) as conn:
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            conn.send(part)
        resp = conn.read_response()
        assert resp.status == 200, resp
        return json.loads(resp.body)


@pytest.mark.parametrize(
    "request_bytes", [GET_REQ, CHUNKED_REQ, CL_REQ], ids=["get", "chunked", "cl"]
)
def test_split_at_every_byte(scope_server, request_bytes):
    port = scope_server.port
    reference = comparable(fetch(port, [request_bytes]))
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
    deadline = time.monotonic() + 40
    for i in range(1, len(request_bytes)):
        got = comparable(fetch(port, [request_bytes[:i], request_bytes[i:]]))
        assert got == reference, f"split at {i}: {request_bytes[:i]!r} | {request_bytes[i:]!r}"
        assert time.monotonic() < deadline, "fragmentation loop too slow"


def test_three_way_random_splits(scope_server):
    port = scope_server.port
    rng = random.Random(42)
    for request_bytes in (GET_REQ, CHUNKED_REQ):
        reference = comparable(fetch(port, [request_bytes]))
        for _ in range(25):
            a, b = sorted(rng.sample(range(1, len(request_bytes)), 2))
            parts = [request_bytes[:a], request_bytes[a:b], request_bytes[b:]]
            assert comparable(fetch(port, parts)) == reference, (a, b)


def test_byte_at_a_time(scope_server):
    port = scope_server.port
    reference = comparable(fetch(port, [CHUNKED_REQ]))
    got = comparable(fetch(port, [bytes([c]) for c in CHUNKED_REQ], pause=0.001))
    assert got == reference


def test_pipelined_pair_split_everywhere(server):
    data = (
        b"GET /echo-path/one HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo-path/two HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    for i in range(1, len(data)):
        with RawConn(server.port) as conn:
            conn.send(data[:i])
            time.sleep(0.002)
            conn.send(data[i:])
            assert conn.read_response().body == b"/echo-path/one", i
            assert conn.read_response().body == b"/echo-path/two", i
