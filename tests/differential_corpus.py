"""Raw HTTP/1.1 requests written from RFC 9112, for tests/test_differential.py.

Each case is (id, bytes): one connection's worth of client input. Section numbers are RFC
9112's unless another RFC is named. ``H`` is a valid Host line; ``req()`` builds the common
shape so each case shows only what it is about.
"""

from __future__ import annotations

H = b"Host: example.org\r\n"


def req(line: bytes = b"GET / HTTP/1.1", headers: bytes = H, body: bytes = b"") -> bytes:
    return line + b"\r\n" + headers + b"\r\n" + body


def post(headers: bytes, body: bytes) -> bytes:
    return req(b"POST /upload HTTP/1.1", H + headers, body)


def chunked(body: bytes, extra: bytes = b"") -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n" + extra, body)


CASES: list[tuple[str, bytes]] = [
    # -- 3: request line, methods, versions ---------------------------------------------------
    ("get-simple", req()),
    ("head", req(b"HEAD / HTTP/1.1")),
    ("options-asterisk", req(b"OPTIONS * HTTP/1.1")),  # 3.2.4 asterisk-form
    ("get-asterisk", req(b"GET * HTTP/1.1")),  # 3.2.4: only OPTIONS may use it
    ("put", req(b"PUT /r HTTP/1.1", H + b"Content-Length: 2\r\n", b"hi")),
    ("delete", req(b"DELETE /r HTTP/1.1")),
    ("patch", req(b"PATCH /r HTTP/1.1", H + b"Content-Length: 1\r\n", b"x")),
    ("method-custom-token", req(b"FROB / HTTP/1.1")),  # 3.1: method = token
    ("method-lowercase", req(b"get / HTTP/1.1")),  # 3.1: methods are case-sensitive
    ("method-with-slash", req(b"GE/T / HTTP/1.1")),  # "/" is not a tchar
    ("version-lowercase", req(b"GET / http/1.1")),  # 2.3: HTTP-name is case-sensitive
    ("version-1.0-no-host", b"GET / HTTP/1.0\r\n\r\n"),  # 3.2: Host required in 1.1 only
    ("version-1.0-host", req(b"GET / HTTP/1.0")),
    ("version-1.2", req(b"GET / HTTP/1.2")),  # 2.6: a higher minor is still HTTP/1.x
    ("version-2.0", req(b"GET / HTTP/2.0")),
    ("version-0.9-line", b"GET /\r\n\r\n"),  # no HTTP/0.9 support
    ("version-two-digits", req(b"GET / HTTP/1.10")),  # 2.3: one digit each
    ("version-missing-minor", req(b"GET / HTTP/1")),
    ("request-line-double-space", req(b"GET  / HTTP/1.1")),  # 3: single SP
    ("request-line-tab", req(b"GET\t/ HTTP/1.1")),
    ("request-line-trailing-space", req(b"GET / HTTP/1.1 ")),
    ("request-line-extra-token", req(b"GET / HTTP/1.1 extra")),
    ("request-line-leading-space", req(b" GET / HTTP/1.1")),
    ("leading-empty-line", b"\r\n" + req()),  # 2.2: SHOULD ignore one CRLF before the line
    ("leading-two-empty-lines", b"\r\n\r\n" + req()),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),  # RFC 9113 3.4
    ("connect-authority-form", req(b"CONNECT example.org:443 HTTP/1.1")),  # 3.2.3
    # -- 3.2: request target ------------------------------------------------------------------
    ("target-query", req(b"GET /a/b?x=1&y=2 HTTP/1.1")),
    ("target-empty-query", req(b"GET /a? HTTP/1.1")),
    ("target-percent", req(b"GET /caf%C3%A9%20x?q=%2F HTTP/1.1")),
    ("target-double-slash", req(b"GET //a//b HTTP/1.1")),
    ("target-dot-segments", req(b"GET /a/../b/./c HTTP/1.1")),
    ("target-fragment", req(b"GET /a#frag HTTP/1.1")),  # not part of origin-form (3.2.1)
    ("target-space-inside", req(b"GET /a b HTTP/1.1")),
    ("target-non-ascii", req(b"GET /caf\xc3\xa9 HTTP/1.1")),  # RFC 3986 2: percent-encode
    ("target-ctl", req(b"GET /a\x01b HTTP/1.1")),
    ("target-del", req(b"GET /a\x7fb HTTP/1.1")),
    ("target-no-slash", req(b"GET abc HTTP/1.1")),
    ("target-absolute-http", req(b"GET http://example.org/p?q=1 HTTP/1.1")),  # 3.2.2
    ("target-absolute-https-port", req(b"GET https://example.org:8443/p HTTP/1.1")),
    ("target-absolute-no-path", req(b"GET http://example.org HTTP/1.1")),
    ("target-absolute-host-differs", req(b"GET http://other.org/p HTTP/1.1")),  # 3.2.2: ignore Host
    ("target-long-4k", req(b"GET /" + b"a" * 4000 + b" HTTP/1.1")),
    ("target-over-8k", req(b"GET /" + b"a" * 9000 + b" HTTP/1.1")),  # 3: SHOULD 414
    ("target-over-16k", req(b"GET /" + b"a" * 17000 + b" HTTP/1.1")),
    # -- 3.2: Host ------------------------------------------------------------------------------
    ("host-missing", req(headers=b"")),
    ("host-duplicate", req(headers=H + H)),
    ("host-duplicate-different", req(headers=H + b"Host: other.org\r\n")),
    ("host-empty", req(headers=b"Host:\r\n")),
    ("host-with-port", req(headers=b"Host: example.org:8080\r\n")),
    ("host-ipv6", req(headers=b"Host: [::1]:8080\r\n")),
    # -- 5: field syntax --------------------------------------------------------------------------
    ("field-no-space", req(headers=H + b"X-A:1\r\n")),
    ("field-many-spaces", req(headers=H + b"X-A:    1   \r\n")),  # 5.1: OWS around the value
    ("field-tab-value", req(headers=H + b"X-A:\t1\tb\t\r\n")),
    ("field-empty-value", req(headers=H + b"X-A:\r\n")),
    ("field-duplicate", req(headers=H + b"X-A: 1\r\nX-A: 2\r\n")),
    ("field-mixed-case-name", req(headers=H + b"X-MiXeD: v\r\n")),
    ("field-space-before-colon", req(headers=H + b"X-A : 1\r\n")),  # 5.1: MUST reject
    ("field-tab-before-colon", req(headers=H + b"X-A\t: 1\r\n")),
    ("field-obs-fold", req(headers=H + b"X-A: 1\r\n  2\r\n")),  # 5.2: reject or replace
    ("field-obs-fold-tab", req(headers=H + b"X-A: 1\r\n\t2\r\n")),
    ("field-first-line-folded", req(headers=b" X-A: 1\r\n" + H)),
    ("field-no-colon", req(headers=H + b"X-A 1\r\n")),
    ("field-empty-name", req(headers=H + b": 1\r\n")),
    ("field-name-separator", req(headers=H + b"X(A): 1\r\n")),
    ("field-name-non-ascii", req(headers=H + b"X-\xe9: 1\r\n")),
    ("field-value-obs-text", req(headers=H + b"X-A: caf\xe9 \x80\xff\r\n")),  # RFC 9110 5.5
    ("field-value-nul", req(headers=H + b"X-A: a\x00b\r\n")),
    ("field-value-ctl", req(headers=H + b"X-A: a\x01b\r\n")),
    ("field-value-del", req(headers=H + b"X-A: a\x7fb\r\n")),
    ("field-value-bare-cr", req(headers=H + b"X-A: a\rb\r\n")),
    ("field-value-quoted", req(headers=H + b'X-A: "a, b", c\r\n')),
    ("field-many-30", req(headers=H + b"".join(b"X-%d: v\r\n" % i for i in range(30)))),
    ("field-count-101", req(headers=H + b"".join(b"X-%d: v\r\n" % i for i in range(101)))),
    ("field-line-4k", req(headers=H + b"X-A: " + b"v" * 4000 + b"\r\n")),
    ("field-line-9k", req(headers=H + b"X-A: " + b"v" * 9000 + b"\r\n")),
    ("field-section-70k", req(headers=H + b"".join(b"X-%d: " % i + b"v" * 7000 + b"\r\n" for i in range(10)))),
    ("line-ending-bare-lf", b"GET / HTTP/1.1\nHost: example.org\n\n"),  # 2.2: MAY accept
    ("line-ending-bare-lf-header", b"GET / HTTP/1.1\r\nHost: example.org\nX-A: 1\r\n\r\n"),
    ("line-ending-bare-cr", b"GET / HTTP/1.1\rHost: example.org\r\r"),  # 2.2: MUST NOT
    ("head-end-bare-lf", b"GET / HTTP/1.1\r\nHost: example.org\r\n\n"),
    # -- 6: message body, Content-Length ------------------------------------------------------------
    ("cl-simple", post(b"Content-Length: 5\r\n", b"hello")),
    ("cl-zero", post(b"Content-Length: 0\r\n", b"")),
    ("cl-leading-zeros", post(b"Content-Length: 005\r\n", b"hello")),
    ("cl-plus-sign", post(b"Content-Length: +5\r\n", b"hello")),
    ("cl-negative", post(b"Content-Length: -1\r\n", b"")),
    ("cl-hex", post(b"Content-Length: 0x5\r\n", b"hello")),
    ("cl-empty", post(b"Content-Length:\r\n", b"")),
    ("cl-list-same", post(b"Content-Length: 5, 5\r\n", b"hello")),  # 6.3 step 5: MAY accept
    ("cl-list-different", post(b"Content-Length: 5, 6\r\n", b"hello")),
    ("cl-duplicate-same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    ("cl-duplicate-different", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello")),
    ("cl-space-inside", post(b"Content-Length: 1 2\r\n", b"x" * 12)),
    ("cl-trailing-space", post(b"Content-Length: 5 \r\n", b"hello")),
    ("cl-huge", post(b"Content-Length: 99999999999999999999999\r\n", b"")),
    ("cl-body-short", post(b"Content-Length: 10\r\n", b"hello")),  # waits for the rest
    ("cl-get-with-body", req(b"GET / HTTP/1.1", H + b"Content-Length: 3\r\n", b"abc")),
    ("cl-then-pipelined", post(b"Content-Length: 2\r\n", b"hi") + req(b"GET /next HTTP/1.1")),
    ("cl-http10-body", b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"),
    # -- 7: chunked transfer coding -----------------------------------------------------------------
    ("chunked-simple", chunked(b"5\r\nhello\r\n0\r\n\r\n")),
    ("chunked-two-chunks", chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")),
    ("chunked-empty", chunked(b"0\r\n\r\n")),
    ("chunked-uppercase-hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n")),
    ("chunked-leading-zeros", chunked(b"0005\r\nhello\r\n0\r\n\r\n")),
    ("chunked-ext", chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n")),  # 7.1.1
    ("chunked-ext-no-value", chunked(b"5;name\r\nhello\r\n0\r\n\r\n")),
    ("chunked-ext-quoted", chunked(b'5;name="v a;l"\r\nhello\r\n0\r\n\r\n')),
    ("chunked-ext-bws", chunked(b"5 ; name = value\r\nhello\r\n0\r\n\r\n")),  # 7.1.1 BWS
    ("chunked-ext-on-last", chunked(b"5\r\nhello\r\n0;end=1\r\n\r\n")),
    ("chunked-ext-bad-char", chunked(b"5;na\x01me\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-trailing-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-not-hex", chunked(b"5g\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-overflow", chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-empty", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    ("chunked-data-too-long", chunked(b"3\r\nhello\r\n0\r\n\r\n")),
    ("chunked-data-no-crlf", chunked(b"5\r\nhello0\r\n\r\n")),
    ("chunked-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    ("chunked-data-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n")),
    ("chunked-trailer", chunked(b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")),  # 7.1.2
    ("chunked-trailer-two", chunked(b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")),
    ("chunked-trailer-space-before-colon", chunked(b"5\r\nhello\r\n0\r\nX-A : 1\r\n\r\n")),
    ("chunked-trailer-obs-fold", chunked(b"5\r\nhello\r\n0\r\nX-A: 1\r\n 2\r\n\r\n")),
    ("chunked-missing-last-crlf", chunked(b"5\r\nhello\r\n0\r\n")),  # incomplete
    ("chunked-then-pipelined", chunked(b"2\r\nhi\r\n0\r\n\r\n") + req(b"GET /next HTTP/1.1")),
    # -- 6.1, 6.3: Transfer-Encoding ------------------------------------------------------------------
    ("te-case-insensitive", post(b"Transfer-Encoding: Chunked\r\n", b"0\r\n\r\n")),
    ("te-whitespace", post(b"Transfer-Encoding:  chunked \r\n", b"0\r\n\r\n")),
    ("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n")),
    ("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n")),  # 6.3 step 4
    ("te-gzip-only", post(b"Transfer-Encoding: gzip\r\n", b"abc")),
    ("te-identity", post(b"Transfer-Encoding: identity\r\n", b"")),
    ("te-chunked-chunked", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n")),
    ("te-two-fields", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-empty", post(b"Transfer-Encoding:\r\n", b"")),
    ("te-unknown-token", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n")),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),  # 6.1
    ("te-and-cl", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),  # 6.1
    ("cl-and-te", post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n")),
    ("te-and-cl-zero", post(b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-vertical-tab", post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n")),
    # -- 9: connection management -------------------------------------------------------------------------
    ("conn-close", req(headers=H + b"Connection: close\r\n")),
    ("conn-close-then-more", req(headers=H + b"Connection: close\r\n") + req(b"GET /next HTTP/1.1")),
    ("conn-keep-alive-10", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    ("conn-token-list", req(headers=H + b"Connection: foo, close\r\n")),
    ("pipelined-three", req(b"GET /1 HTTP/1.1") + req(b"GET /2 HTTP/1.1") + req(b"GET /3 HTTP/1.1")),
    ("pipelined-then-garbage", req(b"GET /1 HTTP/1.1") + b"garbage\r\n\r\n"),
    ("upgrade-h2c", req(headers=H + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n")),
    ("expect-100", post(b"Expect: 100-continue\r\nContent-Length: 3\r\n", b"abc")),
    ("expect-unknown", req(headers=H + b"Expect: something\r\n")),
    ("incomplete-head", b"GET / HTTP/1.1\r\nHost: example.org\r\n"),
    ("incomplete-line", b"GET / HTT"),
]
