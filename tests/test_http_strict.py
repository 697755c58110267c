"""Strict request parsing: each malformed request gets 400 + close; its valid twin gets 200."""

from __future__ import annotations

import pytest

from tests.support.client import RawConn, assert_error_response, raw_request, send_expect_error
from tests.support.server import check_one_warning

H = b"Host: example.org\r\n"

# (id, request bytes) that must be refused with 400 Invalid HTTP request received.
BAD_REQUESTS = [
    (
        "cl-and-te",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "te-and-cl",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "two-different-cl",
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "duplicate-same-cl",
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ),
    ("cl-list", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello"),
    ("cl-not-a-number", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5a\r\n\r\nhello"),
    ("cl-negative", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\nhello"),
    ("cl-plus", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello"),
    ("cl-hex", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello"),
    ("obs-fold-space", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\r\n b\r\n\r\n"),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\r\n\tb\r\n\r\n"),
    ("obs-fold-first-header", b"GET / HTTP/1.1\r\n Host: example.org\r\n\r\n"),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: example.org\n\n"),
    ("bare-lf-request-line", b"GET / HTTP/1.1\n" + H + b"\r\n"),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: example.org\nX-A: b\r\n\r\n"),
    ("bare-lf-end-of-head", b"GET / HTTP/1.1\r\n" + H + b"\n"),
    ("bare-cr-header", b"GET / HTTP/1.1\r\nHost: example.org\rX-A: b\r\n\r\n"),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo : bar\r\n\r\n"),
    ("space-before-colon-host", b"GET / HTTP/1.1\r\nHost : example.org\r\n\r\n"),
    ("tab-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo\t: bar\r\n\r\n"),
    (
        "te-chunked-not-last",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    ("te-empty", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n"),
    ("te-gzip-only", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nhello"),
    ("bad-method-token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n"),
    ("bad-method-lower", b"get / HTTP/1.1\r\n" + H + b"\r\n"),
    ("http-9.9", b"GET / HTTP/9.9\r\n" + H + b"\r\n"),
    ("http-no-minor", b"GET / HTTP/1\r\n" + H + b"\r\n"),
    ("http-bad-proto", b"GET / HTTX/1.1\r\n" + H + b"\r\n"),
    ("http-lower-proto", b"GET / http/1.1\r\n" + H + b"\r\n"),
    ("nul-in-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x00b\r\n\r\n"),
    ("nul-in-header-name", b"GET / HTTP/1.1\r\n" + H + b"X-F\x00oo: ab\r\n\r\n"),
    ("ctl-in-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\x01b\r\n\r\n"),
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n"),
    ("ctl-in-target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n"),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n"),
    ("bad-header-name-char", b"GET / HTTP/1.1\r\n" + H + b"X(Foo): bar\r\n\r\n"),
    ("empty-header-name", b"GET / HTTP/1.1\r\n" + H + b": bar\r\n\r\n"),
    ("header-without-colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n"),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    (
        "chunk-size-not-hex",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-data-no-crlf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    ),
    (
        "chunk-size-overflow",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "cl-overflow",
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nabc",
    ),
    (
        "chunk-size-trailing-space",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-size-bare-lf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-data-bare-lf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    ),
    (
        "chunk-last-bare-lf",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n",
    ),
    (
        "chunk-bad-trailer",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    ),
    ("te-identity", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n"),
    (
        "te-chunked-twice",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "cl-and-te-identity",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello",
    ),
    ("request-line-trailing-space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n"),
    ("tab-in-target", b"GET /\t HTTP/1.1\r\n" + H + b"\r\n"),
    ("del-in-target", b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n"),
    ("raw-utf8-in-target", b"GET /a\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n"),
    ("del-in-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x7f\r\n\r\n"),
    (
        "te-xchunked",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "te-quoted",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b'Transfer-Encoding: "chunked"\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ),
    (
        "te-param",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked;q=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "te-chunk",
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunk\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "te-chunked-chunked",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    # Authority-form is for proxies only; there is no path to give the app (Uvicorn: 400).
    (
        "connect-authority-form",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40),
]

# Beyond Uvicorn: RFC 9112 section 3.2 requires 400 for these; httptools lets them through.
BAD_REQUESTS_PALFREY = [
    ("http11-no-host", b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n"),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
]

# (id, request bytes, expected response body): the accepted twins of the above.
GOOD_REQUESTS = [
    (
        "te-chunked",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "te-chunked-upper",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"transfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    ("single-cl", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nhello!", b"hello!"),
    ("cl-ows", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length:   5  \r\n\r\nhello", b"hello"),
    ("cl-zero", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", b""),
    ("no-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a b\r\n\r\n", b"Hello, world!"),
    ("crlf", b"GET / HTTP/1.1\r\nHost: example.org\r\nX-A: b\r\n\r\n", b"Hello, world!"),
    ("no-space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: bar\r\n\r\n", b"Hello, world!"),
    ("no-space-after-colon", b"GET / HTTP/1.1\r\n" + H + b"X-Foo:bar\r\n\r\n", b"Hello, world!"),
    ("empty-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n", b"Hello, world!"),
    ("tab-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: a\tb\r\n\r\n", b"Hello, world!"),
    ("obs-text-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-Foo: caf\xe9\r\n\r\n", b"Hello, world!"),
    ("method-get", b"GET / HTTP/1.1\r\n" + H + b"\r\n", b"Hello, world!"),
    ("http-1.1", b"GET / HTTP/1.1\r\n" + H + b"\r\n", b"Hello, world!"),
    ("http-1.0", b"GET / HTTP/1.0\r\n" + H + b"\r\n", b"Hello, world!"),
    ("http10-no-host", b"GET / HTTP/1.0\r\n\r\n", b"Hello, world!"),
    (
        "encoded-space-in-target",
        b"GET /echo-path/a%20b HTTP/1.1\r\n" + H + b"\r\n",
        b"/echo-path/a b",
    ),
    (
        "chunk-extension",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "chunk-trailers",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n",
        b"hello",
    ),
    (
        "chunk-upper-hex",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        b"0123456789",
    ),
    (
        "many-chunks",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"1\r\n%d\r\n" % (i % 10) for i in range(50))
        + b"0\r\n\r\n",
        b"".join(b"%d" % (i % 10) for i in range(50)),
    ),
    ("leading-empty-line", b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", b"Hello, world!"),
    (
        "chunk-size-leading-zeros",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "te-tab-ows",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: \tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "te-trailing-space",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "te-leading-empty-element",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    (
        "te-leading-empty-elements",
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: , ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"hello",
    ),
    ("options-star", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", None),
]


@pytest.mark.parametrize("name,data", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_400(any_loop_server, name, data):
    server = any_loop_server
    mark = server.mark()
    resp, conn = send_expect_error(server.port, data, 400)
    conn.close()
    check_one_warning(server, mark, "Invalid HTTP request received.", port=resp.client_port)


@pytest.mark.palfrey_only
@pytest.mark.parametrize(
    "name,data", BAD_REQUESTS_PALFREY, ids=[b[0] for b in BAD_REQUESTS_PALFREY]
)
def test_bad_request_400_beyond_uvicorn(server, name, data):
    mark = server.mark()
    resp, conn = send_expect_error(server.port, data, 400)
    conn.close()
    check_one_warning(server, mark, "Invalid HTTP request received.", port=resp.client_port)


@pytest.mark.parametrize("name,data,body", GOOD_REQUESTS, ids=[g[0] for g in GOOD_REQUESTS])
def test_valid_twin_accepted(server, name, data, body):
    mark = server.mark()
    resp, conn = raw_request(server.port, data)
    with conn:
        assert resp.status in ((200,) if body is not None else (200, 404)), resp
        if body is not None:
            assert resp.body == body
        if b"HTTP/1.0" not in data.split(b"\r\n", 1)[0]:
            # Still a persistent connection: a second request works.
            conn.send(b"GET /echo-path/second HTTP/1.1\r\n" + H + b"\r\n")
            assert conn.read_response().body == b"/echo-path/second"
    assert not [x for x in server.since(mark) if x.startswith(("WARNING", "ERROR"))]


@pytest.mark.palfrey_only
def test_te_gzip_chunked_501(server):
    mark = server.mark()
    data = (
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    resp, conn = send_expect_error(server.port, data, 501)
    conn.close()
    check_one_warning(server, mark, "Unsupported transfer coding.", port=resp.client_port)


@pytest.mark.palfrey_only
def test_te_gzip_then_chunked_two_lines_501(server):
    # Two field lines are one list (RFC 9110 5.3): "gzip, chunked" -> unsupported coding.
    data = (
        b"POST /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    _, conn = send_expect_error(server.port, data, 501)
    conn.close()


@pytest.mark.palfrey_only
def test_te_identity_chunked_501(server):
    # "identity" is no longer a registered coding (RFC 9112 7): unsupported -> 501.
    data = b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"
    _, conn = send_expect_error(server.port, data, 501)
    conn.close()


@pytest.mark.palfrey_only  # Uvicorn answers the 400 before the 200 of the earlier request.
@pytest.mark.parametrize(
    "bad,status",
    [
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
         431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ],
    ids=["400", "431", "414", "501"],
)  # fmt: skip
def test_bad_request_after_valid_pipelined(server, bad, status):
    """A valid request followed by a bad one on the same connection: 200 first, then the error."""
    with RawConn(server.port) as conn:
        conn.send(b"GET /slow?t=0.2 HTTP/1.1\r\n" + H + b"\r\n" + bad)
        r1 = conn.read_response()
        assert r1.status == 200 and r1.body == b"slow done", r1
        r2 = conn.read_response()
        assert_error_response(r2, conn, status)


def test_bad_chunked_body_after_headers(server):
    """Headers valid, chunked body invalid (sent later): 400 and close, even mid-body."""
    with RawConn(server.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel")
        conn.try_send(b"lo\r\nxyz\r\n")
        data = conn.read_until_close()
        # Either the 400 or (if the app had already answered) nothing more; never a 200.
        assert b"HTTP/1.1 200" not in data, data
        assert data.startswith(b"HTTP/1.1 400 "), data


def test_no_traceback_for_many_bad_requests(server):
    mark = server.mark()
    for _, data in BAD_REQUESTS[:10]:
        resp, conn = send_expect_error(server.port, data, 400)
        conn.close()
    assert server.wait_for_log("Invalid HTTP request received", "stderr", 5, mark)
    assert not any("Traceback" in x or x.startswith("ERROR") for x in server.since(mark))
    # The server is still fine.
    resp, conn = raw_request(server.port, b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    with conn:
        assert resp.status == 200


@pytest.mark.parametrize("method", [b"DESCRIBE", b"SETUP", b"PLAY", b"FOO", b"GETX", b"GE"])
def test_unknown_methods_refused(server, method):
    _, conn = send_expect_error(server.port, method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400)
    conn.close()
