"""The status line and the header fields of responses: the server's defaults (server, date,
--header), status phrases, the app's fields as they reach the wire."""

from __future__ import annotations

import re

import pytest

from tests.support.client import RawConn, raw_request, simple_get
from tests.support.common import IS_PALFREY, SERVER_NAME, wait_until

DATE_RE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    rb"\d{2}:\d{2}:\d{2} GMT"
)


def test_status_line_and_default_headers(server):
    resp, conn = raw_request(server.port, simple_get("/"))
    with conn:
        assert resp.head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert resp.body == b"Hello, world!"
        assert resp.get_all("server") == [SERVER_NAME]
        dates = resp.get_all("date")
        assert len(dates) == 1 and DATE_RE.fullmatch(dates[0]), dates
        assert resp.get("content-length") == b"13"
        assert resp.get("content-type") == b"text/plain"
        # Header names are lower case on the wire.
        for name in resp.header_names():
            assert name == name.lower(), resp.head


@pytest.mark.parametrize(
    "code,phrase",
    [
        (201, b"Created"),
        (404, b"Not Found"),
        (418, b"I'm a Teapot"),
        (500, b"Internal Server Error"),
        (503, b"Service Unavailable"),
    ],
)
def test_status_phrases(server, code, phrase):
    resp, conn = raw_request(server.port, simple_get(f"/status?code={code}"))
    with conn:
        assert resp.head.startswith(b"HTTP/1.1 %d %s\r\n" % (code, phrase)), resp.head


@pytest.mark.parametrize("code", [299, 599])
def test_unknown_status_code_empty_phrase(server, code):
    resp, conn = raw_request(server.port, simple_get(f"/status?code={code}"))
    with conn:
        assert resp.head.startswith(b"HTTP/1.1 %d \r\n" % code), resp.head


def test_app_header_names_lowercased_values_raw(server):
    resp, conn = raw_request(server.port, simple_get("/headers-out"))
    with conn:
        assert b"\r\nx-mixed-case: Value With Spaces\r\n" in resp.head
        assert resp.get_all("x-dup") == [b"one", b"two"]
        assert b"\r\nx-tab: a\tb\r\n" in resp.head


def test_response_header_obs_text_allowed(server):
    resp, conn = raw_request(server.port, simple_get("/headers-out"))
    with conn:
        assert b"\r\nx-latin: caf\xe9 \x80\r\n" in resp.head


def test_huge_response_head(server):
    with RawConn(server.port, timeout=10) as conn:
        conn.send(simple_get("/odd?kind=many-headers") + simple_get("/echo-path/next"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"ok"
        got = [(k, v) for k, v in resp.raw_headers if k.startswith(b"x-h")]
        assert got == [(b"x-h%d" % i, bytes([97 + i % 26]) * 500) for i in range(2000)]
        assert conn.read_response().body == b"/echo-path/next"


@pytest.mark.palfrey_only  # Uvicorn sends both the default and the app's server header.
def test_app_server_header_replaces_default(server):
    resp, conn = raw_request(server.port, simple_get("/server-header"))
    with conn:
        assert resp.get_all("server") == [b"my-app/1.0"], resp.head


def test_app_server_header_any_case_replaces_default(server):
    resp, conn = raw_request(server.port, simple_get("/resp-headers?SeRvEr=Mixed"))
    with conn:
        servers = [v for k, v in resp.raw_headers if k.lower() == b"server"]
        if IS_PALFREY:
            assert servers == [b"Mixed"], resp.head
        assert b"\r\nserver: Mixed\r\n" in resp.head  # name lower-cased, value raw


def test_header_option_and_custom_server(server_factory):
    s = server_factory(
        "tests.apps:app",
        "--header", "X-Extra:yes",
        "--header", "server:custom-srv",
        "--header", "X-Url:http://a:b",
    )  # fmt: skip
    resp, conn = raw_request(s.port, simple_get("/"))
    with conn:
        assert resp.status == 200
        assert resp.get_all("x-extra") == [b"yes"]
        assert resp.get_all("server") == [b"custom-srv"], resp.head
        assert b"\r\nx-extra: yes\r\n" in resp.head
        # Split on the first colon only.
        assert resp.get_all("x-url") == [b"http://a:b"], resp.head
        # Default headers are on error responses too.
        conn.send(b"G(T / HTTP/1.1\r\n\r\n")
        err = conn.read_response()
        assert err.status == 400
        assert err.get_all("x-extra") == [b"yes"], err.head
        assert err.get_all("server") == [b"custom-srv"], err.head


def test_header_option_capitalised_server(server_factory):
    s = server_factory("tests.apps:app", "--header", "Server:Custom/2")
    resp, conn = raw_request(s.port, simple_get("/"))
    with conn:
        assert resp.get_all("server") == [b"Custom/2"], resp.head
        assert b"\r\nserver: Custom/2\r\n" in resp.head


def test_no_server_no_date_header(server_factory):
    s = server_factory("tests.apps:app", "--no-server-header", "--no-date-header")
    resp, conn = raw_request(s.port, simple_get("/"))
    with conn:
        assert resp.status == 200
        assert resp.get("server") is None, resp.head
        assert resp.get("date") is None, resp.head
        assert resp.body == b"Hello, world!"


def test_date_header_refreshes(server):
    def date() -> bytes:
        resp, conn = raw_request(server.port, simple_get("/"))
        conn.close()
        return resp.get("date")

    first = date()
    # Refreshed once a second: within a bounded wait a later request shows a new value.
    assert wait_until(lambda: date() != first, timeout=4, interval=0.3), (
        f"date header stuck at {first!r}"
    )
