"""--interface asgi2/wsgi (WSGI apps in a thread pool) and --reset-contextvars."""

from __future__ import annotations

import json

import pytest

from tests.support.client import RawConn, raw_request, simple_get
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only


@pytest.fixture(scope="module")
def wsgi():
    proc = Proc("tests.apps_config:wsgi_app", "--port", "0", "--interface", "wsgi",
                "--root-path", "/mnt").start()
    yield proc
    proc.stop()


def test_wsgi_environ(wsgi):
    resp, conn = raw_request(wsgi.port, simple_get(
        "/info?a=1&b=%20", b"Content-Type: text/plain\r\nX-Custom: one\r\nX-Custom: two\r\n"
                               b"X_Smuggled: yes\r\n"))
    conn.close()
    assert resp.status == 201, resp
    env = json.loads(resp.body)
    assert env == {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/mnt", "PATH_INFO": "/info",
        "QUERY_STRING": "a=1&b=%20", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(wsgi.port),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "text/plain",
        "HTTP_X_CUSTOM": "one,two", "HTTP_X_SMUGGLED": None, "wsgi.url_scheme": "http",
    }


def test_wsgi_body_echo_content_length_and_chunked(wsgi):
    body = bytes(range(256)) * 1000
    resp, conn = raw_request(wsgi.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
    conn.close()
    assert resp.status == 200 and resp.body == body
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    resp, conn = raw_request(wsgi.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    conn.close()
    assert resp.body == b"hello world"


def test_wsgi_input_lines(wsgi):
    body = b"one\ntwo\nthree"
    resp, conn = raw_request(wsgi.port, b"POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
    conn.close()
    assert json.loads(resp.body) == ["one\n", "two\n", "three"]
    # A line longer than what the server reads ahead of the app (64 KiB) still arrives whole.
    body = b"x" * 200_000 + b"\nend"
    resp, conn = raw_request(wsgi.port, b"POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
    conn.close()
    assert json.loads(resp.body) == ["x" * 200_000 + "\n", "end"]


def test_wsgi_streaming_and_keepalive(wsgi):
    mark = wsgi.mark()
    with RawConn(wsgi.port) as conn:
        for _ in range(2):
            conn.send(simple_get("/stream"))
            resp = conn.read_response()
            assert resp.status == 200 and resp.chunked
            assert resp.body == b"".join(b"chunk%d;" % i for i in range(5))
    # PEP 3333: close() once the iteration is over, for each of the two responses.
    first = wsgi.wait_for_log("wsgi-close stream after 5 chunks", "stderr", 5, mark)
    second = wsgi.wait_for_log("wsgi-close stream after 5 chunks", "stderr", 5,
                               {**mark, "stderr": _line_after(wsgi, mark, first)})  # fmt: skip
    assert first and second


def test_wsgi_client_gone_stops_iteration_and_closes(wsgi):
    # The app would give a chunk every 0.5 s for 20 s; the client reads the first and goes.
    mark = wsgi.mark()
    with RawConn(wsgi.port) as conn:
        conn.send(simple_get("/drip"))
        assert conn.read_until(b"chunk0;").startswith(b"HTTP/1.1 200 ")
    m = wsgi.wait_for_log(r"wsgi-close drip after (\d+) chunks", "stderr", 8, mark)
    assert m is not None, wsgi.since(mark)
    # Noticed at the next chunk (or the one after, if the close raced with it), not at 40.
    assert int(m.group(1)) <= 3, m.group(0)
    assert not [x for x in wsgi.since(mark) if "Exception" in x or "Traceback" in x]


def test_wsgi_error_during_iteration_closes_iterable_and_connection(wsgi):
    mark = wsgi.mark()
    with RawConn(wsgi.port) as conn:
        conn.send(simple_get("/fail-mid"))
        data = conn.read_until_close()
    # Headers and two chunks went out; the error then cuts the connection (no final chunk).
    assert data.startswith(b"HTTP/1.1 200 ") and b"chunk1;" in data, data
    assert not data.endswith(b"0\r\n\r\n"), data
    assert wsgi.wait_for_log("wsgi-close fail-mid after 2 chunks", "stderr", 5, mark)
    assert wsgi.wait_for_log("RuntimeError: wsgi fail-mid failed at chunk 2", "stderr", 5, mark)


def test_wsgi_exception_is_500(wsgi):
    mark = wsgi.mark()
    resp, conn = raw_request(wsgi.port, simple_get("/error"))
    conn.close()
    assert resp.status == 500 and resp.body == b"Internal Server Error"
    assert wsgi.wait_for_log("ERROR:    Exception in ASGI application", "stderr", 5, mark)
    assert wsgi.wait_for_log("RuntimeError: wsgi boom", "stderr", 5, mark)


def test_asgi2_explicit_and_auto():
    for args in (("--interface", "asgi2"), ()):
        proc = Proc("tests.apps_config:asgi2_app", "--port", "0", *args).start()
        try:
            resp, conn = raw_request(proc.port, simple_get("/two"))
            conn.close()
            assert resp.status == 200 and resp.body == b"asgi2 /two"
        finally:
            proc.stop()


@pytest.mark.parametrize("reset, expected", [(False, "from-import"), (True, "unset")])
def test_reset_contextvars(reset, expected):
    args = ("--reset-contextvars",) if reset else ()
    proc = Proc("tests.apps_config:record_lifespan", "--port", "0", *args).start()
    try:
        resp, conn = raw_request(proc.port, simple_get("/"))
        conn.close()
        data = json.loads(resp.body)
        assert data["var"] == expected
        assert data["state"]["db"] == "connected"
    finally:
        proc.stop()


def _line_after(proc, mark: dict[str, int], match) -> int:
    """The index just past the first line at or after ``mark`` that ``match`` was found in."""
    lines = proc.since(mark)
    return mark["stderr"] + next(i for i, x in enumerate(lines) if match and match.group(0) in x) + 1
