"""WebSocket over wsproto (SPEC.md section 3; RFC 6455, RFC 7692 permessage-deflate).

The compiled HTTP core parses the handshake request, then hands the transport to a
``WebSocketProtocol`` with the HTTP scope it built and the bytes it had already read after
the request (see ``ServerContext`` in ``_parser.pyi``). wsproto is the protocol state
machine: it validates the handshake, negotiates extensions, parses and builds frames and
tracks the closing handshake. This module maps its events to ASGI messages and back, and
adds what wsproto leaves to its user: reassembly under a size limit, a bounded inflate,
keepalive pings, and closing on server shutdown. What every message of an open connection
goes through (whole unfragmented frames, receive(), send(), read and write backpressure) is
compiled: ``_WebSocketCore`` in ``_websocket.pxi``, this protocol's base class.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import wsproto
from wsproto import ConnectionType, events
from wsproto.connection import ConnectionState
from wsproto.extensions import Extension
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from palfrey._parser import WsState, _WebSocketCore
from palfrey.logging import TRACE_LOG_LEVEL
from palfrey.protocols.common import (
    access_target,
    client_text,
    error_body,
    error_fields,
    log_access_formatted,
)
from palfrey.protocols.wsproto_internals import BoundedPerMessageDeflate, FrameState

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006  # never on the wire: the connection was lost without a close frame
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012  # RFC 6455 IANA registry: "Service Restart"

# After sending our close frame, how long to wait for the peer's before dropping the
# connection (RFC 6455 section 7.1.1: the server should close the TCP connection first).
CLOSE_TIMEOUT = 10.0
_OPEN = ConnectionState.OPEN  # wsproto's state
WS_HANDSHAKE = WsState.WS_HANDSHAKE  # ours (_parser.pxd)
WS_DENYING = WsState.WS_DENYING
WS_OPEN = WsState.WS_OPEN
WS_CLOSING = WsState.WS_CLOSING
_TEXT = events.TextMessage
_BYTES = events.BytesMessage


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone (as Uvicorn's: an OSError subclass,
    so apps that handle connection errors handle this one too)."""


class WebSocketSettings:
    """The Config's --ws-* values, bound once per server (config.py has normalised them)."""

    def __init__(
        self,
        *,
        max_size: int,
        max_queue: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        per_message_deflate: bool,
    ) -> None:
        self.max_size = max_size
        self.max_queue = max_queue
        self.ping_interval = ping_interval  # seconds; None: no keepalive pings
        self.ping_timeout = ping_timeout  # seconds; None: wait for the pong forever
        self.per_message_deflate = per_message_deflate


def websocket_settings(config: Any, logger: logging.Logger) -> WebSocketSettings | None:
    """The server's WebSocketSettings, or None for --ws none (upgrades are then served as
    plain HTTP by the core, and HTTP/2 offers no extended CONNECT)."""
    if config.ws == "none":
        return None
    if config.ws in ("websockets", "websockets-sansio"):
        logger.warning(
            "--ws %s requested: Palfrey serves WebSockets with wsproto; using it.", config.ws
        )
    return WebSocketSettings(
        max_size=config.ws_max_size,
        max_queue=config.ws_max_queue,
        ping_interval=config.ws_ping_interval,
        ping_timeout=config.ws_ping_timeout,
        per_message_deflate=config.ws_per_message_deflate,
    )


def websocket_protocol_factory(settings: WebSocketSettings | None) -> Callable[..., Any] | None:
    """The ``ws_protocol`` callable for ServerContext (None: --ws none)."""
    if settings is None:
        return None
    return functools.partial(WebSocketProtocol, settings=settings)


# -- building the scope and the handshake ------------------------------------------------------


def websocket_scope(http_scope: dict) -> dict:
    """The ASGI websocket scope from the HTTP scope the core built (ASGI spec 2.4)."""
    scope = dict(http_scope)
    del scope["method"]
    scope["type"] = "websocket"
    scope["asgi"] = {"version": http_scope["asgi"]["version"], "spec_version": "2.4"}
    scope["scheme"] = "wss" if http_scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = requested_subprotocols(http_scope["headers"])
    scope["extensions"] = {"websocket.http.response": {}}
    tls = http_scope.get("extensions", {}).get("tls")
    if tls is not None:
        scope["extensions"]["tls"] = tls  # ASGI: on wss too
    return scope


def requested_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    # RFC 6455 section 4.1: one or more comma-separated tokens, in order of preference;
    # the field may also be repeated.
    found = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            found += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    return found


def handshake_request(http_scope: dict) -> bytes:
    """The handshake request as bytes again, for wsproto to validate: the core consumed
    the original. Only the request line and header fields matter to wsproto."""
    target = http_scope["raw_path"]
    if http_scope["query_string"]:
        target += b"?" + http_scope["query_string"]
    lines = [b"%s %s HTTP/%s" % (http_scope["method"].encode("ascii"), target,
                                  http_scope["http_version"].encode("ascii"))]
    lines += [name + b": " + value for name, value in http_scope["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# -- the protocol -------------------------------------------------------------------------------


class WebSocketProtocol(_WebSocketCore, asyncio.Protocol):
    """One WebSocket connection, from the handshake the HTTP core handed over to the close.
    What every message goes through (frames, receive, send, flow control) is compiled, in
    _WebSocketCore (_websocket.pxi); this class is the rest, around wsproto."""

    # No per-instance dict: an open WebSocket costs less memory (SPEC 3 idle connections).
    __slots__ = (
        "ctx", "started", "logger", "settings", "handshake", "scope", "conn", "app_task", "frames",
        "fragments", "fragments_size", "ping_handle", "pong_handle", "ping_payload",
        "close_handle",
    )  # fmt: skip

    def __init__(
        self,
        ctx: Any,
        transport: asyncio.Transport,
        http_scope: dict,
        leftover: bytes,
        *,
        settings: WebSocketSettings,
    ) -> None:
        super().__init__(transport, ctx.loop, settings.max_size, settings.max_queue, leftover)
        self.ctx = ctx
        self.started = time.perf_counter()  # the handshake's request time starts here
        self.logger: logging.Logger = ctx.error_logger
        self.settings = settings
        self.handshake = handshake_request(http_scope)
        self.scope = websocket_scope(http_scope)
        self.conn = wsproto.WSConnection(ConnectionType.SERVER)
        self.app_task: asyncio.Task[None] | None = None
        self.frames: FrameState | None = None  # wsproto's frame decoder, once accepted
        self.fragments: list[Any] = []  # parts of a fragmented message (RFC 6455 5.4)
        self.fragments_size = 0
        self.ping_handle: asyncio.TimerHandle | None = None
        self.pong_handle: asyncio.TimerHandle | None = None
        self.ping_payload: bytes | None = None
        self.close_handle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.ctx.websockets.add(self)
        self._trace("WebSocket connection made")
        refusal = self._check_handshake()
        if refusal is None and self.ctx.shutting_down:
            refusal = (503, [])
        if refusal is not None:
            self._refuse_handshake(*refusal)
            return
        self.app_task = self.loop.create_task(self._run_app())
        self.app_task.add_done_callback(self._on_app_done)

    # -- the handshake's HTTP side: HTTP/1.1 here (RFC 6455 4), HTTP/2 in H2WebSocketProtocol

    def _check_handshake(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        """None for a valid opening handshake, else the status and fields to refuse it with
        (wsproto's verdict: 400, or 426 with the versions it speaks)."""
        try:
            self.conn.receive_data(self.handshake)
            self.handshake = None  # read: an open connection need not keep it
            request = next(self.conn.events(), None)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            return (hint.status_code, list(hint.headers)) if hint is not None else (400, [])
        except (UnicodeError, ValueError):  # e.g. a Host value that is not IDNA
            return (400, [])
        if not isinstance(request, events.Request):  # pragma: no cover - the core sent a whole request
            return (400, [])
        return None

    def _write_response(self, status: int, headers: list[tuple[bytes, bytes]], has_body: bool) -> None:
        """An HTTP response instead of the upgrade (a refusal, a denial, a 500)."""
        reject = events.RejectConnection(status_code=status, headers=headers, has_body=has_body)
        self.transport.write(self.conn.send(reject))

    def _write_response_body(self, data: bytes, finished: bool) -> None:
        self.transport.write(self.conn.send(events.RejectData(data=data, body_finished=finished)))

    def _write_accept(
        self, subprotocol: str | None, extensions: list[Extension], headers: list[tuple[bytes, bytes]]
    ) -> None:
        """101 Switching Protocols; from here on ``self.conn`` reads and writes frames."""
        accept = events.AcceptConnection(
            subprotocol=subprotocol, extensions=extensions, extra_headers=headers
        )
        output = self.conn.send(accept)
        # From here on only the frame-level Connection is used: the handshake objects (h11
        # state among them) need not stay alive for the connection's life.
        self.conn = self.conn.connection
        if not self.transport.is_closing():
            self.transport.write(output)

    # -- asyncio.Protocol, continued ------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        self._trace("WebSocket connection lost")
        self._stop_keepalive()
        if self.close_handle is not None:
            self.close_handle.cancel()
            self.close_handle = None
        self._disconnected(CLOSE_ABNORMAL)
        if self.app_task is None or self.app_task.done():
            self.ctx.websockets.discard(self)

    def eof_received(self) -> bool | None:
        return None  # half-closed by the peer: close our side too

    # -- called by the server -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutdown: close with 1012 (Service Restart), or answer 500 when the app
        has not accepted yet. The app sees websocket.disconnect with that code."""
        self._stop_keepalive()
        if self.lost:
            return
        if self.state == WS_OPEN:
            self._close_now(CLOSE_SERVICE_RESTART, "")
        elif self.state != WS_HANDSHAKE:
            self.transport.close()
        else:
            self._disconnected(CLOSE_SERVICE_RESTART)
            self._send_500()
            self.transport.close()

    def cancel(self) -> None:
        """After the graceful timeout: cancel the app call if it still runs."""
        if self.app_task is not None and not self.app_task.done():
            self.app_task.cancel()

    # -- inbound: wsproto events to ASGI messages ---------------------------------------------

    def _feed_wsproto(self, data: bytes) -> None:
        """What the core's data path leaves to wsproto (see _WebSocketCore.data_received)."""
        conn = self.conn
        try:
            conn.receive_data(data)
        except LocalProtocolError:
            # Data after the closing handshake completed (e.g. a pong sent while our close
            # was in flight): nothing more to read.
            self.transport.close()
            return
        for event in conn.events():
            kind = type(event)
            if kind is _TEXT or kind is _BYTES:
                self._on_data(event)  # type: ignore[arg-type]
            elif kind is events.Ping:
                if conn.state is _OPEN:
                    self._write(conn.send(event.response()))  # type: ignore[attr-defined]
            elif kind is events.Pong:
                self._on_pong(event)  # type: ignore[arg-type]
            elif kind is events.CloseConnection:
                self._on_close(event)  # type: ignore[arg-type]
        if self.plain_frames:
            # The compiled path may read the next bytes only at a frame boundary.
            self._set_wsproto_busy(
                not (
                    conn.state is _OPEN
                    and self.state == WS_OPEN
                    and not self.fragments
                    and self.frames.at_frame_boundary()  # type: ignore[union-attr]
                )
            )

    def _on_data(self, event: events.TextMessage | events.BytesMessage) -> None:
        if self.state == WS_CLOSING:
            return  # the app has closed: what the peer still sends is dropped
        data = event.data
        size = _utf8_size(data) if type(event) is _TEXT else len(data)  # type: ignore[arg-type]
        if event.message_finished and not self.fragments:
            if size > self.max_size:
                self._message_too_big()
                return
            key = "text" if type(event) is _TEXT else "bytes"
            self.deliver({"type": "websocket.receive", key: data})
            return
        self.fragments_size += size
        if self.fragments_size > self.max_size:
            self._message_too_big()
            return
        self.fragments.append(data)
        if event.message_finished:
            if type(event) is _TEXT:
                message = {"type": "websocket.receive", "text": "".join(self.fragments)}
            else:
                message = {"type": "websocket.receive", "bytes": b"".join(self.fragments)}
            self.fragments = []
            self.fragments_size = 0
            self.deliver(message)

    def _message_too_big(self) -> None:
        self.fragments = []
        self._close_now(
            CLOSE_MESSAGE_TOO_BIG, f"Message exceeds the maximum size ({self.max_size} bytes)"
        )

    def _on_close(self, event: events.CloseConnection) -> None:
        state = self.conn.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer starts the closing handshake: echo its code (RFC 6455 5.5.1).
            self._write(self.conn.send(event.response()))
            self._disconnected(event.code, event.reason or "")
            self.transport.close()
        elif state is ConnectionState.CLOSED:
            # The peer answered our close frame: the closing handshake is complete.
            self.transport.close()
        else:
            # wsproto found a protocol error (bad frame 1002, invalid UTF-8 1007...) and
            # reports it as a close event with the code we must send (RFC 6455 7.1.7).
            self._close_now(event.code, event.reason or "")

    def _disconnected(self, code: int, reason: str = "") -> None:
        """Queue the one websocket.disconnect the app will see (after pending messages)."""
        if self._set_disconnect(code, reason):
            self._stop_keepalive()

    # -- outbound: ASGI messages to wsproto events --------------------------------------------

    def _send_other(self, message: dict) -> None:
        """send() for all but the core's fast path (see _WebSocketCore.send), which has
        already waited while writing was paused."""
        if self.lost or (self.disconnect_message is not None and not self.app_closed):
            raise ClientDisconnected()  # the peer, a limit or the server ended it
        kind = message["type"]
        if self.state == WS_OPEN:
            if kind == "websocket.send":
                self._send_message(message)
            elif kind == "websocket.close":
                self._send_close(message.get("code", CLOSE_NORMAL), message.get("reason") or "")
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
        elif self.state == WS_DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._send_denial_body(message)
        elif self.state == WS_HANDSHAKE:
            self._send_handshake_answer(kind, message)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")

    def _send_message(self, message: dict) -> None:
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("'websocket.send' needs 'bytes' or 'text'.")
        try:
            output = self.conn.send(events.Message(data=data))
        except LocalProtocolError as exc:  # the peer has closed
            raise ClientDisconnected() from exc
        if not self.transport.is_closing():
            self._write(output)

    def _send_close(self, code: int, reason: str) -> None:
        self._closing(by_app=True)
        self._stop_keepalive()
        self._disconnected(code, reason)
        try:
            output = self.conn.send(events.CloseConnection(code=code, reason=reason))
        except LocalProtocolError as exc:
            raise ClientDisconnected() from exc
        if not self.transport.is_closing():
            self._write(output)
            # Read on, to see the peer's close frame; drop it if it never comes.
            self.flow.resume_reading()
            self.close_handle = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)

    def _send_handshake_answer(self, kind: str, message: dict) -> None:
        client, path = access_target(self.scope)
        if kind == "websocket.accept":
            self.logger.info('%s - "WebSocket %s" [accepted]', client, path)
            self._log_access(101, message.get("headers", ()))
            self._accept(message)
        elif kind == "websocket.close":
            # Closing before accepting refuses the handshake (ASGI spec: 403).
            self.logger.info('%s - "WebSocket %s" 403', client, path)
            self._log_access(403, ())
            self._closing(by_app=True)
            self._disconnected(CLOSE_ABNORMAL)
            self._write_response(403, self.ctx.default_fields(), False)
            self.transport.close()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError("Invalid HTTP status code '%d' in response." % status)
            self.logger.info('%s - "WebSocket %s" %d', client, path, status)
            self._log_access(status, message.get("headers", ()))
            self._denying(by_app=True)
            self._write_response(
                status, self.ctx.default_fields() + list(message.get("headers", [])), True
            )
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _log_access(self, status: int, headers: Any) -> None:
        """--access-log-format: a record for the handshake's answer (101 when accepted)."""
        if self.ctx.access_log and self.ctx.access_log_format is not None:
            log_access_formatted(self.ctx.access_logger, self.ctx.access_log_format,
                                 self.scope, status, headers, 0, self.started)

    def _accept(self, message: dict) -> None:
        extensions: list[Extension] = []
        if self.settings.per_message_deflate:
            extensions.append(BoundedPerMessageDeflate(self.max_size))  # if the client offers it
        headers = self.ctx.default_fields() + list(message.get("headers", []))
        self._write_accept(message.get("subprotocol"), extensions, headers)
        self.frames = FrameState(self.conn)
        pending = self._accepted(self.frames.supports_plain_frames())
        if self.transport.is_closing():
            return
        self._start_keepalive()
        if pending:
            self.data_received(pending)
            self._resume_reading_if_room()

    def _send_denial_body(self, message: dict) -> None:
        finished = not message.get("more_body", False)
        self._write_response_body(message.get("body", b""), finished)
        if finished:
            self._closing(by_app=True)
            self._disconnected(CLOSE_ABNORMAL)
            self.transport.close()

    def _close_now(self, code: int, reason: str) -> None:
        """Send a close frame (when the connection is open) and drop the connection without
        waiting for the peer's: for limits, timeouts, protocol errors and shutdown."""
        self._closing(by_app=False)
        if self.conn.state is _OPEN and not self.transport.is_closing():
            self._write(self.conn.send(events.CloseConnection(code=code, reason=reason)))
        self._disconnected(code, reason)
        self.transport.close()

    def _send_500(self) -> None:
        if self.state != WS_HANDSHAKE or self.lost:
            return  # too late for an HTTP answer
        body = error_body(500)
        headers = [*error_fields(self.ctx.default_fields(), body), (b"connection", b"close")]
        self._denying(by_app=False)
        self._write_response(500, headers, True)
        self._write_response_body(body, True)

    def _refuse_handshake(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """An invalid handshake, or one during shutdown (503)."""
        self._closing(by_app=False)
        try:
            self._write_response(status, headers, False)
        except LocalProtocolError:  # pragma: no cover - h11 could not even start a response
            pass
        self.transport.close()

    # -- the app ------------------------------------------------------------------------------

    async def _run_app(self) -> None:
        close_code = CLOSE_NORMAL
        try:
            result = await self.ctx.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except Exception:
            self.logger.exception("Exception in ASGI application\n")
            self._send_500()
            # RFC 6455 7.4.1: 1011, the server met an unexpected condition.
            close_code = CLOSE_INTERNAL_ERROR
        else:
            if self.state == WS_HANDSHAKE:
                self.logger.error("ASGI callable returned without completing handshake.")
                self._send_500()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        finally:
            self._finish(close_code)

    def _finish(self, close_code: int) -> None:
        """The app is done: end the connection, politely when it is still open."""
        if self.lost or self.close_handle is not None:
            return  # gone already, or waiting (bounded) for the peer's close frame
        if self.state == WS_OPEN and self.conn.state is _OPEN:
            self._closing(by_app=False)
            self._write(self.conn.send(events.CloseConnection(code=close_code)))
        self.transport.close()

    def _on_app_done(self, task: asyncio.Task[None]) -> None:
        if self.lost:
            self.ctx.websockets.discard(self)

    # -- keepalive (RFC 6455 5.5.2, 5.5.3) ----------------------------------------------------

    def _start_keepalive(self) -> None:
        if self.settings.ping_interval is not None:
            self.ping_handle = self.loop.call_later(self.settings.ping_interval, self._send_ping)

    def _stop_keepalive(self) -> None:
        if self.ping_handle is not None:
            self.ping_handle.cancel()
            self.ping_handle = None
        if self.pong_handle is not None:
            self.pong_handle.cancel()
            self.pong_handle = None
        self.ping_payload = None

    def _send_ping(self) -> None:
        self.ping_handle = None
        if self.state != WS_OPEN or self.conn.state is not _OPEN or self.transport.is_closing():
            return
        # A random payload, so that only the answer to this ping counts as one.
        self.ping_payload = os.urandom(4)
        self._write(self.conn.send(events.Ping(payload=self.ping_payload)))
        if self.settings.ping_timeout is not None:
            self.pong_handle = self.loop.call_later(self.settings.ping_timeout, self._ping_timed_out)
        else:
            self._start_keepalive()

    def _on_pong(self, event: events.Pong) -> None:
        if self.ping_payload is None or bytes(event.payload) != self.ping_payload:
            return  # unsolicited (RFC 6455 5.5.3 allows them) or stale
        self.ping_payload = None
        if self.pong_handle is not None:
            self.pong_handle.cancel()
            self.pong_handle = None
            self._start_keepalive()

    def _ping_timed_out(self) -> None:
        self.pong_handle = None
        self._trace("WebSocket keepalive ping timeout")
        self._close_now(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")

    def _trace(self, message: str) -> None:
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):
            client = client_text(self.scope.get("client"))
            self.logger.log(TRACE_LOG_LEVEL, "%s%s", client + " - " if client else "", message)
