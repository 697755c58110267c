"""Stubs and docs for the compiled hot path, ``palfrey._parser``.

The compiled module knows nothing of the CLI or of defaults: server.py builds one
``ServerContext`` from a loaded ``Config`` and hands it to every ``HttpProtocol``.
"""

import asyncio
import logging
from typing import Any, Awaitable, Callable

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

class ServerContext:
    """State shared by every connection of one server: the app, limits, counters, clocks.

    All arguments are required; config.py owns the defaults.
    """

    # Counters the server loop reads.
    total_requests: int  # responses completed (for --limit-max-requests)
    active_requests: int  # app calls currently running (for --limit-concurrency)
    connections: set[HttpProtocol]  # open HTTP connections
    websockets: set[Any]  # open WebSocket protocols: each adds itself, removes itself when lost
    ws_protocol: Callable[[ServerContext, asyncio.Transport, dict, bytes], asyncio.BaseProtocol] | None
    shutting_down: bool

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

    def shutdown(self) -> None:
        """Begin graceful shutdown: close idle connections; in-flight responses finish with
        ``connection: close``."""

    def cancel_requests(self) -> None:
        """After the graceful timeout: cancel the app tasks still running."""

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

class _WebSocketCore:
    """The compiled part of one WebSocket connection (defined in _websocket.pxi); the base of
    protocols/websocket.py's WebSocketProtocol, which sets the attributes and keeps wsproto.

    Once accepted without an extension (``plain_frames``), whole, masked, unfragmented text
    and binary frames are read here: unmasked a word at a time, decoded (strict UTF-8) and
    queued as ``websocket.receive`` messages. The first frame that is anything else, and what
    follows it, goes to the subclass's ``_feed_wsproto(data)``; it sets ``wsproto_busy`` while
    wsproto holds part of a frame or message. ``send()`` frames ``websocket.send`` messages
    here and passes every other message, in every other state, to ``_send_other(message)``.
    Frames the app sends while it still has messages to answer are gathered into one write.
    Reading stops while ``max_queue`` messages wait, and ``send()`` waits while the transport
    has paused writing."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    max_size: int
    max_queue: int
    pending: bytearray
    accepted: bool
    response_started: bool
    close_sent: bool
    app_closed: bool
    lost: bool
    plain_frames: bool
    wsproto_busy: bool
    messages: Any
    receive_waiter: asyncio.Future[None] | None
    disconnect_message: dict | None
    output: list[bytes]
    flush_scheduled: bool
    reading_paused: bool
    writing_paused: bool
    drain_waiter: asyncio.Future[None] | None

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
    def _wake_writer(self) -> None: ...
    def _pause_reading(self) -> None: ...
    def _resume_reading(self) -> None: ...
