"""Basic responses, default headers, the ASGI scope, response framing."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.client import RawConn, raw_request, simple_get
from tests.support.common import IS_PALFREY, SERVER_NAME

DATE_RE = re.compile(
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    rb"\d{2}:\d{2}:\d{2} GMT"
)


def get_scope(port: int, request: bytes) -> tuple[dict, RawConn]:
    resp, conn = raw_request(port, request)
    assert resp.status == 200, resp
    return json.loads(resp.body), conn


# -- status line and default headers -------------------------------------------------------


def test_hello_httpx(server):
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.http_version == "HTTP/1.1"


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


def test_app_header_names_lowercased_values_raw(server):
    resp, conn = raw_request(server.port, simple_get("/headers-out"))
    with conn:
        assert b"\r\nx-mixed-case: Value With Spaces\r\n" in resp.head
        assert resp.get_all("x-dup") == [b"one", b"two"]
        assert b"\r\nx-tab: a\tb\r\n" in resp.head


@pytest.mark.palfrey_only  # Uvicorn sends both the default and the app's server header.
def test_app_server_header_replaces_default(server):
    resp, conn = raw_request(server.port, simple_get("/server-header"))
    with conn:
        assert resp.get_all("server") == [b"my-app/1.0"], resp.head


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


def test_no_server_no_date_header(server_factory):
    s = server_factory("tests.apps:app", "--no-server-header", "--no-date-header")
    resp, conn = raw_request(s.port, simple_get("/"))
    with conn:
        assert resp.status == 200
        assert resp.get("server") is None, resp.head
        assert resp.get("date") is None, resp.head
        assert resp.body == b"Hello, world!"


# -- scope ---------------------------------------------------------------------------------


def test_scope_basic(server):
    req = (
        b"GET /scope?a=1&b=%20x HTTP/1.1\r\nHost: example.org\r\nX-Mixed: AbC dEf\r\n"
        b"X-Dup: 1\r\nUser-Agent: raw\r\nX-Dup: 2\r\n\r\n"
    )
    scope, conn = get_scope(server.port, req)
    with conn:
        assert scope["type"] == "http"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
        assert scope["http_version"] == "1.1"
        assert scope["scheme"] == "http"
        assert scope["method"] == "GET"
        assert scope["path"] == "/scope"
        assert scope["raw_path"] == "/scope"
        assert scope["query_string"] == "a=1&b=%20x"
        assert scope["root_path"] == ""
        assert scope["server"] == ["127.0.0.1", server.port]
        assert scope["client"] == ["127.0.0.1", conn.local_port]
        assert scope["headers"] == [
            ["host", "example.org"],
            ["x-mixed", "AbC dEf"],
            ["x-dup", "1"],
            ["user-agent", "raw"],
            ["x-dup", "2"],
        ]
        types = scope["_types"]
        assert types["raw_path"] == "bytes"
        assert types["query_string"] == "bytes"
        assert types["path"] == "str"
        assert types["headers.parts"] == ["bytes"]
        assert types["state"] == "dict"
        assert types["server"] in ("tuple", "list")


@pytest.fixture(scope="module")
def scope_server(module_server_factory):
    return module_server_factory("tests.apps:scope_app")


def test_scope_path_decoding(scope_server):
    req = simple_get("/caf%C3%A9/a%20b%2Fc?x=%20y+z")
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert scope["path"] == "/caf\u00e9/a b/c"
        assert scope["raw_path"] == "/caf%C3%A9/a%20b%2Fc"
        assert scope["query_string"] == "x=%20y+z"


def test_scope_absolute_form(scope_server):
    req = b"GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert scope["path"] == "/a/b"
        assert scope["raw_path"] == "/a/b"
        assert scope["query_string"] == "x=1"


def test_scope_no_query(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("/plain"))
    with conn:
        assert scope["query_string"] == ""
        assert scope["_types"]["query_string"] == "bytes"


def test_scope_empty_query(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("/p?"))
    with conn:
        assert scope["path"] == "/p"
        assert scope["raw_path"] == "/p"
        assert scope["query_string"] == ""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_scope_methods(scope_server, method):
    req = method.encode() + b" /m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert scope["method"] == method
        assert scope["_body"] == "abc"


def test_scope_http10(scope_server):
    scope, conn = get_scope(scope_server.port, b"GET /old HTTP/1.0\r\n\r\n")
    with conn:
        assert scope["http_version"] == "1.0"
        assert scope["headers"] == []


def test_scope_header_value_raw_bytes(scope_server):
    # obs-text (bytes >= 0x80) is allowed in field values and passed through untouched.
    req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9 \x80\xff\r\n\r\n"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert ["x-latin", "caf\xe9 \x80\xff"] in scope["headers"]


def test_scope_state_is_copied_per_request(server):
    # Lifespan stored {"lifespan": "started"}; /scope mutates its copy; /state shows a fresh one.
    with httpx.Client(timeout=5) as client:
        s1 = client.get(server.url("/scope")).json()
        assert s1["state"] == {"lifespan": "started"}
        s2 = client.get(server.url("/state")).json()
        assert s2 == {"lifespan": "started"}


def test_root_path(server_factory):
    s = server_factory("tests.apps:scope_app", "--root-path", "/api")
    scope, conn = get_scope(s.port, simple_get("/items/a%20b?q=1"))
    with conn:
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/items/a b"
        assert scope["raw_path"] == "/api/items/a%20b"
        assert scope["query_string"] == "q=1"


# -- response framing -----------------------------------------------------------------------


def test_chunked_response_framing(server):
    resp, conn = raw_request(server.port, simple_get("/stream?n=5"))
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


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server, code):
    with RawConn(server.port) as conn:
        conn.send(simple_get(f"/status?code={code}") + simple_get("/"))
        r1 = conn.read_response()
        assert r1.status == code
        assert r1.get("transfer-encoding") is None, r1.head
        r2 = conn.read_response()
        assert r2.status == 200 and r2.body == b"Hello, world!"


def test_head_keeps_headers_drops_body(server):
    with RawConn(server.port) as conn:
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


def test_large_response(server):
    r = httpx.get(server.url("/big?size=3000000"), timeout=10)
    assert r.status_code == 200
    assert len(r.content) == 3000000
    block = bytes(range(256)) * 256
    assert r.content[:65536] == block and r.content[-10:] == (block * 46)[3000000 - 10 : 3000000]


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


def test_date_header_refreshes(server):
    def date() -> bytes:
        resp, conn = raw_request(server.port, simple_get("/"))
        conn.close()
        return resp.get("date")

    first = date()
    # Refreshed once a second: within a bounded wait a later request shows a new value.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if date() != first:
            break
    else:
        raise AssertionError(f"date header stuck at {first!r}")


def test_response_many_small_chunks(server):
    resp, conn = raw_request(server.port, simple_get("/stream?n=1000"))
    with conn:
        assert resp.chunks == [b"chunk-%d\n" % i for i in range(1000)]


def test_app_declared_chunked_not_doubled(server):
    resp, conn = raw_request(server.port, simple_get("/app-chunked"))
    with conn:
        assert resp.get_all("transfer-encoding") == [b"chunked"], resp.head
        assert resp.body == b"abcdef"
        conn.send(simple_get("/echo-path/after"))
        assert conn.read_response().body == b"/echo-path/after"


def test_response_header_obs_text_allowed(server):
    resp, conn = raw_request(server.port, simple_get("/headers-out"))
    with conn:
        assert b"\r\nx-latin: caf\xe9 \x80\r\n" in resp.head


@pytest.mark.palfrey_only  # RFC 9110 5.5: OWS around a field value is not part of it.
def test_request_header_value_ows_stripped(scope_server):
    scope, conn = get_scope(
        scope_server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad:   v w  \r\nX-Tab:\tt\t\r\n\r\n"
    )
    with conn:
        assert ["x-pad", "v w"] in scope["headers"], scope["headers"]
        assert ["x-tab", "t"] in scope["headers"], scope["headers"]


def test_request_header_names_lowercased(scope_server):
    scope, conn = get_scope(
        scope_server.port,
        b"GET / HTTP/1.1\r\nHOST: x\r\nX_UNDER_Score: 1\r\nAccept-ENCODING: gzip\r\n\r\n",
    )
    with conn:
        assert scope["headers"] == [
            ["host", "x"],
            ["x_under_score", "1"],
            ["accept-encoding", "gzip"],
        ]


def test_path_not_normalised(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("//double/./a/../b%2e"))
    with conn:
        assert scope["path"] == "//double/./a/../b."
        assert scope["raw_path"] == "//double/./a/../b%2e"


def test_path_bad_percent_sequences(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("/a%FFb%zz%"))
    with conn:
        assert scope["path"] == "/a\ufffdb%zz%"
        assert scope["raw_path"] == "/a%FFb%zz%"


def test_fragment_not_in_query(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("/a?b=1#frag"))
    with conn:
        assert scope["path"] == "/a"
        assert scope["query_string"] == "b=1"


def test_header_option_capitalised_server(server_factory):
    s = server_factory("tests.apps:app", "--header", "Server:Custom/2")
    resp, conn = raw_request(s.port, simple_get("/"))
    with conn:
        assert resp.get_all("server") == [b"Custom/2"], resp.head
        assert b"\r\nserver: Custom/2\r\n" in resp.head


def test_slow_reader_large_response(server):
    # Backpressure: the client reads slowly at first; every byte still arrives in order.
    size = 8 << 20
    with RawConn(server.port, timeout=10) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.send(simple_get(f"/big?size={size}"))
        time.sleep(0.5)  # let the server fill the pipe
        resp = conn.read_response()
        assert resp.status == 200 and len(resp.body) == size
        block = bytes(range(256)) * 256
        assert resp.body == (block * (size // len(block) + 1))[:size]
        conn.send(simple_get("/echo-path/after"))
        assert conn.read_response().body == b"/echo-path/after"


def test_upgrade_h2c_warns(server):
    mark = server.mark()
    req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    resp, conn = raw_request(server.port, req)
    with conn:
        assert resp.status == 200
    assert server.wait_for_log(r"^WARNING:  Unsupported upgrade request\.$", "stderr", 5, mark)


@pytest.mark.parametrize(
    "target,path,raw_path,query",
    [
        (b"*", "*", "*", ""),
        (b"/a%3Fb", "/a?b", "/a%3Fb", ""),
        (b"https://user:pw@example.com:8443/p?q", "/p", "/p", "q"),
        pytest.param(b"http://example.com", "/", "/", "", marks=pytest.mark.palfrey_only),
        pytest.param(b"http://example.com?x=1", "/", "/", "x=1", marks=pytest.mark.palfrey_only),
    ],
)
def test_scope_target_forms(scope_server, target, path, raw_path, query):
    method = b"OPTIONS" if target == b"*" else b"GET"
    scope, conn = get_scope(
        scope_server.port, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with conn:
        assert (scope["path"], scope["raw_path"], scope["query_string"]) == (path, raw_path, query)


def test_empty_host_is_valid(scope_server):
    # RFC 9112 3.2: an empty Host value is allowed (it is the absence that is an error).
    scope, conn = get_scope(scope_server.port, b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
    with conn:
        assert scope["headers"] == [["host", ""]]


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


@pytest.mark.parametrize("code", [299, 599])
def test_unknown_status_code_empty_phrase(server, code):
    resp, conn = raw_request(server.port, simple_get(f"/status?code={code}"))
    with conn:
        assert resp.head.startswith(b"HTTP/1.1 %d \r\n" % code), resp.head


def test_unix_socket_scope(server_factory, tmp_path):
    path = str(tmp_path / "palfrey.sock")
    s = server_factory("tests.apps:scope_app", "--uds", path)
    assert s.uds == path
    assert os.stat(path).st_mode & 0o777 == 0o666
    with RawConn(0, uds=path) as conn:
        conn.send(simple_get("/over-uds?x=1"))
        resp = conn.read_response()
        assert resp.status == 200
        scope = json.loads(resp.body)
        assert scope["client"] is None
        assert scope["path"] == "/over-uds" and scope["query_string"] == "x=1"
        conn.send(simple_get("/second"))
        assert json.loads(conn.read_response().body)["path"] == "/second"
    s.stop()
    if IS_PALFREY:  # SPEC 5 (Uvicorn leaves the file behind after SIGTERM)
        assert not os.path.exists(path), "unix socket file not removed on exit"


LLHTTP_METHODS = [
    "DELETE",
    "GET",
    "POST",
    "PUT",
    "OPTIONS",
    "TRACE",
    "COPY",
    "LOCK",
    "MKCOL",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "SEARCH",
    "UNLOCK",
    "BIND",
    "REBIND",
    "UNBIND",
    "ACL",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "M-SEARCH",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PATCH",
    "PURGE",
    "MKCALENDAR",
    "LINK",
    "UNLINK",
    "SOURCE",
    "QUERY",
]


def test_all_http_methods(scope_server):
    with RawConn(scope_server.port) as conn:
        for m in LLHTTP_METHODS:
            conn.send(m.encode() + b" /m HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = conn.read_response()
            assert resp.status == 200, (m, resp)
            assert json.loads(resp.body)["method"] == m


@pytest.mark.parametrize("method", [b"DESCRIBE", b"SETUP", b"PLAY", b"FOO", b"GETX", b"GE"])
def test_unknown_methods_refused(server, method):
    from tests.support.client import send_expect_error

    _, conn = send_expect_error(server.port, method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400)
    conn.close()


@pytest.mark.parametrize(
    "name",
    [
        b"Content-Typ",
        b"Content-Typee",
        b"Hos",
        b"Hostx",
        b"Accept-",
        b"Content-Lengthy",
        b"X-Forwarded-Fo",
        b"Cookie2",
        b"Connectio",
        b"Transfer-Encodin",
        b"Expec",
        b"Upgrade-Insecure-Requests",
    ],
)
def test_near_miss_header_names(scope_server, name):
    # Known-name lookup tables must match whole names only.
    req = b"GET / HTTP/1.1\r\nHost: x\r\n" + name + b": v1\r\n" + name.upper() + b": v2\r\n\r\n"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        low = name.decode().lower()
        assert scope["headers"] == [["host", "x"], [low, "v1"], [low, "v2"]]


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


def test_ipv6_scope(server_factory):
    s = server_factory("tests.apps:scope_app", "--host", "::1")
    with RawConn(s.port, host="::1") as conn:
        conn.send(simple_get("/v6"))
        resp = conn.read_response()
        scope = json.loads(resp.body)
        assert scope["server"] == ["::1", s.port]
        assert scope["client"] == ["::1", conn.local_port]
        assert resp.status == 200


def test_app_server_header_any_case_replaces_default(server):
    resp, conn = raw_request(server.port, simple_get("/resp-headers?SeRvEr=Mixed"))
    with conn:
        servers = [v for k, v in resp.raw_headers if k.lower() == b"server"]
        if IS_PALFREY:
            assert servers == [b"Mixed"], resp.head
        assert b"\r\nserver: Mixed\r\n" in resp.head  # name lower-cased, value raw


def test_app_connection_close_any_case(server):
    with RawConn(server.port) as conn:
        conn.send(simple_get("/resp-headers?Connection=Keep-Alive,%20CLOSE") + simple_get("/"))
        resp = conn.read_response()
        assert resp.status == 200
        assert conn.read_until_close(5) == b""


def test_huge_response_head(server):
    with RawConn(server.port, timeout=10) as conn:
        conn.send(simple_get("/odd?kind=many-headers") + simple_get("/echo-path/next"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"ok"
        got = [(k, v) for k, v in resp.raw_headers if k.startswith(b"x-h")]
        assert got == [(b"x-h%d" % i, bytes([97 + i % 26]) * 500) for i in range(2000)]
        assert conn.read_response().body == b"/echo-path/next"


def test_big_chunked_response(server):
    with RawConn(server.port, timeout=10) as conn:
        conn.send(simple_get("/odd?kind=big-chunked") + simple_get("/echo-path/next"))
        resp = conn.read_response()
        assert resp.chunked
        assert resp.chunks == [bytes([65 + i]) * 100_000 for i in range(20)]
        assert conn.read_response().body == b"/echo-path/next"
