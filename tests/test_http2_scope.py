"""The HTTP scope of an HTTP/2 stream (SPEC.md section 8): http_version "2"; method, scheme,
path, raw_path and query_string from the pseudo-header fields; `:authority` becomes `host`
when no host header was sent; no pseudo-header in `headers`; cookie crumbs joined with "; "
(RFC 9113 8.2.3); the request body; the lifespan state."""

from __future__ import annotations

import pytest

from tests.support.h2 import (
    H2Client,
    h2_server,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


def scope_of(server, method="GET", path="/scope", headers=(), body=None,
              authority="example.org:8080"):
    with H2Client(server.port) as client:
        stream = client.response(client.request(method, path, headers=headers, body=body,
                                                authority=authority))
        assert stream.status == 200, stream
        return stream.json()


def test_scope_from_pseudo_headers(h2_server):  # noqa: F811
    scope = scope_of(h2_server, path="/scope/a%20b/caf%C3%A9?q=1&x=%2F",
                     headers=[("user-agent", "h2-tests"), ("x-custom", "Value")])
    assert scope["type"] == "http"
    assert scope["http_version"] == "2"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/a b/caf\u00e9"
    assert scope["raw_path"] == "/scope/a%20b/caf%C3%A9"
    assert scope["query_string"] == "q=1&x=%2F"
    assert scope["root_path"] == ""
    assert scope["server"] == ["127.0.0.1", h2_server.port]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["_types"]["raw_path"] == "bytes" and scope["_types"]["query_string"] == "bytes"
    assert scope["_types"]["headers.parts"] == ["bytes"]
    names = [name for name, _ in scope["headers"]]
    assert not [n for n in names if n.startswith(":")], names
    # :authority became the host header; the others in arrival order.
    assert ["host", "example.org:8080"] in scope["headers"], scope["headers"]
    assert names.index("user-agent") < names.index("x-custom"), names
    assert ["x-custom", "Value"] in scope["headers"]


def test_host_header_sent_is_kept_once(h2_server):  # noqa: F811
    scope = scope_of(h2_server, headers=[("host", "example.org:8080")])
    hosts = [value for name, value in scope["headers"] if name == "host"]
    assert hosts == ["example.org:8080"], scope["headers"]


def test_cookie_crumbs_joined(h2_server):  # noqa: F811
    scope = scope_of(h2_server, headers=[("cookie", "a=1"), ("x-between", "1"),
                                         ("cookie", "b=2"), ("cookie", "c=3")])
    cookies = [value for name, value in scope["headers"] if name == "cookie"]
    assert cookies == ["a=1; b=2; c=3"], scope["headers"]


def test_duplicate_fields_kept_in_order(h2_server):  # noqa: F811
    scope = scope_of(h2_server, headers=[("x-dup", "one"), ("x-other", "1"), ("x-dup", "two")])
    assert [v for n, v in scope["headers"] if n == "x-dup"] == ["one", "two"], scope["headers"]


def test_post_body_in_several_frames(h2_server):  # noqa: F811
    body = bytes(range(256)) * 600  # 153600 bytes: more than one window, many frames
    scope = scope_of(h2_server, "POST", "/scope",
                     headers=[("content-type", "application/octet-stream")], body=body)
    assert scope["method"] == "POST"
    assert scope["_body"] == body.decode("latin-1")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods(h2_server, method):  # noqa: F811
    assert scope_of(h2_server, method, "/scope")["method"] == method


def test_lifespan_state_in_stream_scope(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        stream = client.get("/state")
    assert stream.status == 200 and stream.json().get("lifespan") == "started", stream
