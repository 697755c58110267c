"""Beyond Uvicorn: the request header and body timeouts (slowloris, stalled uploads).

The core checks deadlines once a second, so a 1 s timeout fires within about 2 s; every wait
here is bounded well above that, and nothing asserts on how long it took.
"""

from __future__ import annotations

import time

import pytest

from tests.support.client import RawConn

pytestmark = pytest.mark.palfrey_only

H = b"Host: example.org\r\n"

ERROR_408 = b"Request timeout."


@pytest.fixture(scope="module")
def quick(module_server_factory):
    return module_server_factory(
        "tests.apps:app",
        "--timeout-request-header", "1",
        "--timeout-request-body", "1",
        "--timeout-keep-alive", "30",
    )


def _expect_408(conn: RawConn) -> None:
    resp = conn.read_response()
    assert resp.status == 408 and resp.body == ERROR_408, resp
    assert b"close" in resp.connection_tokens(), resp.head
    assert conn.wait_closed(5.0)


def test_incomplete_head_gets_408(quick):
    with RawConn(quick.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\n" + H)  # the blank line never comes
        _expect_408(conn)


def test_stalled_body_gets_408_and_app_sees_disconnect(quick):
    with RawConn(quick.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc")
        _expect_408(conn)


def test_trickling_body_within_timeout_is_served(quick):
    # Each piece arrives well inside the body timeout: the deadline moves with the data.
    with RawConn(quick.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\n")
        for piece in (b"a", b"b", b"c", b"d"):
            time.sleep(0.4)  # a client trickling its body (the behaviour under test)
            conn.send(piece)
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"abcd", resp


def test_idle_keep_alive_is_not_a_header_timeout(quick):
    # Between requests the keep-alive timeout (30 s here) applies, not the 1 s head timeout.
    with RawConn(quick.port) as conn:
        conn.send(b"GET /echo-path/a HTTP/1.1\r\n" + H + b"\r\n")
        assert conn.read_response().status == 200
        assert conn.is_open_now(wait=2.5), "an idle keep-alive connection was cut early"
        conn.send(b"GET /echo-path/b HTTP/1.1\r\n" + H + b"\r\n")
        assert conn.read_response().body == b"/echo-path/b"
