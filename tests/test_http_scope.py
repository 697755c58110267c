"""The HTTP scope an app gets (SPEC 2): path and query decoding, target forms, methods,
request header names and values, state, root_path, the client and server addresses."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.support.client import RawConn, raw_request, simple_get
from tests.support.common import IS_PALFREY


def get_scope(port: int, request: bytes) -> tuple[dict, RawConn]:
    resp, conn = raw_request(port, request)
    assert resp.status == 200, resp
    return json.loads(resp.body), conn


@pytest.fixture(scope="module")
def scope_server(module_server_factory):
    return module_server_factory("tests.apps:scope_app")


def test_scope_basic(any_loop_server):
    req = (
        b"GET /scope?a=1&b=%20x HTTP/1.1\r\nHost: example.org\r\nX-Mixed: AbC dEf\r\n"
        b"X-Dup: 1\r\nUser-Agent: raw\r\nX-Dup: 2\r\n\r\n"
    )
    scope, conn = get_scope(any_loop_server.port, req)
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
        assert scope["server"] == ["127.0.0.1", any_loop_server.port]
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


def test_fragment_not_in_query(scope_server):
    scope, conn = get_scope(scope_server.port, simple_get("/a?b=1#frag"))
    with conn:
        assert scope["path"] == "/a"
        assert scope["query_string"] == "b=1"


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


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_scope_methods(scope_server, method):
    req = method.encode() + b" /m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert scope["method"] == method
        assert scope["_body"] == "abc"


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


def test_scope_http10(scope_server):
    scope, conn = get_scope(scope_server.port, b"GET /old HTTP/1.0\r\n\r\n")
    with conn:
        assert scope["http_version"] == "1.0"
        assert scope["headers"] == []


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


def test_scope_header_value_raw_bytes(scope_server):
    # obs-text (bytes >= 0x80) is allowed in field values and passed through untouched.
    req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9 \x80\xff\r\n\r\n"
    scope, conn = get_scope(scope_server.port, req)
    with conn:
        assert ["x-latin", "caf\xe9 \x80\xff"] in scope["headers"]


@pytest.mark.palfrey_only  # RFC 9110 5.5: OWS around a field value is not part of it.
def test_request_header_value_ows_stripped(scope_server):
    scope, conn = get_scope(
        scope_server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad:   v w  \r\nX-Tab:\tt\t\r\n\r\n"
    )
    with conn:
        assert ["x-pad", "v w"] in scope["headers"], scope["headers"]
        assert ["x-tab", "t"] in scope["headers"], scope["headers"]


def test_empty_host_is_valid(scope_server):
    # RFC 9112 3.2: an empty Host value is allowed (it is the absence that is an error).
    scope, conn = get_scope(scope_server.port, b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
    with conn:
        assert scope["headers"] == [["host", ""]]


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


def test_ipv6_scope(server_factory):
    s = server_factory("tests.apps:scope_app", "--host", "::1")
    with RawConn(s.port, host="::1") as conn:
        conn.send(simple_get("/v6"))
        resp = conn.read_response()
        scope = json.loads(resp.body)
        assert scope["server"] == ["::1", s.port]
        assert scope["client"] == ["::1", conn.local_port]
        assert resp.status == 200
