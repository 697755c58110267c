"""Application errors: exceptions, missing responses, bad messages, header injection."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.apps import BAD_HEADERS
from tests.support.client import (
    ConnectionClosed,
    RawConn,
    ReadTimeout,
    assert_error_response,
    raw_request,
    simple_get,
)
from tests.support.common import wait_until


def report(server, rid: str, timeout: float = 5.0):
    def probe():
        return httpx.get(server.url(f"/report?id={rid}"), timeout=5).json()

    return wait_until(probe, timeout, 0.05)


def test_exception_before_start_500(any_loop_server):
    server = any_loop_server
    mark = server.mark()
    resp, conn = raw_request(server.port, simple_get("/raise-before"))
    with conn:
        assert_error_response(resp, conn, 500)
    assert server.wait_for_log(r"^ERROR:    Exception in ASGI application$", "stderr", 5, mark)
    assert server.wait_for_log(r"^ValueError: boom-before-start$", "stderr", 5, mark)
    lines = server.since(mark)
    i = lines.index("ERROR:    Exception in ASGI application")
    assert lines[i + 1].startswith("Traceback (most recent call last):"), lines[i : i + 3]


def test_exception_before_start_pipelined_not_answered(server):
    # After the 500 the connection is closed: a pipelined request gets nothing.
    with RawConn(server.port) as conn:
        conn.send(simple_get("/raise-before") + simple_get("/echo-path/never"))
        resp = conn.read_response()
        assert resp.status == 500
        assert conn.read_until_close() == b""


def test_return_without_response_500(server):
    mark = server.mark()
    resp, conn = raw_request(server.port, simple_get("/return-without-response"))
    with conn:
        assert_error_response(resp, conn, 500)
    assert server.wait_for_log(
        r"^ERROR:    ASGI callable returned without starting response\.$", "stderr", 5, mark
    ), server.since(mark)
    assert not any("Traceback" in x for x in server.since(mark))


def test_exception_after_start_closes(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get("/raise-after"))
        head = conn.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 100\r\n" in head
        rest = conn.read_until_close()
        # Incomplete body, then closed: never 100 bytes, never a 500 glued on.
        assert len(rest) < 100
        assert rest in (b"", b"partial"), rest
    assert server.wait_for_log(r"^ERROR:    Exception in ASGI application$", "stderr", 5, mark)
    assert server.wait_for_log(r"^ValueError: boom-after-start$", "stderr", 5, mark)


def test_exception_after_start_chunked_not_terminated(server_factory):
    # Not strictly needed as separate server; uses the module default app via a fresh server.
    s = server_factory("tests.apps:app")
    with RawConn(s.port) as conn:
        conn.send(simple_get("/raise-after"))
        data = conn.read_until_close()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert not data.endswith(b"0\r\n\r\n")


def _check_cl_mismatch(server, path: str, declared: int) -> None:
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get(path) + simple_get("/echo-path/next"))
        data = conn.read_until_close(5)
    # The head may or may not have left (a server that coalesces head and body can drop
    # both); either way at most `declared` body bytes, then close, never the next response.
    if data:
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep, data
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert b"content-length: %d\r\n" % declared in head + b"\r\n", data
        assert len(body) <= declared, data
        assert b"HTTP/1.1" not in body, data
    assert b"/echo-path/next" not in data
    assert server.wait_for_log(r"^ERROR:", "stderr", 5, mark), server.since(mark)


def test_content_length_too_long_closes(server):
    """App declares 10 bytes, sends 5: error logged, connection closed, no hang."""
    _check_cl_mismatch(server, "/cl-too-long", 10)


def test_content_length_too_short_closes(server):
    """App declares 3 bytes, sends 10: error logged, connection closed, never > 3 bytes of body."""
    _check_cl_mismatch(server, "/cl-too-short", 3)


@pytest.mark.parametrize(
    "kind",
    [
        # Uvicorn writes an empty header name (": value") to the wire.
        pytest.param(k, marks=pytest.mark.palfrey_only)
        if k in ("name-empty", "name-nonascii")
        else k
        for k in sorted(BAD_HEADERS)
    ],
)
def test_response_header_injection_refused(server, kind):
    rid = uuid.uuid4().hex
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/bad-header?kind={kind}&id={rid}") + simple_get("/echo-path/next"))
        data = conn.read_until_close(5)
    # Either a 500 or a bare close; the forbidden bytes never reach the wire.
    assert data == b"" or data.startswith(b"HTTP/1.1 500 "), data
    assert b"injected" not in data, data
    assert b"x-test" not in data, data
    assert b"/echo-path/next" not in data
    info = report(server, rid)
    assert info and info["error"] == "RuntimeError", info
    assert server.wait_for_log(r"^ERROR:", "stderr", 5, mark)


@pytest.mark.parametrize("kind", ["body-before-start", "unknown-type"])
def test_bad_message_order_before_start(server, kind):
    rid = uuid.uuid4().hex
    mark = server.mark()
    resp, conn = raw_request(server.port, simple_get(f"/order?kind={kind}&id={rid}"))
    with conn:
        assert_error_response(resp, conn, 500)
    info = report(server, rid)
    assert info and info["error"] == "RuntimeError", info
    assert server.wait_for_log(r"^ERROR:    Exception in ASGI application$", "stderr", 5, mark)
    assert server.wait_for_log(r"^RuntimeError", "stderr", 5, mark)


def test_bad_message_order_two_starts(server):
    rid = uuid.uuid4().hex
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/order?kind=two-starts&id={rid}"))
        data = conn.read_until_close(5)
        assert data.count(b"HTTP/1.1 ") == 1, data
    info = report(server, rid)
    assert info and info["error"] == "RuntimeError", info


def test_bad_message_after_complete(server):
    rid = uuid.uuid4().hex
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/order?kind=after-complete&id={rid}"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"ok"
    info = report(server, rid)
    assert info and info["error"] == "RuntimeError", info


def test_server_survives_errors(server):
    for path in ["/raise-before", "/raise-after", "/cl-too-short", "/return-without-response"]:
        with RawConn(server.port) as conn:
            conn.send(simple_get(path))
            conn.read_until_close(5)
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200 and r.text == "Hello, world!"


def test_error_500_has_no_app_headers(server):
    resp, conn = raw_request(server.port, simple_get("/raise-before"))
    with conn:
        assert resp.status == 500
        names = [n.lower() for n in resp.header_names()]
        assert len(names) == len(set(names)), resp.head
        assert re.match(rb"HTTP/1\.1 500 Internal Server Error\r\n", resp.head)


@pytest.mark.parametrize("code", [0, 99, 600, 1000])
def test_invalid_status_code_never_written(server, code):
    # A status outside 100-599 cannot be put in a valid status line (RFC 9110 15): the app
    # gets an error (500 or a closed connection), the bogus status line never reaches the wire.
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/status?code={code}"))
        try:
            status_line = conn.read_until(b"\r\n")
        except ConnectionClosed:
            status_line = b""
        assert not status_line.startswith(b"HTTP/1.1 %d" % code), conn.received
        assert status_line in (b"", b"HTTP/1.1 500 Internal Server Error\r\n"), conn.received


def test_return_without_completing_response(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get("/return-incomplete") + simple_get("/echo-path/next"))
        data = conn.read_until_close(5)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n"), data  # the chunked body was never terminated
    assert b"/echo-path/next" not in data
    assert server.wait_for_log(
        r"^ERROR:    ASGI callable returned without completing response\.$", "stderr", 5, mark
    ), server.since(mark)


def test_return_value_not_none(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get("/return-value"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"ok"
    assert server.wait_for_log(
        r"^ERROR:    ASGI callable should return None, but returned '42'\.$", "stderr", 5, mark
    ), server.since(mark)


# -- framing headers chosen by the app ------------------------------------------------------


def _exchange(server, kind: str) -> bytes:
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/bad-framing?kind={kind}") + simple_get("/echo-path/next"))
        # Until the server closes or the pipelined second answer has arrived (bounded).
        deadline = time.monotonic() + 3
        while not conn.eof and not conn.received.endswith(b"/echo-path/next"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                conn._recv(remaining)
            except ReadTimeout:
                break
        return bytes(conn.received)


@pytest.mark.parametrize(
    "kind",
    # Uvicorn writes "content-length: -1".
    ["cl-not-a-number", pytest.param("cl-negative", marks=pytest.mark.palfrey_only)],
)
def test_app_invalid_content_length_never_written(server, kind):
    data = _exchange(server, kind)
    assert b"content-length: abc" not in data and b"content-length: -1" not in data, data
    assert data == b"" or data.startswith(b"HTTP/1.1 500 "), data


@pytest.mark.palfrey_only  # Uvicorn writes both values (a response a proxy must reject).
def test_app_conflicting_content_lengths_refused(server):
    data = _exchange(server, "cl-two-values")
    # Never two different content-length values in one response head.
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert not (b"content-length: 3\r\n" in head + b"\r\n" and b"content-length: 5" in head), data
    assert data == b"" or data.startswith(b"HTTP/1.1 500 "), data


@pytest.mark.palfrey_only  # Uvicorn sends both headers (it does frame the body chunked).
def test_app_content_length_and_chunked_consistent(server):
    # RFC 9112 6.2/6.3: a message with Transfer-Encoding must not carry Content-Length, and
    # if it says chunked the body must be chunk-framed. Whatever the server does, the bytes on
    # the wire must parse: either a refusal (500 / close) or one coherent framing.
    data = _exchange(server, "cl-and-te")
    if not data or data.startswith(b"HTTP/1.1 500 "):
        return
    head, _, rest = data.partition(b"\r\n\r\n")
    has_te = b"\r\ntransfer-encoding: chunked" in head.lower()
    has_cl = b"\r\ncontent-length:" in head.lower()
    assert not (has_te and has_cl), f"both framing headers sent: {data!r}"
    if has_te:
        assert rest.startswith(b"3\r\nabc\r\n0\r\n\r\n"), f"not chunk-framed: {data!r}"
    else:
        assert rest.startswith(b"abc"), data


@pytest.mark.palfrey_only  # Uvicorn sends both headers and an unframed body.
def test_app_content_length_and_other_coding(server):
    # transfer-encoding: gzip (not chunked) next to content-length: the two framings disagree
    # (RFC 9112 6.2, 6.3). Refuse, or send one coherent framing; never both headers.
    data = _exchange(server, "cl-and-te-gzip")
    if not data or data.startswith(b"HTTP/1.1 500 "):
        return
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert not (b"\r\ntransfer-encoding:" in head and b"\r\ncontent-length:" in head), data


@pytest.mark.parametrize("kind", ["body-on-204", "body-on-304"])
def test_app_body_on_bodyless_status_not_written(server, kind):
    data = _exchange(server, kind)
    assert b"abc" not in data, data
    # The connection is either closed or still in sync (the next response parses).
    rest = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200 OK\r\n"), data
