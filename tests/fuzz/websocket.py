"""The websocket target's app and oracles: a WebSocket connection driven in-process (the
harness), from the handshake through the compiled HTTP core to ``WebSocketProtocol``, and the
same client bytes read by wsproto alone for comparison.

The compiled data path (``_websocket.pxi``) reads plain frames itself and hands wsproto the
rest; whatever the input and however it is split, the app must receive exactly the messages,
and the close code, that wsproto by itself reads from those bytes (RFC 6455 is wsproto's
job, the fast path must not change its verdicts). The app echoes every message, so the send
path runs too, and what the server writes must be well-formed unmasked frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import wsproto
from wsproto import ConnectionType, events

from tests.support.harness import WS_HANDSHAKE, Harness, Outcome, server_frames

NO_CLOSE = 1006  # the connection ended without a close frame (RFC 6455 7.1.5)


@dataclass
class Reading:
    """What the app got: its messages as (kind, data), and the disconnect code."""

    messages: list[tuple[str, bytes | str]] = field(default_factory=list)
    code: int = NO_CLOSE


@dataclass
class WsOutcome:
    reading: Reading
    outcome: Outcome


class WebSocketEcho:
    """A harness whose app echoes every message and records what it received (max size far
    above any input, no pings, no permessage-deflate: the plain-frame path)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.reading = Reading()
        self.harness = Harness(
            self._echo_app, date_header=False, server_header=False, proxy_headers=False,
            ws_max_size=1 << 20, ws_max_queue=4, ws_ping_interval=None, ws_ping_timeout=None,
            ws_per_message_deflate=False, **limits,
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
        outcome = self.harness.run_websocket(pieces, lambda: len(self.reading.messages))
        return WsOutcome(self.reading, outcome)


def wsproto_reading(payload: bytes) -> Reading:
    """What wsproto alone makes of the client's bytes after the handshake."""
    conn = wsproto.WSConnection(ConnectionType.SERVER)
    conn.receive_data(WS_HANDSHAKE)
    assert isinstance(next(conn.events()), events.Request)
    conn.send(events.AcceptConnection())
    conn.receive_data(payload)
    reading, parts = Reading(), []
    for event in conn.events():
        if isinstance(event, (events.TextMessage, events.BytesMessage)):
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, events.TextMessage):
                    reading.messages.append(("text", "".join(parts)))
                else:
                    reading.messages.append(("bytes", b"".join(parts)))
                parts = []
        elif isinstance(event, events.CloseConnection):
            reading.code = event.code
            break
    return reading


def check_echoes(result: WsOutcome) -> None:
    """The echoes are the received messages, in order, and nothing follows a close frame."""
    outcome = result.outcome
    assert not outcome.stalled, "stalled: reading paused while the app made no progress"
    frames = server_frames(outcome.out)
    closes = [i for i, (opcode, _) in enumerate(frames) if opcode == 0x8]
    assert len(closes) <= 1 and (not closes or closes[0] == len(frames) - 1), "frames after close"
    echoes = [(op, data) for op, data in frames if op in (0x1, 0x2)]
    sent = [
        (0x1, data.encode()) if kind == "text" else (0x2, data)  # type: ignore[union-attr]
        for kind, data in result.reading.messages
    ]
    assert echoes == sent[: len(echoes)], "an echo differs from the message the app received"
    assert outcome.writes_after_close == 0, f"{outcome.writes_after_close} write(s) after close"
    assert not outcome.leaks, f"left behind: {outcome.leaks}"
