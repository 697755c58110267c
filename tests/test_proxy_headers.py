"""Proxy headers (SPEC.md section 6): the middleware's rules, then a real server."""

from __future__ import annotations

import asyncio
import json

import pytest

from palfrey.middleware.proxy_headers import ProxyHeadersMiddleware, parse_forwarded
from tests.support.client import raw_request, simple_get
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only


def run_mw(headers, client=("127.0.0.1", 5000), trusted="127.0.0.1", kind="http",
           scheme="http", **options):
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    mw = ProxyHeadersMiddleware(app, trusted, **options)
    scope = {
        "type": kind, "client": client, "scheme": scheme, "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    asyncio.run(mw(scope, None, None))
    return seen


XFF = "X-Forwarded-For"
XFP = "X-Forwarded-Proto"


@pytest.mark.parametrize(
    "trusted, client, headers, want_client, want_scheme",
    [
        # Untrusted peer: nothing applied.
        ("10.0.0.1", ("127.0.0.1", 5000), [(XFF, "1.2.3.4"), (XFP, "https")],
         ["127.0.0.1", 5000], "http"),
        # Trusted peer: client from XFF (port 0), scheme from XFP.
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFF, "1.2.3.4"), (XFP, "https")],
         ["1.2.3.4", 0], "https"),
        # Walked from the right: the right-most untrusted hop, not the spoofable left-most.
        ("127.0.0.1, 10.0.0.0/8", ("127.0.0.1", 5000),
         [(XFF, "6.6.6.6, 203.0.113.5, 10.1.2.3")], ["203.0.113.5", 0], "http"),
        # Several XFF headers are one list.
        ("127.0.0.1,10.0.0.0/8", ("127.0.0.1", 5000),
         [(XFF, "6.6.6.6"), (XFF, "203.0.113.5, 10.0.0.9")], ["203.0.113.5", 0], "http"),
        # Every hop trusted: the left-most (Uvicorn's rule).
        ("127.0.0.1,10.0.0.0/8", ("127.0.0.1", 5000), [(XFF, "10.0.0.1, 10.0.0.2")],
         ["10.0.0.1", 0], "http"),
        # "*" trusts every peer and every hop (Uvicorn): the left-most.
        ("*", ("192.0.2.1", 5000), [(XFF, "1.1.1.1, 2.2.2.2")], ["1.1.1.1", 0], "http"),
        # IPv6 peer and CIDR; IPv6 hop with brackets and port.
        ("::1, 2001:db8::/32", ("::1", 5000), [(XFF, "[2001:db9::1]:8080, 2001:db8::5")],
         ["2001:db9::1", 8080], "http"),
        # A host:port hop keeps its port (as Uvicorn 0.54).
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFF, "1.2.3.4:5678")], ["1.2.3.4", 5678], "http"),
        # XFP: the last header wins; junk is ignored; case-insensitive.
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFP, "http"), (XFP, "HTTPS")],
         ["127.0.0.1", 5000], "https"),
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFP, "javascript")], ["127.0.0.1", 5000], "http"),
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFP, "https, http")], ["127.0.0.1", 5000], "http"),
        # An empty XFF sets nothing.
        ("127.0.0.1", ("127.0.0.1", 5000), [(XFF, "")], ["127.0.0.1", 5000], "http"),
        # IPv4-mapped IPv6 peer (dual-stack listener) matches the IPv4 entry.
        ("127.0.0.1", ("::ffff:127.0.0.1", 5000), [(XFF, "1.2.3.4")], ["1.2.3.4", 0], "http"),
    ],
)
def test_xff_xfp_rules(trusted, client, headers, want_client, want_scheme):
    scope = run_mw(headers, client=client, trusted=trusted)
    assert list(scope["client"]) == want_client
    assert scope["scheme"] == want_scheme


def test_websocket_scheme_mapping():
    assert run_mw([(XFP, "https")], kind="websocket", scheme="ws")["scheme"] == "wss"
    assert run_mw([(XFP, "wss")], kind="websocket", scheme="ws")["scheme"] == "wss"
    assert run_mw([(XFP, "wss")], kind="http")["scheme"] == "https"


def test_trusted_list_forms():
    for trusted in (["127.0.0.1"], "127.0.0.0/8", " 10.0.0.1 ,127.0.0.1 ", "*"):
        assert run_mw([(XFF, "1.2.3.4")], trusted=trusted)["client"] == ("1.2.3.4", 0), trusted


def test_unix_socket_peer():
    sock = "/run/app.sock"
    # Not trusted by default.
    assert run_mw([(XFF, "1.2.3.4")], client=None, unix_socket_path=sock)["client"] is None
    # Trusted by its path: the right-most hop not in the list is the client.
    scope = run_mw([(XFF, "6.6.6.6, 198.51.100.1"), (XFP, "https")], client=None,
                   trusted=f"127.0.0.1,{sock}", unix_socket_path=sock)
    assert scope["client"] == ("198.51.100.1", 0) and scope["scheme"] == "https"
    # "*" on a unix socket trusts the peer only: still the right-most hop.
    scope = run_mw([(XFF, "6.6.6.6, 198.51.100.1")], client=None, trusted="*",
                   unix_socket_path=sock)
    assert scope["client"] == ("198.51.100.1", 0)


def test_lifespan_scope_untouched():
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)

    mw = ProxyHeadersMiddleware(app, "*")
    asyncio.run(mw({"type": "lifespan", "state": {}}, None, None))
    assert calls == [{"type": "lifespan", "state": {}}]


def test_forwarded_host_and_port_opt_in():
    headers = [("Host", "internal:8000"), ("X-Forwarded-Host", "example.com"),
               ("X-Forwarded-Port", "8443"), (XFP, "https")]
    off = run_mw(headers)
    assert off["server"] == ("127.0.0.1", 8000)
    assert (b"host", b"internal:8000") in off["headers"]
    on = run_mw(headers, forwarded_host=True)
    assert on["server"] == ("example.com", 8443)
    assert on["headers"][0] == (b"host", b"example.com:8443")
    assert [n for n, _ in on["headers"]].count(b"host") == 1
    # Host only: the port comes from the forwarded host, else the scheme's default.
    only = run_mw([("Host", "internal"), ("X-Forwarded-Host", "a.example:444")],
                  forwarded_host=True)
    assert only["server"] == ("a.example", 444)
    only = run_mw([("Host", "internal"), ("X-Forwarded-Host", "a.example"), (XFP, "https")],
                  forwarded_host=True)
    assert only["server"] == ("a.example", 443) and only["headers"][0] == (b"host", b"a.example")
    # Invalid values are ignored, never copied into the scope.
    bad = run_mw([("Host", "internal"), ("X-Forwarded-Host", "evil.com/path\x00"),
                  ("X-Forwarded-Port", "99999")], forwarded_host=True)
    assert bad["headers"][0] == (b"host", b"internal")
    assert bad["server"] == ("127.0.0.1", 8000)
    # Untrusted peer: ignored.
    untrusted = run_mw(headers, client=("192.0.2.1", 1), forwarded_host=True)
    assert (b"host", b"internal:8000") in untrusted["headers"]


def test_parse_forwarded():
    assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43') == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}]
    assert parse_forwarded('for="[2001:db8:cafe::17]:4711", For=unknown') == [
        {"for": "[2001:db8:cafe::17]:4711"}, {"for": "unknown"}]
    assert parse_forwarded('for="_gazonk"; proto=https') == [{"for": "_gazonk", "proto": "https"}]
    assert parse_forwarded("for=1.2.3.4;;") is None
    assert parse_forwarded('for="unterminated') is None


def test_forwarded_rfc7239_opt_in():
    headers = [("Forwarded",
                'for=6.6.6.6;proto=http, for=198.51.100.17;proto=https;host=shop.example')]
    assert run_mw(headers)["client"] == ("127.0.0.1", 5000)
    scope = run_mw(headers + [("Host", "internal")], forwarded_rfc7239=True)
    assert scope["client"] == ("198.51.100.17", 0)
    assert scope["scheme"] == "https"
    assert (b"host", b"shop.example") in scope["headers"]
    # Forwarded wins over X-Forwarded-* when both are present.
    scope = run_mw(headers + [(XFF, "9.9.9.9")], forwarded_rfc7239=True)
    assert scope["client"] == ("198.51.100.17", 0)
    # Without Forwarded, X-Forwarded-* still apply.
    assert run_mw([(XFF, "9.9.9.9")], forwarded_rfc7239=True)["client"] == ("9.9.9.9", 0)
    # IPv6 with port; obfuscated identifiers leave the client alone.
    scope = run_mw([("Forwarded", 'for="[2001:db8::17]:4711"')], forwarded_rfc7239=True)
    assert scope["client"] == ("2001:db8::17", 4711)
    scope = run_mw([("Forwarded", "for=_hidden;proto=https")], forwarded_rfc7239=True)
    assert scope["client"] == ("127.0.0.1", 5000) and scope["scheme"] == "https"
    # Malformed: ignored entirely.
    scope = run_mw([("Forwarded", 'for=1.2.3.4;proto="https')], forwarded_rfc7239=True)
    assert scope["client"] == ("127.0.0.1", 5000) and scope["scheme"] == "http"


def test_middleware_is_not_a_coroutine_function():
    """No extra coroutine frame per request: it returns the inner app's awaitable."""
    import inspect

    async def app(scope, receive, send):
        return None

    mw = ProxyHeadersMiddleware(app)
    assert not inspect.iscoroutinefunction(mw.__call__)
    coro = mw({"type": "http", "client": ("1.1.1.1", 1), "headers": []}, None, None)
    assert inspect.iscoroutine(coro) and coro.cr_code is app.__code__
    coro.close()


# -- a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    started = {}
    try:
        started["default"] = Proc("tests.apps:scope_app", "--port", "0").start()
        started["off"] = Proc("tests.apps:scope_app", "--port", "0",
                              "--no-proxy-headers").start()
        started["other"] = Proc("tests.apps:scope_app", "--port", "0",
                                "--forwarded-allow-ips", "10.9.9.9").start()
        started["extra"] = Proc("tests.apps:scope_app", "--port", "0", "--forwarded-host",
                                "--forwarded-rfc7239").start()
        yield started
    finally:
        for proc in started.values():
            proc.stop()


def get_scope(proc, extra: bytes) -> dict:
    resp, conn = raw_request(proc.port, simple_get("/", extra))
    conn.close()
    assert resp.status == 200
    return json.loads(resp.body)


def test_server_default_trusts_localhost(servers):
    mark = servers["default"].mark()
    scope = get_scope(servers["default"], b"X-Forwarded-For: 203.0.113.50\r\n"
                                          b"X-Forwarded-Proto: https\r\n")
    assert scope["client"] == ["203.0.113.50", 0] and scope["scheme"] == "https"
    # The access log shows the forwarded client.
    assert servers["default"].wait_for_log(r'^INFO:     203\.0\.113\.50:0 - "GET / HTTP/1\.1" 200',
                                           "stdout", 5, mark)


def test_server_no_proxy_headers(servers):
    scope = get_scope(servers["off"], b"X-Forwarded-For: 203.0.113.50\r\n"
                                      b"X-Forwarded-Proto: https\r\n")
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"


def test_server_untrusted_peer(servers):
    scope = get_scope(servers["other"], b"X-Forwarded-For: 203.0.113.50\r\n")
    assert scope["client"][0] == "127.0.0.1"


def test_server_forwarded_extras(servers):
    scope = get_scope(servers["extra"], b"X-Forwarded-Host: api.example.com\r\n"
                                        b"X-Forwarded-Proto: https\r\n")
    assert scope["server"] == ["api.example.com", 443]
    assert ["host", "api.example.com"] in scope["headers"]
    scope = get_scope(servers["extra"], b'Forwarded: for="[2001:db8::1]:1234";proto=https\r\n')
    assert scope["client"] == ["2001:db8::1", 1234] and scope["scheme"] == "https"
