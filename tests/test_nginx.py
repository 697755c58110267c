"""Behind a real nginx (SPEC.md section 6): TCP and unix-socket upstreams, X-Forwarded-For and
-Proto applied only from the trusted proxy, spoofing refused, upstream keep-alive reuse.

nginx runs in the foreground from a generated config in a temporary directory, listening on
a free 127.0.0.1 port. It reaches Palfrey's TCP port from 127.0.0.2 (proxy_bind), so the
proxy and the test client have different addresses and only the proxy is trusted.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.client import RawConn, simple_get
from tests.support.nginx import NGINX, running_nginx
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only

PROXY_ADDR = "127.0.0.2"

HTTP = """\

    upstream palfrey_tcp {{ server 127.0.0.1:{tcp_port}; keepalive 4; }}
    upstream palfrey_unix {{ server unix:{sock}; keepalive 4; }}

    # proxy_set_header is inherited only by blocks that set none: hence the repeats.

    server {{
        listen 127.0.0.1:{{port}};
        # As a typical site: the client's address appended to X-Forwarded-For.
        location /tcp/ {{
            proxy_pass http://palfrey_tcp/;
            proxy_bind {proxy_addr};
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        # As if nginx terminated TLS.
        location /tcps/ {{
            proxy_pass http://palfrey_tcp/;
            proxy_bind {proxy_addr};
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
        # No forwarding headers: the app sees nginx's own upstream connection.
        location /raw/ {{
            proxy_pass http://palfrey_tcp/;
            proxy_bind {proxy_addr};
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For "";
        }}
        location /unix/ {{
            proxy_pass http://palfrey_unix/;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
"""


def _can_bind(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    if not _can_bind(PROXY_ADDR):
        pytest.skip(f"{PROXY_ADDR} is not a local address here (needed as the proxy's source)")
    tmp = tmp_path_factory.mktemp("nginx")
    sock = str(tmp / "palfrey.sock")
    servers: list[Proc] = []
    try:
        tcp = Proc("tests.apps:scope_app", "--port", "0", "--forwarded-allow-ips", PROXY_ADDR)
        servers.append(tcp)
        tcp.start()
        unix = Proc("tests.apps:scope_app", "--uds", sock, "--forwarded-allow-ips", sock)
        servers.append(unix)
        unix.start()
        http = HTTP.format(tcp_port=tcp.port, sock=sock, proxy_addr=PROXY_ADDR)
        with running_nginx(tmp, http) as port:
            yield {"port": port, "tcp": tcp, "unix": unix, "sock": sock}
    finally:
        for server in servers:
            server.stop()


def scope_via(port: int, path: str, extra: bytes = b"", conn: RawConn | None = None) -> dict:
    own = conn is None
    conn = conn or RawConn(port)
    try:
        conn.send(simple_get(path, extra))
        resp = conn.read_response()
        assert resp.status == 200, resp
        return json.loads(resp.body)
    finally:
        if own:
            conn.close()


def test_tcp_upstream_applies_forwarded_headers(stack):
    scope = scope_via(stack["port"], "/tcp/hello?x=1")
    assert scope["client"] == ["127.0.0.1", 0]  # the test client, as nginx saw it
    assert scope["scheme"] == "http"
    assert scope["path"] == "/hello" and scope["query_string"] == "x=1"
    assert scope["server"] == ["127.0.0.1", stack["tcp"].port]
    assert scope["_body"] == ""
    headers = dict(scope["headers"])
    assert headers["host"] == "example.org" and "connection" not in headers
    scope = scope_via(stack["port"], "/tcps/")
    assert scope["scheme"] == "https" and scope["client"] == ["127.0.0.1", 0]


def test_spoofed_xff_through_nginx_is_not_the_client(stack):
    scope = scope_via(stack["port"], "/tcp/", b"X-Forwarded-For: 6.6.6.6\r\n")
    headers = dict(scope["headers"])
    assert headers["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert scope["client"] == ["127.0.0.1", 0]


def test_untrusted_direct_client_cannot_set_client_or_scheme(stack):
    with RawConn(stack["tcp"].port) as conn:
        scope = scope_via(stack["tcp"].port, "/", b"X-Forwarded-For: 6.6.6.6\r\n"
                                                  b"X-Forwarded-Proto: https\r\n", conn)
        assert scope["client"] == ["127.0.0.1", conn.local_port]
        assert scope["scheme"] == "http"


def test_unix_socket_upstream(stack):
    scope = scope_via(stack["port"], "/unix/u", b"X-Forwarded-For: 6.6.6.6\r\n")
    assert scope["client"] == ["127.0.0.1", 0]  # right-most hop, not the spoofed one
    assert scope["scheme"] == "https"
    assert scope["server"] is None and scope["path"] == "/u"


def test_upstream_keepalive_reuse(stack):
    ports = set()
    for i in range(5):
        # A new client connection each time: only nginx's upstream pool links them.
        scope = scope_via(stack["port"], f"/raw/{i}")
        assert scope["client"][0] == PROXY_ADDR, scope["client"]
        ports.add(scope["client"][1])
    assert len(ports) == 1, f"nginx opened {len(ports)} upstream connections: {ports}"


def test_keepalive_client_through_nginx(stack):
    with RawConn(stack["port"]) as conn:
        for i in range(3):
            scope = scope_via(stack["port"], f"/tcp/k{i}", b"", conn)
            assert scope["path"] == f"/k{i}"
