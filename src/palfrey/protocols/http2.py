"""HTTP/2 (SPEC.md section 8; RFC 9113) on h2, python-hyper's frame and state machine.

The compiled HTTP/1.1 core hands a connection over when TLS negotiated ``h2`` (ALPN), when
its first bytes are the client preface (prior knowledge), or after an ``Upgrade: h2c``
request, which becomes stream 1 (RFC 7540 3.2). This module owns the connection: h2's
state, the order and flow control of what is sent, the defences of RFC 9113 10.5, idle and
shutdown GOAWAYs. Each request is a compiled ``H2Stream`` (_http2.pxi) running the same ASGI
request cycle as HTTP/1.1, concurrently with the others; an extended CONNECT (RFC 8441) is a
WebSocket, served by protocols/websocket.py over the stream.

Flow control, both ways:
- received DATA is acknowledged (WINDOW_UPDATE) only once the app has taken it, so a
  stream's window (--h2-initial-window-size) bounds what waits for a slow app; the
  connection window is as big as all streams' windows together, so one slow stream never
  holds up another;
- sent DATA waits for the peer's windows; a stream's app waits in send() while more than
  STREAM_OUTPUT_HIGH bytes of its response are queued (per-stream output is bounded).

Defences (RFC 9113 10.5): h2 bounds header lists (HPACK bomb: --h2-max-header-list-size),
CONTINUATION chains and concurrent streams (--h2-max-concurrent-streams); here a budget of
frames that cost work but carry no request (SETTINGS, PING, PRIORITY, WINDOW_UPDATE,
RST_STREAM, empty DATA) ends a flood or a rapid reset with GOAWAY(ENHANCE_YOUR_CALM), and
DATA is never sent in slivers a peer dribbles its window open for. A connection the server
ends is half-closed and drained before it is closed, so the GOAWAY is read, not reset away.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import wsproto.connection
import wsproto.handshake
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame
from wsproto.extensions import Extension
from wsproto.utilities import split_comma_header

from palfrey._parser import FlowControl, H2Stream, connection_addresses, h2_request_status
from palfrey.protocols.common import (
    ERROR_MESSAGES,
    client_text,
    error_body,
    error_fields,
    linger_and_close,
    tls_extension,
)
from palfrey.protocols.websocket import WebSocketProtocol

logger = logging.getLogger("palfrey.error")

# The request scope of an h2c upgrade drops what only meant something to HTTP/1.1.
_HTTP1_ONLY_FIELDS = frozenset(
    [b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"proxy-connection",
     b"transfer-encoding"]
)  # fmt: skip
_UPGRADE_RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"

# A stream's app waits in send() while more of its response than this is queued (bytes).
STREAM_OUTPUT_HIGH = 65536
# DATA is not sent in frames smaller than this (bytes) unless it is all there is: a peer
# opening its window a few bytes at a time would otherwise have us build and send a frame
# per few bytes (CVE-2019-9511, data dribble).
MIN_DATA_FRAME = 1024
# Frames that cost work but carry no request: this many in a burst (refilled at
# FLOOD_REFILL_PER_SECOND), then GOAWAY(ENHANCE_YOUR_CALM) (CVE-2019-9512/-9515/-9518,
# CVE-2023-44487). The WINDOW_UPDATEs a peer owes for the DATA frames sent to it are free.
FLOOD_BUDGET = 1000
FLOOD_REFILL_PER_SECOND = 100.0
# h2 parses every frame it is given before it returns their events: input is fed to it in
# slices of this many bytes, so a flood is judged after at most one slice beyond its budget.
RECEIVE_SLICE = 8192

_RequestReceived = h2.events.RequestReceived
_DataReceived = h2.events.DataReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_TrailersReceived = h2.events.TrailersReceived
_CONTROL_EVENTS = (
    h2.events.RemoteSettingsChanged,
    h2.events.PingReceived,
    h2.events.PriorityUpdated,
)

# h2 validates what comes in; what goes out the core has validated already.
_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class H2Settings:
    """The Config's --h2-* values, bound once per server."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int,
        max_header_list_size: int,
        initial_window_size: int,
        max_frame_size: int,
        websocket: Any,
    ) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_size = max_header_list_size  # bytes (RFC 9113 6.5.2)
        self.initial_window_size = initial_window_size  # bytes
        self.max_frame_size = max_frame_size  # bytes
        # protocols/websocket.py's WebSocketSettings, or None for --ws none (then no
        # SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441).
        self.websocket = websocket

    def local_settings(self) -> h2.settings.Settings:
        codes = h2.settings.SettingCodes
        values = {
            codes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            codes.MAX_HEADER_LIST_SIZE: self.max_header_list_size,
            codes.INITIAL_WINDOW_SIZE: self.initial_window_size,
            codes.MAX_FRAME_SIZE: self.max_frame_size,
        }
        if self.websocket is not None:
            values[codes.ENABLE_CONNECT_PROTOCOL] = 1
        return h2.settings.Settings(client=False, initial_values=values)


def h2_protocol_factory(config: Any, websocket_settings: Any) -> Any:
    """The ``h2_protocol`` callable for ServerContext (config.http2 is on)."""
    settings = H2Settings(
        max_concurrent_streams=config.h2_max_concurrent_streams,
        max_header_list_size=config.h2_max_header_list_size,
        initial_window_size=config.h2_initial_window_size,
        max_frame_size=config.h2_max_frame_size,
        websocket=websocket_settings,
    )
    return functools.partial(H2Protocol, settings=settings)


class _Outbound:
    """A stream's response bytes waiting for the peer's flow-control windows."""

    __slots__ = ("chunks", "size", "end", "trailers", "waiter")

    def __init__(self) -> None:
        self.chunks: collections.deque[memoryview] = collections.deque()
        self.size = 0  # bytes in chunks
        self.end = False  # END_STREAM after the last chunk
        self.trailers: list[tuple[bytes, bytes]] | None = None  # sent after the last chunk
        self.waiter: asyncio.Future[None] | None = None  # the app's send(), while over high


class _Entry:
    """What the connection keeps of one of its streams: an HTTP exchange (``stream``) or a
    WebSocket (``websocket``)."""

    __slots__ = (
        "stream_id", "stream", "websocket", "task", "unacked", "outbound", "body_received",
        "last_input", "request_ended", "reset",
    )  # fmt: skip

    def __init__(self, stream_id: int, now: float) -> None:
        self.stream_id = stream_id
        self.stream: H2Stream | None = None
        self.websocket: H2StreamTransport | None = None
        self.task: asyncio.Task[None] | None = None
        self.unacked = 0  # flow-controlled bytes received, not yet acknowledged
        self.outbound: _Outbound | None = None
        self.body_received = 0  # bytes of request body (--limit-body-size)
        self.last_input = now  # loop time of the request's last frame (--timeout-request-body)
        self.request_ended = False  # the client's END_STREAM came
        self.reset = False  # RST_STREAM came (or h2 found the stream closed): nothing more is sent

    def active(self) -> bool:
        """Its app still runs (HTTP), or it is still open (WebSocket)."""
        if self.websocket is not None:
            return not self.websocket.closing
        return self.stream is not None and self.stream.app_running

    def responded(self) -> bool:
        """Its response is wholly handed to h2 (or can never be)."""
        if self.outbound is not None:
            return False
        if self.websocket is not None:
            return self.websocket.closing
        return self.stream is None or self.stream.ended or not self.stream.app_running


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (see the module docstring)."""

    def __init__(
        self,
        ctx: Any,
        transport: asyncio.Transport,
        leftover: bytes,
        upgrade: tuple[dict, bytes] | None,
        *,
        settings: H2Settings,
    ) -> None:
        self.ctx = ctx
        self.loop: asyncio.AbstractEventLoop = ctx.loop
        self.settings = settings
        self.transport = transport
        self.flow = FlowControl(transport, self.loop)
        self.leftover = leftover
        self.upgrade = upgrade
        self.server_addr, self.client_addr = connection_addresses(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls = (
            tls_extension(ssl_object, ctx.tls_server_cert) if ssl_object is not None else None
        )
        self.conn = h2.connection.H2Connection(config=_H2_CONFIG)
        self.entries: dict[int, _Entry] = {}
        self.last_stream_id = 0  # the highest stream this connection has taken
        self.goaway_sent = False  # ours or the peer's: no new streams
        self.closed = False
        self.idle_since = self.loop.time()
        self.flush_scheduled = False
        self.budget = float(FLOOD_BUDGET)
        self.budget_checked = self.idle_since
        self.window_updates_owed = 0  # for DATA frames sent (_data_sent)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.ctx.h2_connections.add(self)
        conn = self.conn
        conn.local_settings = self.settings.local_settings()
        conn.max_inbound_frame_size = self.settings.max_frame_size
        conn.decoder.max_header_list_size = self.settings.max_header_list_size
        if self.upgrade is not None:
            self.transport.write(_UPGRADE_RESPONSE)
            conn.initiate_upgrade_connection(self.upgrade[1])
        else:
            conn.initiate_connection()
        # The connection window is as big as every stream's together: a slow stream's
        # unread body never blocks another stream (each stream's own window bounds it).
        extra = min(
            self.settings.max_concurrent_streams * self.settings.initial_window_size,
            2**31 - 1,
        ) - 65535
        if extra > 0:
            conn.increment_flow_control_window(extra)
        if self.upgrade is not None:
            self._start_upgraded(self.upgrade[0])
            self.upgrade = None
        self._flush()
        if self.leftover:  # read first: a request already sent is served, even in shutdown
            leftover, self.leftover = self.leftover, b""
            self.data_received(leftover)
        if self.ctx.shutting_down:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), RECEIVE_SLICE):
            if self.closed:
                return
            self._receive(data[start : start + RECEIVE_SLICE] if len(data) > RECEIVE_SLICE else data)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def _receive(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # h2 has queued the GOAWAY with the error code (PROTOCOL_ERROR, FRAME_SIZE_ERROR,
            # ENHANCE_YOUR_CALM for an oversized header list...).
            self._close()
            return
        # A stream the peer resets within this same read is never started: with eager task
        # start (Python 3.12+) its app would run and answer before the reset is seen, and a
        # rapid reset (CVE-2023-44487) would cost 20x the CPU of 3.11.
        reset = {event.stream_id for event in events if type(event) is _StreamReset}
        for event in events:
            kind = type(event)
            if kind is _RequestReceived:
                if event.stream_id in reset:
                    if not self.goaway_sent:
                        self.last_stream_id = event.stream_id
                    continue
                self._on_request(event)
            elif kind is _DataReceived:
                self._on_data(event)
            elif kind is _StreamEnded or kind is _TrailersReceived:
                # Request trailers end the body; ASGI has no place for them.
                if kind is _StreamEnded or event.stream_ended:
                    self._on_end(event.stream_id)
            elif kind is _StreamReset:
                self._spend()  # rapid reset (CVE-2023-44487)
                self._on_reset(event.stream_id)
            elif kind is _WindowUpdated:
                if self.window_updates_owed:
                    self.window_updates_owed -= 1
                else:
                    self._spend()
                self._send_pending(event.stream_id)
            elif kind is h2.events.ConnectionTerminated:
                self.goaway_sent = True  # the peer's GOAWAY: it opens no more streams
                self._close_if_done()
            elif kind in _CONTROL_EVENTS:
                self._spend()
                if kind is h2.events.RemoteSettingsChanged:
                    self._send_pending(0)  # INITIAL_WINDOW_SIZE may have grown every window
            if self.closed:
                return

    # -- streams --------------------------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.goaway_sent and stream_id > self.last_stream_id:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)  # RFC 9113 6.8
            return
        self.last_stream_id = stream_id
        if self.ctx.over_concurrency_limit():
            self.ctx.error_logger.warning("Exceeded concurrency limit.")
            self._respond_with_error(stream_id, 503, event.stream_ended)
            return
        headers = event.headers
        status = h2_request_status(self.ctx, headers)
        if status:
            # The limits HTTP/1.1 applies (SPEC 2, beyond Uvicorn): 413, 414, 431.
            self.ctx.error_logger.warning(ERROR_MESSAGES[status])
            self._respond_with_error(stream_id, status, event.stream_ended)
            return
        entry = self.entries[stream_id] = _Entry(stream_id, self.loop.time())
        entry.request_ended = event.stream_ended
        if self.settings.websocket is not None and (b":protocol", b"websocket") in headers:
            self._start_websocket(entry, headers)
            return
        entry.stream = H2Stream(self, stream_id)
        try:
            entry.task = entry.stream.start(
                self.ctx, headers, self.server_addr, self.client_addr, self.tls,
                event.stream_ended,
            )
        except (ValueError, UnicodeDecodeError):  # no :path (a CONNECT), or a non-ASCII one
            del self.entries[stream_id]
            self._respond_with_error(stream_id, 400, event.stream_ended)
            return
        self._forget_if_done(entry)

    def _start_upgraded(self, scope: dict) -> None:
        """The h2c upgrade request (RFC 7540 3.2): stream 1, its request complete."""
        scope = dict(scope)
        scope["http_version"] = "2"
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in _HTTP1_ONLY_FIELDS]
        scope["extensions"] = {**scope.get("extensions", {}), "http.response.trailers": {}}
        entry = self.entries[1] = _Entry(1, self.loop.time())
        entry.stream = H2Stream(self, 1)
        self.last_stream_id = 1
        entry.task = entry.stream.start_with_scope(self.ctx, scope)

    def _start_websocket(self, entry: _Entry, headers: list[tuple[bytes, bytes]]) -> None:
        """An extended CONNECT (RFC 8441 4): a WebSocket on this stream."""
        stream = H2Stream(self, entry.stream_id)  # only to build the scope, as for requests
        scope = stream.scope_of(self.ctx, headers, self.server_addr, self.client_addr, self.tls)
        transport = entry.websocket = H2StreamTransport(self, entry)
        protocol = H2WebSocketProtocol(
            self.ctx, transport, scope, b"", settings=self.settings.websocket
        )
        transport.protocol = protocol
        protocol.connection_made(transport)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        size = event.flow_controlled_length
        if not size and not event.stream_ended:
            self._spend()  # empty DATA (CVE-2019-9518)
        entry = self.entries.get(stream_id)
        if entry is None or (entry.stream is not None and entry.stream.response_done):
            self._acknowledge(stream_id, size)  # nobody will read it: let the window go on
            return
        entry.unacked += size
        entry.last_input = self.loop.time()
        if entry.websocket is not None:
            entry.websocket.feed(event.data)
            return
        entry.body_received += len(event.data)
        limit = self.ctx.limit_body_size
        if 0 <= limit < entry.body_received:
            self._refuse_stream(entry, 413)
        elif event.data:
            entry.stream.receive_body(event.data)

    def _on_end(self, stream_id: int) -> None:
        entry = self.entries.get(stream_id)
        if entry is None:
            return
        entry.request_ended = True
        if entry.websocket is not None:
            entry.websocket.peer_ended()
        else:
            entry.stream.end_body()

    def _on_reset(self, stream_id: int) -> None:
        entry = self.entries.get(stream_id)
        if entry is None:
            return
        self._wake(entry)
        entry.outbound = None
        entry.reset = True
        if entry.websocket is not None:
            entry.websocket.lost()
        else:
            entry.stream.disconnect()
        self._forget_if_done(entry)

    def _refuse_stream(self, entry: _Entry, status: int) -> None:
        """A request that broke a limit while its app ran (413, 408): the app hears a
        disconnect; the client gets the status if no response began, else a reset."""
        self.ctx.error_logger.warning(ERROR_MESSAGES[status])
        stream = entry.stream
        started = stream.response_started
        stream.disconnect()
        self._wake(entry)
        entry.outbound = None
        entry.request_ended = True  # no more is read
        if started:
            self._reset(entry.stream_id, ErrorCodes.CANCEL)
        else:
            self._respond_with_error(entry.stream_id, status, request_ended=False)
        self._forget_if_done(entry)

    def _respond_with_error(self, stream_id: int, status: int, request_ended: bool) -> None:
        """The server's own answer on one stream (400, 408, 413, 414, 431, 503), as
        HTTP/1.1's; a client still sending its body is then asked to stop (RFC 9113 8.1:
        RST_STREAM with NO_ERROR)."""
        body = error_body(status)
        headers = [(b":status", b"%d" % status), *error_fields(self.ctx.default_fields(), body)]
        try:
            self.conn.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:  # the stream is gone, or no window for the body
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
        else:
            if not request_ended:
                self._reset(stream_id, ErrorCodes.NO_ERROR)
        self._request_flush()

    # -- called by H2Stream (the cycle's Responder) ---------------------------------------------

    def send_response_headers(self, stream: H2Stream, headers: list, end_stream: bool) -> None:
        self._send_headers(stream.stream_id, headers, end_stream)

    def send_informational(self, stream: H2Stream, headers: list) -> None:
        self._send_headers(stream.stream_id, headers, False)

    def send_response_data(self, stream: H2Stream, data: bytes, end_stream: bool) -> None:
        entry = self.entries.get(stream.stream_id)
        if entry is not None:
            self._send_data(entry, data, end_stream)

    def send_response_trailers(self, stream: H2Stream, trailers: list) -> None:
        entry = self.entries.get(stream.stream_id)
        if entry is None or self.closed:
            return
        if entry.outbound is not None:
            entry.outbound.trailers = trailers  # after the queued data
            return
        self._send_headers(stream.stream_id, trailers, True)

    async def send_response_file(self, stream: H2Stream, fd: int, offset: int, count: int) -> None:
        """A file body (http.response.pathsend, zerocopysend): read a chunk at a time into
        DATA frames, waiting on the stream's flow control like send()."""
        entry = self.entries.get(stream.stream_id)
        while count > 0 and entry is not None and not entry.reset and not self.closed:
            data = os.pread(fd, min(count, STREAM_OUTPUT_HIGH), offset)
            if not data:
                raise RuntimeError("The file ended before its length was sent (did it shrink?)")
            self._send_data(entry, data, False)
            offset += len(data)
            count -= len(data)
            waiter = self.stream_writable(stream)
            if waiter is not None:
                await waiter

    def stream_writable(self, stream: H2Stream) -> Any:
        if self.flow.writing_paused and not self.closed:
            return self.flow.drain()
        entry = self.entries.get(stream.stream_id)
        if entry is None or entry.outbound is None or entry.outbound.size <= STREAM_OUTPUT_HIGH:
            return None
        if entry.outbound.waiter is None:
            entry.outbound.waiter = self.loop.create_future()
        return entry.outbound.waiter

    def stream_body_taken(self, stream: H2Stream) -> None:
        entry = self.entries.get(stream.stream_id)
        if entry is not None:
            self._acknowledge_unacked(entry)

    def stream_response_complete(self, stream: H2Stream) -> None:
        entry = self.entries.get(stream.stream_id)
        if entry is not None:
            self._stop_unread_request(entry)
            self._forget_if_done(entry)

    def _stop_unread_request(self, entry: _Entry) -> None:
        """The response is complete (and sent) but the client is still sending a body the
        app will not read: ask it to stop (RFC 9113 8.1: RST_STREAM with NO_ERROR)."""
        if entry.outbound is None and not entry.request_ended and entry.stream is not None \
                and entry.stream.response_done:
            entry.request_ended = True
            self._reset(entry.stream_id, ErrorCodes.NO_ERROR)

    def stream_abort(self, stream: H2Stream) -> None:
        """The app failed after its response began: reset the stream (RFC 9113 8.1.1)."""
        entry = self.entries.get(stream.stream_id)
        if entry is not None:
            entry.outbound = None
        self._reset(stream.stream_id, ErrorCodes.INTERNAL_ERROR)

    def stream_app_done(self, stream: H2Stream) -> None:
        entry = self.entries.get(stream.stream_id)
        if entry is not None:
            self._forget_if_done(entry)

    # -- sending --------------------------------------------------------------------------------

    def _send_headers(self, stream_id: int, headers: list, end_stream: bool) -> None:
        if self.closed:
            return
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            self._on_reset(stream_id)  # reset meanwhile: send() after it is a no-op
            return
        self._request_flush()

    def _send_data(self, entry: _Entry, data: bytes, end_stream: bool) -> None:
        if self.closed or entry.reset:
            return
        outbound = entry.outbound
        if outbound is None:
            try:
                window = self.conn.local_flow_control_window(entry.stream_id)
                if len(data) <= min(window, self.conn.max_outbound_frame_size):
                    if data or end_stream:
                        self.conn.send_data(entry.stream_id, data, end_stream=end_stream)
                        self._data_sent()
                        self._request_flush()
                    return
            except h2.exceptions.StreamClosedError:
                self._on_reset(entry.stream_id)
                return
            outbound = entry.outbound = _Outbound()
        if data:
            outbound.chunks.append(memoryview(data))
            outbound.size += len(data)
        outbound.end = end_stream
        self._send_queued(entry)

    def _send_pending(self, stream_id: int) -> None:
        """A window opened (stream_id 0: the connection's, or every stream's)."""
        if stream_id:
            entry = self.entries.get(stream_id)
            if entry is not None and entry.outbound is not None:
                self._send_queued(entry)
            return
        for entry in list(self.entries.values()):
            if entry.outbound is not None:
                self._send_queued(entry)
                if self.conn.outbound_flow_control_window <= 0:
                    break

    def _send_queued(self, entry: _Entry) -> None:
        """Send as much of a stream's queued response as the windows allow."""
        try:
            self._send_queued_frames(entry)
        except h2.exceptions.StreamClosedError:  # reset by the client, its RST_STREAM read
            self._on_reset(entry.stream_id)

    def _send_queued_frames(self, entry: _Entry) -> None:
        outbound = entry.outbound
        assert outbound is not None
        conn = self.conn
        stream_id = entry.stream_id
        sent = False
        while outbound.chunks:
            window = conn.local_flow_control_window(stream_id)
            size = min(window, conn.max_outbound_frame_size, len(outbound.chunks[0]))
            if size <= 0 or size < min(MIN_DATA_FRAME, outbound.size):
                break  # wait for a window worth a frame
            chunk = outbound.chunks[0]
            last = size == len(chunk) and len(outbound.chunks) == 1
            conn.send_data(
                stream_id, chunk[:size], end_stream=last and outbound.end and not outbound.trailers
            )
            self._data_sent()
            sent = True
            outbound.size -= size
            if size == len(chunk):
                outbound.chunks.popleft()
            else:
                outbound.chunks[0] = chunk[size:]
        if not outbound.chunks:
            if outbound.trailers is not None:
                conn.send_headers(stream_id, outbound.trailers, end_stream=True)
            elif outbound.end and not sent:
                conn.end_stream(stream_id)
            entry.outbound = None
            sent = True
            self._stop_unread_request(entry)
        if outbound.size <= STREAM_OUTPUT_HIGH:
            self._wake(entry, outbound)
        if sent:
            self._request_flush()
            if entry.outbound is None:
                self._forget_if_done(entry)

    def _wake(self, entry: _Entry, outbound: _Outbound | None = None) -> None:
        """The stream's queued output is below its high water again (or gone)."""
        outbound = outbound or entry.outbound
        if outbound is not None and outbound.waiter is not None:
            waiter, outbound.waiter = outbound.waiter, None
            if not waiter.done():
                waiter.set_result(None)
        if entry.websocket is not None:
            entry.websocket.writable()

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.conn.acknowledge_received_data(size, stream_id)
            self._request_flush()

    def _acknowledge_unacked(self, entry: _Entry) -> None:
        if entry.unacked:
            size, entry.unacked = entry.unacked, 0
            self._acknowledge(entry.stream_id, size)

    # -- the defence budget ---------------------------------------------------------------------

    def _spend(self) -> None:
        self.budget -= 1
        if self.budget >= 0:
            return
        now = self.loop.time()
        self.budget = min(
            float(FLOOD_BUDGET), self.budget + (now - self.budget_checked) * FLOOD_REFILL_PER_SECOND
        )
        self.budget_checked = now
        if self.budget < 0 and not self.closed:
            client = client_text(self.client_addr) or "a unix socket"
            self.ctx.error_logger.warning(
                "HTTP/2 flood from %s: too many control frames or reset streams; closing.", client
            )
            self.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream_id)
            self._close()

    def _data_sent(self) -> None:
        # A DATA frame earns the peer its stream's and the connection's WINDOW_UPDATE: those
        # are free, whatever else it sends is not (a reset after an answer included).
        self.window_updates_owed = min(FLOOD_BUDGET, self.window_updates_owed + 2)

    # -- the connection's life ------------------------------------------------------------------

    def _reset(self, stream_id: int, code: ErrorCodes) -> None:
        if self.closed:
            return
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # closed already (both sides ended, or reset)
        self._request_flush()

    def _forget_if_done(self, entry: _Entry) -> None:
        """A stream leaves once its app is done (its WebSocket closed) and nothing of its
        response waits to go."""
        if entry.outbound is None and not entry.active():
            if self.entries.pop(entry.stream_id, None) is not None:
                self._acknowledge_unacked(entry)
                if not self.entries:
                    self.idle_since = self.loop.time()
        self._close_if_done()

    def _close_if_done(self) -> None:
        """After a GOAWAY (ours or the peer's): close once every response has gone out."""
        if self.goaway_sent and not self.closed and all(
            entry.responded() for entry in self.entries.values()
        ):
            self._close()

    def _request_flush(self) -> None:
        if not self.flush_scheduled and not self.closed:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def _close(self) -> None:
        """End the connection from our side (after a GOAWAY): see linger_and_close."""
        if not self.closed:
            self._flush()
            self._finish()
            linger_and_close(self.transport, self.loop)

    def _finish(self) -> None:
        """The connection is over for this protocol: every stream hears of it."""
        if self.closed:
            return
        self.closed = True
        self.flow.connection_lost()
        for entry in list(self.entries.values()):
            self._wake(entry)
            if entry.websocket is not None:
                entry.websocket.lost()
            elif entry.stream is not None:
                entry.stream.disconnect()
        self.ctx.h2_connections.discard(self)

    # -- called by the server (ServerContext) ---------------------------------------------------

    def check_idle(self, now: float) -> None:
        """Once a second: --timeout-keep-alive closes a connection with no stream this long
        (GOAWAY(NO_ERROR)); --timeout-request-body answers 408 on a stream whose body
        stalls while its window is open (slowloris over HTTP/2)."""
        if self.closed:
            return
        if not self.entries:
            if now - self.idle_since >= self.ctx.timeout_keep_alive:
                self.conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.last_stream_id)
                self._close()
            return
        timeout = self.ctx.timeout_request_body
        for entry in list(self.entries.values()):
            if (entry.stream is not None and not entry.request_ended and not entry.unacked
                    and now - entry.last_input >= timeout and not entry.stream.response_done):
                self._refuse_stream(entry, 408)

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY with the last stream taken (RFC 9113 6.8); the streams
        in flight finish, then the connection closes."""
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        self._flush()
        # Written by hand: h2's close_connection would refuse every frame after it, and the
        # streams in flight still have responses to send.
        frame = GoAwayFrame(0, last_stream_id=self.last_stream_id, error_code=ErrorCodes.NO_ERROR)
        self.transport.write(frame.serialize())
        self._close_if_done()

    def cancel(self) -> None:
        """After the graceful timeout: cancel the app calls still running."""
        for entry in list(self.entries.values()):
            if entry.stream is not None and entry.task is not None:
                entry.stream.cancel_app(entry.task)

    # -- WebSocket streams (H2StreamTransport) --------------------------------------------------

    def websocket_respond(self, entry: _Entry, headers: list, end_stream: bool) -> None:
        self._send_headers(entry.stream_id, headers, end_stream)

    def websocket_write(self, entry: _Entry, data: bytes, end_stream: bool) -> None:
        self._send_data(entry, data, end_stream)
        outbound = entry.outbound
        if outbound is not None and outbound.size > STREAM_OUTPUT_HIGH:
            entry.websocket.protocol.pause_writing()

    def websocket_read_on(self, entry: _Entry) -> None:
        self._acknowledge_unacked(entry)

    def websocket_closed(self, entry: _Entry) -> None:
        self._forget_if_done(entry)


class H2StreamTransport(asyncio.Transport):
    """The transport a WebSocket over HTTP/2 sees (RFC 8441): one stream of an H2Protocol.

    Writes become DATA frames (flow-controlled, queued like a response); close() ends the
    stream (END_STREAM, as a TCP FIN); pausing reading withholds the WINDOW_UPDATEs, so the
    peer's window closes."""

    def __init__(self, connection: H2Protocol, entry: _Entry) -> None:
        super().__init__()
        self.connection = connection
        self.entry = entry
        self.protocol: Any = None
        self.closing = False  # close() was called, or the stream is gone
        self.ended = False  # END_STREAM is sent (or queued)
        self.reading = True

    # -- what the WebSocket protocol calls --

    def write(self, data: bytes) -> None:
        if not self.closing and not self.ended and data:
            self.connection.websocket_write(self.entry, bytes(data), False)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.end()
        self.connection.loop.call_soon(self._lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.connection.websocket_read_on(self.entry)

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.connection.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return self.entry.outbound.size if self.entry.outbound is not None else 0

    # -- what the HTTP/2 connection calls --

    def respond(self, headers: list, end_stream: bool) -> None:
        """The response to the extended CONNECT (200 accepts it)."""
        self.ended = end_stream
        self.connection.websocket_respond(self.entry, headers, end_stream)

    def write_body(self, data: bytes, end_stream: bool) -> None:
        """A denial response's body."""
        if not self.ended:
            self.ended = end_stream
            self.connection.websocket_write(self.entry, data, end_stream)

    def end(self) -> None:
        self.write_body(b"", True)

    def feed(self, data: bytes) -> None:
        if data and not self.closing:
            self.protocol.data_received(data)
        if self.reading:
            self.connection.websocket_read_on(self.entry)

    def peer_ended(self) -> None:
        """END_STREAM from the client: its side is closed, as a TCP FIN (RFC 8441 5)."""
        if not self.protocol.eof_received():
            self.close()

    def writable(self) -> None:
        if self.protocol is not None:
            self.protocol.resume_writing()

    def lost(self) -> None:
        """RST_STREAM, or the connection is gone."""
        self.closing = True
        self._lost(ConnectionResetError("HTTP/2 stream reset"))

    def _lost(self, exc: Exception | None) -> None:
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connection_lost(exc)
            self.connection.websocket_closed(self.entry)


class H2WebSocketProtocol(WebSocketProtocol):
    """WebSocketProtocol with the HTTP/2 opening handshake (RFC 8441 4, 5): the extended
    CONNECT is the request, a 200 response accepts it, and frames flow on the stream."""

    __slots__ = ()
    transport: H2StreamTransport

    def _check_handshake(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        version = _field(self.scope["headers"], b"sec-websocket-version")
        if version != b"13":
            return (400 if version is None else 426, [(b"sec-websocket-version", b"13")])
        return None

    def _write_response(self, status: int, headers: list[tuple[bytes, bytes]], has_body: bool) -> None:
        fields = [(b":status", b"%d" % status)] + [
            (name.lower(), value) for name, value in headers if name.lower() != b"connection"
        ]
        self.transport.respond(fields, not has_body)

    def _write_response_body(self, data: bytes, finished: bool) -> None:
        self.transport.write_body(data, finished)

    def _write_accept(
        self, subprotocol: str | None, extensions: list[Extension], headers: list[tuple[bytes, bytes]]
    ) -> None:
        fields = [(b":status", b"200")]
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        offers = _field(self.scope["headers"], b"sec-websocket-extensions")
        if extensions and offers is not None:
            accepted = wsproto.handshake.server_extensions_handshake(
                split_comma_header(offers), extensions
            )
            if accepted:
                fields.append((b"sec-websocket-extensions", accepted))
        fields += [(name.lower(), value) for name, value in headers]
        self.conn = wsproto.connection.Connection(
            wsproto.connection.ConnectionType.SERVER, extensions
        )
        self.transport.respond(fields, False)


def _field(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for field_name, value in headers:
        if field_name == name:
            return value
    return None
