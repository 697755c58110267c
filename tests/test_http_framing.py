"""How a response's body is delimited on the wire: content-length, chunked (the app's or the
server's), no body (HEAD, 204, 304), close-delimited for HTTP/1.0; large and slow-read bodies.
The decision itself, input by input, is tested in test_framing_decision.py."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.client import RawConn, raw_request, simple_get


def test_chunked_response_framing(any_loop_server):
    resp, conn = raw_request(any_loop_server.port, simple_get("/stream?n=5"))
    with conn:
        assert resp.status == 200
        assert resp.chunked
        assert resp.get("content-length") is None
        assert resp.get_all("transfer-encoding") == [b"chunked"]
        assert resp.chunks == [b"chunk-%d\n" % i for i in range(5)]
        # The connection is still usable: the terminating chunk was right.
        conn.send(simple_get("/"))
        assert conn.read_response().body == b"Hello, world!"


def test_chunked_response_exact_bytes(server):
    resp, conn = raw_request(server.port, simple_get("/no-cl"))
    with conn:
        assert resp.chunked
        assert conn.received.endswith(b"\r\n\r\n7\r\nhello, \r\n5\r\nworld\r\n0\r\n\r\n"), (
            conn.received
        )


def test_response_many_small_chunks(server):
    resp, conn = raw_request(server.port, simple_get("/stream?n=1000"))
    with conn:
        assert resp.chunks == [b"chunk-%d\n" % i for i in range(1000)]


def test_big_chunked_response(server):
    with RawConn(server.port, timeout=10) as conn:
        conn.send(simple_get("/odd?kind=big-chunked") + simple_get("/echo-path/next"))
        resp = conn.read_response()
        assert resp.chunked
        assert resp.chunks == [bytes([65 + i]) * 100_000 for i in range(20)]
        assert conn.read_response().body == b"/echo-path/next"


def test_app_declared_chunked_not_doubled(server):
    resp, conn = raw_request(server.port, simple_get("/app-chunked"))
    with conn:
        assert resp.get_all("transfer-encoding") == [b"chunked"], resp.head
        assert resp.body == b"abcdef"
        conn.send(simple_get("/echo-path/after"))
        assert conn.read_response().body == b"/echo-path/after"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server, code):
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/status?code={code}") + simple_get("/"))
        r1 = conn.read_response()
        assert r1.status == code
        assert r1.get("transfer-encoding") is None, r1.head
        r2 = conn.read_response()
        assert r2.status == 200 and r2.body == b"Hello, world!"


def test_head_keeps_headers_drops_body(any_loop_server):
    with RawConn(any_loop_server.port) as conn:
        conn.send(simple_get("/", method=b"HEAD") + simple_get("/echo-path/after"))
        r1 = conn.read_response(head=True)
        assert r1.status == 200
        assert r1.get("content-length") == b"13"
        r2 = conn.read_response()
        # If any body bytes followed the HEAD response, this would not parse as a response.
        assert r2.status == 200 and r2.body == b"/echo-path/after", r2
        assert b"Hello, world!" not in conn.received


def test_head_without_content_length(server):
    with RawConn(server.port) as conn:
        conn.send(simple_get("/stream", method=b"HEAD") + simple_get("/echo-path/next"))
        r1 = conn.read_response(head=True)
        assert r1.status == 200
        assert r1.get("transfer-encoding") is None, r1.head
        r2 = conn.read_response()
        assert r2.body == b"/echo-path/next", r2
        assert b"chunk-" not in conn.received


def test_http10_response(server):
    resp, conn = raw_request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    with conn:
        assert resp.head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert resp.body == b"Hello, world!"
        assert b"close" in resp.connection_tokens()
        assert conn.wait_closed(5)


@pytest.mark.palfrey_only  # Uvicorn sends chunked encoding to HTTP/1.0 clients.
def test_http10_no_content_length_is_close_delimited(server):
    resp, conn = raw_request(server.port, b"GET /no-cl HTTP/1.0\r\n\r\n")
    with conn:
        assert resp.status == 200
        assert resp.get("transfer-encoding") is None, resp.head
        assert resp.get("content-length") is None, resp.head
        assert resp.close_delimited
        assert resp.body == b"hello, world"
        assert b"close" in resp.connection_tokens()


@pytest.mark.parametrize(
    "kind,expected_tail",
    [
        ("minimal", b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("list-headers", b"\r\n\r\nok"),
        ("bytearray-body", b"\r\n\r\nabcdef"),
        ("empty-cl", b"content-length: 0\r\n"),
    ],
)
def test_unusual_but_legal_messages(server, kind, expected_tail):
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/odd?kind={kind}") + simple_get("/echo-path/next"))
        r1 = conn.read_response()
        assert r1.status == 200
        assert expected_tail in conn.received, conn.received
        if kind == "list-headers":
            assert r1.get("x-list") == b"yes"
        r2 = conn.read_response()
        assert r2.body == b"/echo-path/next"


def test_large_response(server):
    r = httpx.get(server.url("/big?size=3000000"), timeout=10)
    assert r.status_code == 200
    assert len(r.content) == 3000000
    block = bytes(range(256)) * 256
    assert r.content[:65536] == block and r.content[-10:] == (block * 46)[3000000 - 10 : 3000000]


def test_slow_reader_large_response(any_loop_server):
    # Backpressure: the client reads slowly at first; every byte still arrives in order.
    size = 8 << 20
    with RawConn(any_loop_server.port, timeout=10) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.send(simple_get(f"/big?size={size}"))
        time.sleep(0.5)  # a slow reader (the behaviour under test): the server fills the pipe
        resp = conn.read_response()
        assert resp.status == 200 and len(resp.body) == size
        block = bytes(range(256)) * 256
        assert resp.body == (block * (size // len(block) + 1))[:size]
        conn.send(simple_get("/echo-path/after"))
        assert conn.read_response().body == b"/echo-path/after"

