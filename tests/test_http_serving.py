"""Serving as clients and frameworks expect: httpx, many concurrent clients, each --loop, the
task semantics and contextvars apps rely on (anyio included), upgrades other than WebSocket."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.client import RawConn, raw_request, simple_get


def test_hello_httpx(server):
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.http_version == "HTTP/1.1"


def test_many_concurrent_clients(server):
    def one(i: int) -> tuple[int, bytes]:
        with RawConn(server.port, timeout=10) as conn:
            out = []
            for k in range(5):
                conn.send(simple_get(f"/echo-path/{i}-{k}"))
                out.append(conn.read_response().body)
            return out

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [[f"/echo-path/{i}-{k}".encode() for k in range(5)] for i in range(64)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loops(server_factory, loop):
    s = server_factory("tests.apps:app", "--loop", loop)
    with RawConn(s.port) as conn:
        conn.send(b"".join(simple_get(f"/echo-path/{i}") for i in range(10)))
        for i in range(10):
            assert conn.read_response().body == f"/echo-path/{i}".encode()
    r = httpx.post(s.url("/body-info"), content=b"x" * 200_000, timeout=5)
    assert r.json()["length"] == 200_000


def test_task_semantics_and_contextvars(server):
    with RawConn(server.port) as conn:
        conn.send(simple_get("/context?set=first"))
        r1 = json.loads(conn.read_response().body)
        conn.send(simple_get("/context?set=second"))
        r2 = json.loads(conn.read_response().body)
    for r in (r1, r2):
        assert r["has_task"] is True, r
        assert r["same_task"] is True, r
    assert r1["seen"] is None and r1["var_now"] == "first"
    # A request never sees a ContextVar set by an earlier request on the same connection.
    assert r2["seen"] is None, r2


def test_anyio_streaming_with_disconnect_listener(server):
    resp, conn = raw_request(server.port, simple_get("/anyio-stream?n=5"))
    with conn:
        assert resp.status == 200
        assert resp.body == b"".join(b"part-%d;" % i for i in range(5))
        conn.send(simple_get("/echo-path/after"))
        assert conn.read_response().body == b"/echo-path/after"


def test_upgrade_h2c_served_as_http11(server):
    req = (
        b"GET /echo-path/up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    resp, conn = raw_request(server.port, req)
    with conn:
        assert resp.status == 200
        assert resp.body == b"/echo-path/up"
        assert resp.head.startswith(b"HTTP/1.1 200 OK\r\n")


def test_upgrade_h2c_warns(server):
    mark = server.mark()
    req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    resp, conn = raw_request(server.port, req)
    with conn:
        assert resp.status == 200
    assert server.wait_for_log(r"^WARNING:  Unsupported upgrade request\.$", "stderr", 5, mark)
