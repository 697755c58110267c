"""Drive a WebSocket connection in-process, from the handshake through the compiled HTTP core
to ``WebSocketProtocol``, and read the same client bytes with wsproto alone for comparison.

The compiled data path (``_websocket.pxi``) reads plain frames itself and hands wsproto the
rest; whatever the input and however it is split, the app must receive exactly the messages,
and the close code, that wsproto by itself reads from those bytes (RFC 6455 is wsproto's
job, the fast path must not change its verdicts). The app echoes every message, so the send
path runs too, and what the server writes must be well-formed unmasked frames.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from dataclasses import dataclass, field

import wsproto
from wsproto import ConnectionType, events

from palfrey._parser import HttpProtocol, ServerContext
from palfrey.protocols.websocket import WebSocketProtocol, WebSocketSettings
from tests.fuzz.driver import LIMITS, FakeTransport

KEY = base64.b64encode(b"fuzzfuzzfuzzfuzz")
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n"
)
NO_CLOSE = 1006  # the connection ended without a close frame (RFC 6455 7.1.5)
SETTLE_PASSES = 4
MAX_SETTLE_PASSES = 200


@dataclass
class Reading:
    """What the app got: its messages as (kind, data), and the disconnect code."""

    messages: list[tuple[str, bytes | str]] = field(default_factory=list)
    code: int = NO_CLOSE


@dataclass
class WsOutcome:
    reading: Reading
    out: bytes = b""
    writes_after_close: int = 0
    leaks: list[str] = field(default_factory=list)


class HandOverTransport(FakeTransport):
    """A FakeTransport that lets the HTTP core hand the connection to another protocol."""

    protocol = None

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol


class WebSocketDriver:
    """One event loop and one ServerContext (max size far above any input) for every run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        logger = logging.getLogger("palfrey.fuzz.ws")
        logger.propagate = False
        logger.setLevel(logging.CRITICAL)
        settings = WebSocketSettings(
            max_size=1 << 20, max_queue=4, ping_interval=None, ping_timeout=None,
            per_message_deflate=False,
        )  # fmt: skip
        self.reading = Reading()
        self.ctx = ServerContext(
            app=self._echo_app, loop=self.loop, app_state={}, root_path="", default_headers=[],
            date_header=False, access_log=False, error_logger=logger, access_logger=logger,
            limit_concurrency=None, timeout_keep_alive=5.0, timeout_request_header=10.0,
            timeout_request_body=30.0, **LIMITS,
            ws_protocol=lambda *args: WebSocketProtocol(*args, settings=settings), h2_protocol=None,
            tls_server_cert=None, access_log_format=None,
        )  # fmt: skip

    async def _echo_app(self, scope, receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.reading.code = message["code"]
                return
            kind = "text" if message.get("text") is not None else "bytes"
            self.reading.messages.append((kind, message[kind]))
            try:
                await send({"type": "websocket.send", kind: message[kind]})
            except OSError:
                pass  # closed by a protocol error: keep reading what was queued before it

    def run_connection(self, pieces: list[bytes]) -> WsOutcome:
        """The handshake, then ``pieces`` one read at a time; then the client vanishes."""
        self.reading = Reading()
        transport = HandOverTransport()
        http = HttpProtocol(self.ctx)
        transport.protocol = http
        http.connection_made(transport)
        reads = [HANDSHAKE + (pieces[0] if pieces else b""), *pieces[1:]]
        for data in reads:
            if transport.closed:
                break
            self._read(transport, http, data)
            self._settle(transport)
            while transport.paused and not transport.closed:
                before = len(self.reading.messages)
                self._settle(transport)
                assert len(self.reading.messages) > before or not transport.paused, "stalled"
        transport.protocol.connection_lost(None)
        self._settle(transport)
        return WsOutcome(self.reading, bytes(transport.out), transport.writes_after_close,
                         self._leaks())  # fmt: skip

    @staticmethod
    def _read(transport: HandOverTransport, http: HttpProtocol, data: bytes) -> None:
        """One read, as the loop does it: into the HTTP core's buffer until the hand-over."""
        while data and not transport.closed:
            if transport.protocol is not http:
                transport.protocol.data_received(data)
                return
            buf = http.get_buffer(-1)
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            http.buffer_updated(n)
            data = data[n:]

    def _settle(self, transport: FakeTransport) -> None:
        async def passes() -> None:
            quiet, last = 0, None
            for _ in range(MAX_SETTLE_PASSES):
                await asyncio.sleep(0)
                state = (len(transport.out), transport.closed, transport.paused,
                         len(self.reading.messages), len(asyncio.all_tasks()))  # fmt: skip
                quiet = quiet + 1 if state == last else 0
                last = state
                if quiet >= SETTLE_PASSES:
                    return

        self.loop.run_until_complete(passes())

    def _leaks(self) -> list[str]:
        leaks = []
        if self.ctx.websockets:
            leaks.append(f"{len(self.ctx.websockets)} connection(s) still in ctx.websockets")
            self.ctx.websockets.clear()
        live = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if live:
            leaks.append(f"{len(live)} task(s) still running")
            for task in live:
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
        return leaks


def wsproto_reading(payload: bytes) -> Reading:
    """What wsproto alone makes of the client's bytes after the handshake."""
    conn = wsproto.WSConnection(ConnectionType.SERVER)
    conn.receive_data(HANDSHAKE)
    assert isinstance(next(conn.events()), events.Request)
    conn.send(events.AcceptConnection())
    conn.receive_data(payload)
    reading, parts = Reading(), []
    for event in conn.events():
        if isinstance(event, (events.TextMessage, events.BytesMessage)):
            parts.append(event.data)
            if event.message_finished:
                text = isinstance(event, events.TextMessage)
                reading.messages.append(("text", "".join(parts)) if text else ("bytes", b"".join(parts)))
                parts = []
        elif isinstance(event, events.CloseConnection):
            reading.code = event.code
            break
    return reading


def server_frames(out: bytes) -> list[tuple[int, bytes]]:
    """The frames after the 101 response as (opcode, payload); malformed ones raise."""
    head_end = out.find(b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 101 ") and head_end > 0, f"no 101: {out[:80]!r}"
    pos, frames = head_end + 4, []
    while pos < len(out):
        assert len(out) - pos >= 2, "truncated frame header"
        first, second = out[pos], out[pos + 1]
        assert first & 0x80 and not first & 0x70, f"server frame not FIN or with RSV bits: {first:#x}"
        assert not second & 0x80, "a server frame must not be masked (RFC 6455 5.1)"
        length, pos = second & 0x7F, pos + 2
        if length == 126:
            (length,), pos = struct.unpack_from("!H", out, pos), pos + 2
        elif length == 127:
            (length,), pos = struct.unpack_from("!Q", out, pos), pos + 8
        assert len(out) - pos >= length, "truncated frame payload"
        frames.append((first & 0x0F, out[pos : pos + length]))
        pos += length
    return frames


def check_echoes(outcome: WsOutcome) -> None:
    """The echoes are the received messages, in order, and nothing follows a close frame."""
    frames = server_frames(outcome.out)
    closes = [i for i, (opcode, _) in enumerate(frames) if opcode == 0x8]
    assert len(closes) <= 1 and (not closes or closes[0] == len(frames) - 1), "frames after close"
    echoes = [(op, data) for op, data in frames if op in (0x1, 0x2)]
    sent = [
        (0x1, data.encode()) if kind == "text" else (0x2, data)  # type: ignore[union-attr]
        for kind, data in outcome.reading.messages
    ]
    assert echoes == sent[: len(echoes)], "an echo differs from the message the app received"
    assert outcome.writes_after_close == 0, f"{outcome.writes_after_close} write(s) after close"
    assert not outcome.leaks, f"left behind: {outcome.leaks}"
