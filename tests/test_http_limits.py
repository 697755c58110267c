"""Size limits (beyond Uvicorn: 431/414/413/501) and --limit-concurrency (503)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests import apps
from tests.support.client import RawConn, assert_error_response, raw_request, send_expect_error
from tests.support.harness import Harness, check_invariants
from tests.support.server import check_one_warning, wait_for_note

H = b"Host: example.org\r\n"
MSG_431 = "Request header fields too large."
MSG_414 = "Request target too long."
MSG_413 = "Request body too large."


def with_headers(n_extra: int, value: bytes = b"v", path: bytes = b"/") -> bytes:
    return (
        b"GET "
        + path
        + b" HTTP/1.1\r\n"
        + H
        + b"".join(b"X-H%d: %s\r\n" % (i, value) for i in range(n_extra))
        + b"\r\n"
    )


# -- defaults -------------------------------------------------------------------------------

pytestmark_palfrey = pytest.mark.palfrey_only


@pytestmark_palfrey
def test_default_header_count_limit(server):
    # Default 100 headers: Host + 99 is fine, Host + 100 is one too many.
    resp, conn = raw_request(server.port, with_headers(99))
    with conn:
        assert resp.status == 200, resp
    mark = server.mark()
    resp, conn = send_expect_error(server.port, with_headers(100), 431)
    conn.close()
    check_one_warning(server, mark, MSG_431, port=resp.client_port)


@pytestmark_palfrey
def test_default_header_line_limit(server):
    resp, conn = raw_request(server.port, with_headers(1, b"a" * 7000))
    with conn:
        assert resp.status == 200, resp
    mark = server.mark()
    resp, conn = send_expect_error(server.port, with_headers(1, b"a" * 9000), 431)
    conn.close()
    check_one_warning(server, mark, MSG_431, port=resp.client_port)


@pytestmark_palfrey
def test_default_header_section_limit(server):
    # 8 x 7000 = 56 000 bytes is under 64 KiB; 10 x 7000 = 70 000 is over.
    resp, conn = raw_request(server.port, with_headers(8, b"b" * 7000))
    with conn:
        assert resp.status == 200, resp
    mark = server.mark()
    resp, conn = send_expect_error(server.port, with_headers(10, b"b" * 7000), 431)
    conn.close()
    check_one_warning(server, mark, MSG_431, port=resp.client_port)


@pytestmark_palfrey
def test_default_target_limit(server):
    resp, conn = raw_request(server.port, with_headers(0, path=b"/echo-path/" + b"a" * 8000))
    with conn:
        assert resp.status == 200 and len(resp.body) == len(b"/echo-path/") + 8000
    mark = server.mark()
    resp, conn = send_expect_error(server.port, with_headers(0, path=b"/" + b"a" * 9000), 414)
    conn.close()
    check_one_warning(server, mark, MSG_414, port=resp.client_port)


@pytestmark_palfrey
def test_default_target_limit_counts_query(server):
    _, conn = send_expect_error(server.port, with_headers(0, path=b"/?q=" + b"a" * 9000), 414)
    conn.close()


@pytestmark_palfrey
def test_default_no_body_limit(server):
    data = b"z" * (3 << 20)
    r = httpx.post(server.url("/body-info"), content=data, timeout=10)
    assert r.status_code == 200 and r.json()["length"] == len(data)


@pytestmark_palfrey
def test_endless_header_section_is_cut(server):
    # Headers that never end must not be buffered without bound: closed (431 if readable).
    with RawConn(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\n" + H)
        for i in range(200):
            if not conn.try_send(b"X-Filler-%d: %s\r\n" % (i % 50, b"f" * 1000)):
                break
        assert conn.wait_closed(5), "server kept reading an oversized header section"
        data = bytes(conn.received)
        assert data == b"" or data.startswith(b"HTTP/1.1 431 "), data[:200]


# -- custom limits --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(module_server_factory):
    return module_server_factory(
        "tests.apps:app",
        "--limit-header-count",
        "5",
        "--limit-header-line-size",
        "100",
        "--limit-header-size",
        "1000",
        "--limit-target-size",
        "50",
        "--limit-body-size",
        "10",
    )


@pytestmark_palfrey
def test_custom_header_count(small):
    resp, conn = raw_request(small.port, with_headers(4))
    with conn:
        assert resp.status == 200, resp
    mark = small.mark()
    resp, conn = send_expect_error(small.port, with_headers(5), 431)
    conn.close()
    check_one_warning(small, mark, MSG_431, port=resp.client_port)


@pytestmark_palfrey
def test_custom_header_line_size(small):
    resp, conn = raw_request(small.port, with_headers(1, b"a" * 60))
    with conn:
        assert resp.status == 200, resp
    resp, conn = send_expect_error(small.port, with_headers(1, b"a" * 150), 431)
    conn.close()


@pytestmark_palfrey
def test_custom_long_header_name(small):
    req = b"GET / HTTP/1.1\r\n" + H + b"X-" + b"n" * 150 + b": v\r\n\r\n"
    _, conn = send_expect_error(small.port, req, 431)
    conn.close()


@pytest.fixture(scope="module")
def section(module_server_factory):
    return module_server_factory("tests.apps:app", "--limit-header-size", "1000")


@pytestmark_palfrey
def test_custom_header_section_size(section):
    resp, conn = raw_request(section.port, with_headers(3, b"c" * 180))
    with conn:
        assert resp.status == 200, resp
    mark = section.mark()
    resp, conn = send_expect_error(section.port, with_headers(8, b"c" * 180), 431)
    conn.close()
    check_one_warning(section, mark, MSG_431, port=resp.client_port)


@pytestmark_palfrey
def test_custom_target_size(small):
    path = b"/echo-path/" + b"a" * (50 - len(b"/echo-path/"))
    assert len(path) == 50
    resp, conn = raw_request(small.port, with_headers(0, path=path))
    with conn:
        assert resp.status == 200 and resp.body == path
    mark = small.mark()
    resp, conn = send_expect_error(small.port, with_headers(0, path=path + b"b"), 414)
    conn.close()
    check_one_warning(small, mark, MSG_414, port=resp.client_port)


@pytestmark_palfrey
def test_custom_body_limit_content_length(small):
    resp, conn = raw_request(
        small.port, b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n0123456789"
    )
    with conn:
        assert resp.status == 200 and resp.body == b"0123456789"
    mark = small.mark()
    resp, conn = send_expect_error(
        small.port, b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n0123456789A", 413
    )
    conn.close()
    check_one_warning(small, mark, MSG_413, access_log_allowed=True, port=resp.client_port)


@pytestmark_palfrey
def test_custom_body_limit_chunked(small):
    ok = (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
    )
    resp, conn = raw_request(small.port, ok)
    with conn:
        assert resp.status == 200 and resp.body == b"0123456789"
    bad = (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\n01234\r\n5\r\n56789\r\n1\r\nA\r\n0\r\n\r\n"
    )
    resp, conn = send_expect_error(small.port, bad, 413)
    conn.close()


@pytestmark_palfrey
def test_custom_body_limit_unread_body(small):
    # Even if the app never reads the body, an oversized declared body is refused.
    _, conn = send_expect_error(
        small.port, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000, 413
    )
    conn.close()


# -- concurrency limit ----------------------------------------------------------------------
# With Uvicorn's rule ("open connections >= N or running tasks >= N" counted while the request
# is being handled, the current connection included), N=1 refuses every request; N=2 lets one
# connection work and refuses a second concurrent one.


def test_limit_concurrency(server_factory):
    s = server_factory("tests.apps:app", "--limit-concurrency", "2")
    with RawConn(s.port) as first:
        # A lone connection is served...
        first.send(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert first.read_response().status == 200
        # ... and keeps being served while it is the only one: now with a slow request.
        first.send(b"GET /slow?t=1.5&id=limit HTTP/1.1\r\n" + H + b"\r\n")
        wait_for_note(s, "slow limit started")
        mark = s.mark()
        resp, conn = raw_request(s.port, b"GET /echo-path/second HTTP/1.1\r\n" + H + b"\r\n")
        with conn:
            assert_error_response(resp, conn, 503)
        check_one_warning(s, mark, "Exceeded concurrency limit.", access_log_allowed=True)
        # Logged like any response (as Uvicorn does).
        assert s.wait_for_log(
            r'"GET /echo-path/second HTTP/1\.1" 503 Service Unavailable$', "stdout", 5, mark
        ), s.since(mark, "stdout")
        # The in-flight request is unaffected.
        r = first.read_response()
        assert r.status == 200 and r.body == b"slow done"


def test_limit_concurrency_one_counts_own_connection(server_factory):
    # SPEC/Uvicorn rule: "open connections >= N" includes the requesting connection itself,
    # so with N=1 even a lone request is refused.
    s = server_factory("tests.apps:app", "--limit-concurrency", "1")
    mark = s.mark()
    resp, conn = raw_request(s.port, b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    with conn:
        assert_error_response(resp, conn, 503)
    check_one_warning(s, mark, "Exceeded concurrency limit.", access_log_allowed=True)


@pytestmark_palfrey
def test_custom_body_limit_chunked_unread(small):
    # The app answers without reading; the oversized chunked body must still not be accepted
    # as a prelude to the next request: 413 (or the answer) and then the connection closes.
    body = b"3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n"
    with RawConn(small.port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + body
            + b"GET /echo-path/next HTTP/1.1\r\n"
            + H
            + b"\r\n"
        )
        first = conn.read_response()
        assert first.status in (413, 200), first
        rest = conn.read_until_close(5)
        assert b"/echo-path/next" not in rest, rest


@pytestmark_palfrey
def test_raised_header_size_limit_large_head(server_factory):
    # With the section limit raised, a 560 KB head (70 lines of 8000 bytes) must arrive
    # intact even when it is far larger than any input buffer and arrives in pieces.
    s = server_factory("tests.apps:scope_app", "--limit-header-size", "1048576")
    values, req = big_head()
    with RawConn(s.port, timeout=10) as conn:
        for i in range(0, len(req), 30011):
            conn.send(req[i : i + 30011])
        resp = conn.read_response()
        assert resp.status == 200, resp
        headers = json.loads(resp.body)["headers"]
    assert headers[0] == ["host", "example.org"]
    assert headers[1:] == [[f"x-big-{i}", v.decode()] for i, v in enumerate(values)]


@pytestmark_palfrey
def test_raised_header_size_limit_large_head_in_odd_reads():
    # The same head in reads of 30011 bytes exactly (in-process), so that names, values and
    # line ends straddle reads at known places as the input buffer grows.
    values, req = big_head()
    with Harness(apps.scope_app, limit_header_size=1048576) as harness:
        (resp,) = check_invariants(
            harness.run_connection([req[i : i + 30011] for i in range(0, len(req), 30011)])
        )
    assert resp.status == 200, resp
    headers = json.loads(resp.body)["headers"]
    assert headers[0] == ["host", "example.org"]
    assert headers[1:] == [[f"x-big-{i}", v.decode()] for i, v in enumerate(values)]


def big_head() -> tuple[list[bytes], bytes]:
    """70 header lines of 8000 bytes: (their values, the request)."""
    values = [bytes([97 + i % 26]) * 8000 for i in range(70)]
    req = (
        b"GET /big-head HTTP/1.1\r\n"
        + H
        + b"".join(b"X-Big-%d: %s\r\n" % (i, v) for i, v in enumerate(values))
        + b"\r\n"
    )
    return values, req
