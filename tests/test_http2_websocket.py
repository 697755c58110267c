"""WebSocket over HTTP/2 (RFC 8441; SPEC.md section 8): SETTINGS_ENABLE_CONNECT_PROTOCOL,
extended CONNECT with `:protocol websocket`, then the same ASGI WebSocket events as over
HTTP/1.1 (tests/ws_apps.py), permessage-deflate included. The client is h2 + wsproto's
frame-level Connection (no HTTP handshake: the CONNECT stream replaces it)."""

from __future__ import annotations

import json
import re

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, TextMessage
from wsproto.extensions import PerMessageDeflate

from tests.support.h2 import (
    ENABLE_CONNECT_PROTOCOL,
    ON_HYPERCORN,
    H2Client,
    Stream,
    h2_server,  # noqa: F401 - fixture
    h2_servers,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


class WebSocketOverH2:
    """One WebSocket on one extended CONNECT stream of an H2Client."""

    def __init__(self, client: H2Client, path: str, subprotocols: tuple[str, ...] = (),
                 deflate: bool = False) -> None:
        self.client = client
        settings = client.wait_settings()
        assert settings.get(ENABLE_CONNECT_PROTOCOL) == 1, settings
        headers = [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                   (b":scheme", b"http"), (b":path", path.encode()),
                   (b":authority", b"localhost"), (b"sec-websocket-version", b"13")]
        if subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        self.pmd = PerMessageDeflate() if deflate else None
        if self.pmd is not None:
            headers.append((b"sec-websocket-extensions",
                            f"{self.pmd.name}; {self.pmd.offer()}".encode()))
        self.sid = client.conn.get_next_available_stream_id()
        client.streams[self.sid] = Stream(self.sid)
        client.conn.send_headers(self.sid, headers, end_stream=False)
        client.flush()
        client.wait(lambda: self.stream.headers is not None or self.stream.done,
                    what="the CONNECT response")
        self.status = self.stream.status
        extensions = []
        accepted = self.stream.get("sec-websocket-extensions")
        if self.pmd is not None and accepted:
            self.pmd.finalize(accepted.decode())
            extensions.append(self.pmd)
        self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        self.consumed = 0

    @property
    def stream(self):
        return self.client.streams[self.sid]

    def send(self, event) -> None:
        self.client.send_body(self.sid, self.ws.send(event), end_stream=False)

    def receive(self, timeout: float = 5.0):
        """The next WebSocket event (messages reassembled)."""
        parts: list = []
        while True:
            for event in self.ws.events():
                if isinstance(event, Message):
                    parts.append(event.data)
                    if event.message_finished:
                        joined = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                        return type(event)(data=joined)
                else:
                    return event
            self.client.wait(lambda: len(self.stream.data) > self.consumed or self.stream.done,
                             timeout, "WebSocket data")
            new = bytes(self.stream.data[self.consumed:])
            self.consumed += len(new)
            if new:
                self.ws.receive_data(new)
            elif self.stream.done:
                self.ws.receive_data(None)


def test_enable_connect_protocol_advertised(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        assert client.wait_settings().get(ENABLE_CONNECT_PROTOCOL) == 1


@palfrey_h2_only
def test_no_enable_connect_protocol_without_websockets(h2_servers):  # noqa: F811
    server = h2_servers("--ws", "none")
    with H2Client(server.port) as client:
        assert client.wait_settings().get(ENABLE_CONNECT_PROTOCOL, 0) == 0


def test_echo_text_and_bytes_then_close(h2_server):  # noqa: F811
    mark = h2_server.mark()
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/echo")
        assert ws.status == 200, ws.stream
        ws.send(TextMessage(data="hello over h2"))
        assert ws.receive() == TextMessage(data="hello over h2")
        ws.send(BytesMessage(data=b"\x00\x01\xff" * 1000))
        assert ws.receive() == BytesMessage(data=b"\x00\x01\xff" * 1000)
        ws.send(CloseConnection(code=1000, reason="bye"))
        event = ws.receive()
        assert isinstance(event, CloseConnection) and event.code == 1000, event
        # (The connection stays open: the app's code must come from the close frame;
        # Hypercorn 0.18 gives its apps 1006 here.)
        code = r"\d+" if ON_HYPERCORN else "1000"
        assert h2_server.wait_for_log(rf"WSAPP disconnect code={code}\b", "stderr", 5, mark), \
            h2_server.since(mark)


def test_websocket_scope(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/scope?q=1")
        assert ws.status == 200, ws.stream
        scope = json.loads(ws.receive().data)
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope", "/scope", "q=1")
    assert scope["subprotocols"] == []
    names = [name for name, _ in scope["headers"]]
    assert not [n for n in names if n.startswith(":")], names
    assert ["host", "localhost"] in scope["headers"], scope["headers"]


def test_subprotocol_and_extra_headers(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/subprotocol", subprotocols=("first", "second"))
        assert ws.status == 200, ws.stream
        assert ws.stream.get("sec-websocket-protocol") == b"second", ws.stream.headers
        assert ws.stream.get("x-extra") == b"yes", ws.stream.headers
        ws.send(TextMessage(data="x"))
        assert ws.receive() == TextMessage(data="x")


def test_close_before_accept_is_403(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/reject")
        assert ws.status == 403, ws.stream
        client.wait(lambda: ws.stream.done, what="the 403 stream to end")


def test_permessage_deflate(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/echo", deflate=True)
        assert ws.status == 200, ws.stream
        accepted = ws.stream.get("sec-websocket-extensions") or b""
        assert re.match(rb"permessage-deflate\b", accepted), ws.stream.headers
        text = "compress me " * 1000
        ws.send(TextMessage(data=text))
        assert ws.receive() == TextMessage(data=text)
        # The server's frame was compressed: RSV1 set, far fewer bytes than the text.
        first = ws.stream.data[0]
        assert first & 0x40, hex(first)
        assert len(ws.stream.data) < len(text) // 4, len(ws.stream.data)


def test_websocket_and_http_streams_share_the_connection(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/echo")
        ws.send(TextMessage(data="one"))
        assert client.get("/hello").status == 200
        assert ws.receive() == TextMessage(data="one")
        ws.send(TextMessage(data="two"))
        assert ws.receive() == TextMessage(data="two")


def test_stream_reset_is_a_disconnect(h2_server):  # noqa: F811
    mark = h2_server.mark()
    with H2Client(h2_server.port) as client:
        ws = WebSocketOverH2(client, "/echo")
        ws.send(TextMessage(data="ping"))
        assert ws.receive() == TextMessage(data="ping")
        client.reset(ws.sid)
        assert client.get("/hello").status == 200
    assert h2_server.wait_for_log(r"WSAPP disconnect code=", "stderr", 5, mark), \
        h2_server.since(mark)
