"""WebSocket through a real nginx (SPEC.md section 6): TCP and unix-socket upstreams, the
Upgrade forwarded as nginx documents it, X-Forwarded-Proto https mapped to scheme wss."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from tests.support.nginx import NGINX, running_nginx
from tests.support.server import Proc
from tests.support.ws_client import OP_BINARY, OP_CLOSE, OP_TEXT, WsConn, close_payload, frame

pytestmark = pytest.mark.palfrey_only

HTTP = """\
    server {{
        listen 127.0.0.1:{{port}};
        location /tcp/ {{
            proxy_pass http://127.0.0.1:{tcp_port}/;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
        location /unix/ {{
            proxy_pass http://unix:{sock}:/;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
        }}
    }}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    tmp = tmp_path_factory.mktemp("nginx-ws")
    sock = str(tmp / "palfrey.sock")
    servers: list[Proc] = []
    try:
        tcp = Proc("tests.ws_apps:app", "--port", "0")
        servers.append(tcp)
        tcp.start()
        unix = Proc("tests.ws_apps:app", "--uds", sock)
        servers.append(unix)
        unix.start()
        with running_nginx(tmp, HTTP.format(tcp_port=tcp.port, sock=sock)) as port:
            yield {"port": port, "tcp": tcp, "unix": unix}
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("upstream", ["tcp", "unix"])
def test_echo_through_nginx(stack, upstream):
    with connect(f"ws://127.0.0.1:{stack['port']}/{upstream}/echo", open_timeout=5) as ws:
        ws.send("through nginx")
        assert ws.recv(timeout=5) == "through nginx"
        ws.send(b"\x01" * 100_000)
        assert ws.recv(timeout=5) == b"\x01" * 100_000
        ws.send(["frag", "ments"])
        assert ws.recv(timeout=5) == "fragments"


@pytest.mark.parametrize("upstream", ["tcp", "unix"])
def test_close_handshake_through_nginx(stack, upstream):
    with WsConn(stack["port"], path=f"/{upstream}/echo") as c:
        c.send(frame(OP_BINARY, b"x"))
        assert c.read_frame() == (OP_BINARY, True, b"x")
        c.send(frame(OP_CLOSE, close_payload(1000)))
        assert c.read_close()[0] == 1000
        assert c.wait_closed()


def test_scope_through_nginx_tcp(stack):
    # X-Forwarded-Proto https from the trusted proxy (127.0.0.1, the default) -> wss.
    with WsConn(stack["port"], path="/tcp/scope?q=1") as c:
        opcode, _, payload = c.read_frame()
    assert opcode == OP_TEXT
    scope = json.loads(payload)
    assert scope["scheme"] == "wss" and scope["path"] == "/scope" and scope["query_string"] == "q=1"
    assert scope["client"] == ["127.0.0.1", 0]
