"""Stubs and docs for the compiled hot path, ``palfrey._parser``.

The compiled module knows nothing of the CLI or of defaults: server.py builds one
``ServerContext`` from a loaded ``Config`` and hands it to every ``HttpProtocol``.
"""

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

ASGIApp: TypeAlias = Callable[
    [dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]
]

class ServerContext:
    """State shared by every connection of one server: the app, limits, counters, clocks.

    All arguments are required; config.py owns the defaults.
    """

    # Counters the server loop reads.
    total_requests: int  # responses completed (for --limit-max-requests)
    active_requests: int  # app calls currently running (for --limit-concurrency)
    connections: set[HttpProtocol]  # open HTTP connections, until closed and their app is done
    websockets: set[Any]  # open WebSocket protocols: each adds itself, removes itself when lost
    ws_protocol: Callable[[ServerContext, asyncio.Transport, dict, bytes], asyncio.BaseProtocol] | None
    shutting_down: bool
    draining: bool  # shutdown(drain=True): idle connections keep their keep-alive timeout
    # What every response carries (protocols/websocket.py and HTTP/2 read them).
    default_headers: list[tuple[bytes, bytes]]  # server and --header values
    date_header: bool
    date_value: bytes  # IMF-fixdate of the current second (RFC 9110 5.6.7)

    def __init__(
        self,
        *,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        app_state: dict[str, Any],
        root_path: str,
        default_headers: list[tuple[bytes, bytes]],
        date_header: bool,
        access_log: bool,
        error_logger: logging.Logger,
        access_logger: logging.Logger,
        limit_concurrency: int | None,
        timeout_keep_alive: float,
        timeout_request_header: float,
        timeout_request_body: float,
        limit_header_size: int,
        limit_header_line_size: int,
        limit_header_count: int,
        limit_target_size: int,
        limit_body_size: int | None,
        ws_protocol: Callable[[ServerContext, asyncio.Transport, dict, bytes], asyncio.BaseProtocol]
        | None,
    ) -> None:
        """``default_headers`` are lower-cased (name, value) pairs sent on every response
        (``server`` and --header values); ``date_header`` adds the cached ``date`` line.

        Deadlines (checked once a second): an idle connection, new or between requests, is
        closed after ``timeout_keep_alive``; a request head must be complete
        ``timeout_request_header`` after its first byte, and a body may stall no longer than
        ``timeout_request_body`` between reads (both: 408, closed).

        ``ws_protocol``: for a request with ``Upgrade: websocket`` and ``Connection: upgrade``
        the core calls ``ws_protocol(ctx, transport, scope, leftover)`` once the parser has
        read the whole handshake request (``scope`` is the HTTP scope built for it: method,
        path, headers..., ``leftover`` the bytes already read after it), then
        ``transport.set_protocol(protocol)`` and ``protocol.connection_made(transport)``.
        From then on the connection is the protocol's. ``None`` (--ws none): such upgrades
        are served as plain HTTP with a warning."""

    def tick(self, now: float) -> None:
        """Call often (server.py: every 0.1 s) with ``loop.time()``: it stamps idle
        connections with that clock and, once per wall-clock second, rebuilds the cached Date
        line (from ``time.time()``) and acts on the connections whose deadline has passed."""

    def default_fields(self) -> list[tuple[bytes, bytes]]:
        """``default_headers`` and, with ``date_header``, ``(b"date", date_value)``."""

    def shutdown(self, drain: bool = False) -> None:
        """Begin graceful shutdown: no exchange keeps its connection alive any more (in-flight
        responses finish with ``connection: close``); what is already on its way (a request
        head, or a request in the socket buffer of an idle connection) gets a short grace and
        is answered. With ``drain`` (a retiring worker whose listening socket lives on in the
        others), idle connections are not cut short: each stays until its next request,
        answered with ``connection: close``, or until its keep-alive timeout."""

    def cancel_requests(self) -> None:
        """After the graceful timeout: cancel the app tasks still running."""

class FlowControl:
    """Read pause/resume and the write-drain wait of one transport (HTTP/1.1, WebSocket,
    HTTP/2): ``pause_reading``/``resume_reading`` call the transport's at most once each way;
    ``pause_writing``/``resume_writing`` are what the protocol's own methods of those names
    forward; ``drain()`` is an awaitable that finishes once writing may go on or the
    connection is lost (``connection_lost()``)."""

    reading_paused: bool
    writing_paused: bool
    lost: bool

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def connection_lost(self) -> None: ...
    def drain(self) -> Awaitable[None]: ...

def response_framing(
    status: int, method: str, http_version: str, headers: Any, keep_alive: bool = True
) -> dict[str, Any]:
    """The framing decision the core makes when a response starts, alone, for tests.

    ``headers`` are the app's (name, value) pairs (validated as the core validates them:
    RuntimeError on a bad field, on conflicting content-lengths, or on content-length with
    transfer-encoding); ``http_version`` is "1.0", "1.1" or "2"; ``keep_alive`` whether the
    connection could carry another request. Returns ``{"fields": the app's fields as HTTP/1.1
    field lines (names lower-cased), "framing": "none" | "length" |
    "chunked" | "close" | "stream", "length": int | None, "keep_alive": bool,
    "add_chunked": bool, "add_close": bool}`` (RFC 9110 6.4.1, RFC 9112 6.1-6.3)."""

class HttpProtocol(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection. The loop reads straight into its preallocated buffer.

    Requests are answered strictly in order: the parser pauses at the end of each request
    until its response is complete. Output is gathered in a per-connection buffer: a small
    response leaves in one write, and the responses to pipelined requests of one read (or
    the chunks an app streams without waiting) leave together at the end of the loop pass.
    On Python 3.12+ the app task starts eagerly (no loop round-trip for an app that never
    waits)."""

    def __init__(self, ctx: ServerContext) -> None: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def get_buffer(self, sizehint: int) -> memoryview: ...
    def buffer_updated(self, nbytes: int) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...

class WsState(enum.IntEnum):
    """The state of a WebSocket connection, owned by _WebSocketCore."""

    WS_HANDSHAKE = ...  # waiting for the app's accept, close or denial response
    WS_DENYING = ...  # sending an HTTP denial response (the app's, or a 500)
    WS_OPEN = ...  # accepted (101 sent)
    WS_CLOSING = ...  # our close frame went out, or the handshake was refused

class _WebSocketCore:
    """The compiled part of one WebSocket connection (defined in _websocket.pxi); the base of
    protocols/websocket.py's WebSocketProtocol, which keeps wsproto.

    It owns the connection's state: ``state`` (WsState) and the flags below, changed only by
    the methods ``_accepted``, ``_denying``, ``_closing``, ``_lost``, ``_set_wsproto_busy`` and
    ``_set_disconnect``. Once accepted without an extension (``plain_frames``), whole, masked,
    unfragmented text and binary frames are read here: unmasked a word at a time, decoded
    (strict UTF-8) and queued as ``websocket.receive`` messages. The first frame that is
    anything else, and what follows it, goes to the subclass's ``_feed_wsproto(data)``.
    ``send()`` frames ``websocket.send`` messages here and passes every other message, in every
    other state, to ``_send_other(message)``. Frames the app sends while it still has messages
    to answer are gathered into one write. Reading stops while ``max_queue`` messages wait, and
    ``send()`` waits while the transport has paused writing."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    flow: FlowControl
    max_size: int  # bytes
    max_queue: int  # messages
    state: WsState
    accepted: bool  # 101 was sent (stays true once closing)
    app_closed: bool  # the app ended the conversation (websocket.close or a denial)
    lost: bool
    plain_frames: bool
    disconnect_message: dict | None

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        max_size: int,
        max_queue: int,
        leftover: bytes,
    ) -> None:
        """``leftover``: the bytes read after the handshake request, held until accept."""
    def _accepted(self, plain_frames: bool) -> bytes:
        """101 is sent: WS_OPEN. Returns the bytes read meanwhile, for data_received."""
    def _denying(self, by_app: bool) -> None:
        """WS_DENYING: an HTTP response refuses the handshake."""
    def _closing(self, by_app: bool) -> None:
        """WS_CLOSING: our close frame is out, or the handshake was refused."""
    def _lost(self) -> None: ...
    def _set_wsproto_busy(self, busy: bool) -> None:
        """wsproto holds part of a frame or message: the next bytes are its."""
    def _set_disconnect(self, code: int, reason: str) -> bool:
        """Queue the one websocket.disconnect (after pending messages); False if known."""
    def _resume_reading_if_room(self) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def deliver(self, message: dict) -> None:
        """Queue an ASGI message for receive() and wake it."""
    async def receive(self) -> dict: ...
    async def send(self, message: dict) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def _write(self, data: bytes) -> None:
        """Write after the frames already gathered, keeping their order."""
    def _flush(self) -> None: ...
