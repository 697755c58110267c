"""An in-process connection: the compiled HttpProtocol fed bytes the way the event loop feeds it,
with no socket in between, so that a test chooses where reads split (over a socket the kernel
does) and gets the same outcome on every run.

    harness = Harness(app, limit_body_size=1024)        # options as palfrey.Config takes them
    outcome = harness.run_connection([head, body])      # two reads, then the client vanishes
    responses = check_invariants(outcome)               # parsed; raises on a broken rule

A read is what the loop does on a readable socket: ``get_buffer`` then ``buffer_updated`` with
as much as the buffer offered, from a callback of the running loop (so that on Python 3.12+
an app task starts eagerly inside the parser, as it does in the server). Between two reads
the loop runs until nothing moves (no output, no new task, no completed request for a few
passes), so the app tasks answer. ``Connection``
gives a test the single steps (one read, settle, the client vanishing); a FakeTransport records
every write, close and pause. The WebSocket hand-over works too: after it, reads go to the
WebSocket protocol's ``data_received``, as the loop's ``set_protocol`` makes them.

Used by the split-read, pipelining and eager-answer tests and by the fuzz targets (tests/fuzz).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from palfrey._parser import HttpProtocol
from palfrey.config import Config
from palfrey.lifespan import LifespanOff
from palfrey.server import Server

# Statuses the server produces on its own (rejections, and 500 for an app error).
SERVER_ERRORS = {400, 408, 413, 414, 431, 500, 501, 503}
WS_KEY = base64.b64encode(b"fuzzfuzzfuzzfuzz")
WS_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + WS_KEY + b"\r\n\r\n"
)
# How many loop passes may go by without progress before the connection counts as settled.
SETTLE_PASSES = 4
MAX_SETTLE_PASSES = 200


class FakeTransport(asyncio.Transport):
    """What the protocol sees of a socket: writes are kept, nothing leaves the process."""

    def __init__(self, sockname: Any = ("127.0.0.1", 8000), peername: Any = ("127.0.0.1", 40000)):
        super().__init__()
        self.writes: list[bytes] = []  # one item per write() or writelines() (one writev)
        self.out = bytearray()  # every byte written, in order
        self.closed = False
        self.paused = False
        self.writes_after_close = 0
        self.protocol: Any = None  # the protocol reads go to (changed by a WebSocket hand-over)
        self.extra = {"sockname": sockname, "peername": peername}

    def write(self, data) -> None:
        if self.closed:
            self.writes_after_close += 1
            return
        self.writes.append(bytes(data))
        self.out += data

    def writelines(self, lines) -> None:
        if self.closed:
            self.writes_after_close += 1
            return
        data = b"".join(lines)
        self.writes.append(data)
        self.out += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True  # our side is done (FIN); a lingering close reads on, discarding

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Outcome:
    """What one connection did, as the client and the server's log saw it."""

    out: bytes = b""
    writes: list[bytes] = field(default_factory=list)  # `out`, one item per write
    closed: bool = False
    stalled: bool = False  # reading paused with input left that the protocol never asked for
    writes_after_close: int = 0
    errors: list[str] = field(default_factory=list)  # ERROR log messages (app exceptions)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level name, message), all
    leaks: list[str] = field(default_factory=list)

    def comparable(self) -> tuple:
        """What must not depend on how the input was split."""
        return (self.out, self.closed, self.stalled, self.writes_after_close, tuple(self.errors))


class Harness:
    """One event loop and one ServerContext, as ``palfrey APP`` with these options would build
    them (``options`` are palfrey.Config's keyword arguments; the defaults are Config's), shared
    by every connection it runs. Logs are kept per connection run, never printed. Access-log
    records are built only with ``access_log=True``."""

    def __init__(self, app: Any, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] =
                 asyncio.new_event_loop, **options: Any) -> None:  # fmt: skip
        options.setdefault("interface", "asgi3")
        access_log = options.setdefault("access_log", False)
        config = Config(app, log_config=None, **options)
        config.load()
        self.config = config
        self.loop = loop_factory()
        self._records = _Records()
        # Loggers of our own, outside logging's tree: nothing reaches pytest's or the root's.
        self.error_logger = logging.Logger("palfrey.harness.error", logging.DEBUG)  # noqa: LOG001
        self.access_logger = logging.Logger("palfrey.harness.access", logging.DEBUG)  # noqa: LOG001
        for logger in (self.error_logger, self.access_logger):
            logger.addHandler(self._records)
        # The context server.py builds from the Config (no lifespan: its state is empty),
        # logging to our loggers. Never ticked again: the Date line stays the same for every
        # run, so two runs compare byte for byte.
        server = Server(config)
        server.lifespan = LifespanOff(config)
        self.ctx = server._create_context(self.loop)
        self.ctx.error_logger = self.error_logger
        self.ctx.access_logger = self.access_logger
        self.ctx.access_log = access_log

    def close(self) -> None:
        self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> Connection:
        self._records.records.clear()
        return Connection(self)

    def run_connection(self, pieces: Sequence[bytes]) -> Outcome:
        """Feed ``pieces`` one read at a time (a piece larger than the protocol's buffer takes
        several reads), letting the loop settle after each; then the client vanishes. Stops
        early when the server closes, or when reading stays paused with input left (stalled).
        """
        conn = self.connect()
        transport = conn.transport
        stalled = False
        pending = b"".join(pieces)
        boundaries = _boundaries(pieces)
        fed = 0
        while fed < len(pending) and not transport.closed:
            if transport.paused:
                conn.settle()
                if transport.paused:
                    stalled = True
                    break
                continue
            end = next(b for b in boundaries if b > fed)
            fed += conn.read(pending[fed:end])
            conn.settle()
        outcome = conn.finish()
        outcome.stalled = stalled
        return outcome

    def run_websocket(self, pieces: Sequence[bytes], progress: Callable[[], Any] = lambda: None,
                      handshake: bytes = WS_HANDSHAKE) -> Outcome:  # fmt: skip
        """The handshake and the first piece in one read, then each other piece, all of it
        before the loop runs; then the client vanishes. ``progress()`` tells what the app has
        done so far: while reading stays paused it must keep changing, or the run is stalled.
        """
        conn = self.connect()
        transport = conn.transport
        stalled = False
        for data in [handshake + (pieces[0] if pieces else b""), *pieces[1:]]:
            if transport.closed or stalled:
                break
            conn.read_all(data)
            conn.settle(progress)
            while transport.paused and not transport.closed:
                before = progress()
                conn.settle(progress)
                if progress() == before and transport.paused:
                    stalled = True
                    break
        outcome = conn.finish()
        outcome.stalled = stalled
        return outcome

    def responses(self, pieces: Sequence[bytes]) -> list[ParsedResponse]:
        """The responses to ``pieces`` (as run_connection), after check_invariants."""
        return check_invariants(self.run_connection(pieces))

    def settle(self, transport: FakeTransport, extra: Callable[[], Any] = lambda: None) -> None:
        """Run the loop until neither the output nor the set of tasks (nor ``extra()``)
        changes for SETTLE_PASSES passes (at most MAX_SETTLE_PASSES)."""
        ctx = self.ctx

        async def passes() -> None:
            quiet = 0
            last = None
            for _ in range(MAX_SETTLE_PASSES):
                await asyncio.sleep(0)
                # Responses gathered for one write do not change the output yet: the count
                # of completed responses shows that pipelined requests are still moving.
                state = (len(transport.out), transport.closed, transport.paused,
                         len(asyncio.all_tasks()), ctx.total_requests, ctx.active_requests,
                         extra())  # fmt: skip
                quiet = quiet + 1 if state == last else 0
                last = state
                if quiet >= SETTLE_PASSES:
                    return

        self.loop.run_until_complete(passes())

    def leaks(self, protocol: Any) -> list[str]:
        """After connection_lost and a settled loop nothing of the connection may remain;
        what does is reported and cleared, so the next run starts clean."""
        leaks = []
        if protocol in self.ctx.connections:
            leaks.append("connection still in ctx.connections")
            self.ctx.connections.discard(protocol)
        if self.ctx.active_requests:
            leaks.append(f"active_requests={self.ctx.active_requests}")
            self.ctx.active_requests = 0
        if self.ctx.websockets:
            leaks.append(f"{len(self.ctx.websockets)} connection(s) still in ctx.websockets")
            self.ctx.websockets.clear()
        live = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if live:
            leaks.append(f"{len(live)} task(s) still running: {live!r}")
            for task in live:
                task.cancel()
            self.settle(FakeTransport())
        return leaks


class Connection:
    """One connection of a Harness, step by step: ``read`` is one read of the loop, ``settle``
    lets the app tasks run, ``finish`` is the client vanishing (and returns the Outcome)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.transport = FakeTransport()
        self.http = HttpProtocol(harness.ctx)
        self.transport.protocol = self.http
        self.http.connection_made(self.transport)

    def read(self, data: bytes) -> int:
        """One read: as much of ``data`` as the HTTP protocol's buffer takes (the count is
        returned), or all of it for the protocol the connection was handed over to. As the
        loop does it, from a callback of the running loop (on Python 3.12+ an app task then
        starts eagerly, inside the parser), in one pass of the loop."""
        result: list[tuple[bool, Any]] = []

        def callback() -> None:
            try:
                result.append((True, self._take(data)))
            except BaseException as exc:  # noqa: BLE001 -- raised again below, outside the loop
                result.append((False, exc))

        loop = self.harness.loop
        loop.call_soon(callback)
        loop.call_soon(loop.stop)  # what the read schedules runs on the next pass, not this one
        loop.run_forever()
        ok, value = result[0]
        if not ok:
            raise value
        return value

    def _take(self, data: bytes) -> int:
        if self.transport.protocol is not self.http:
            self.transport.protocol.data_received(data)
            return len(data)
        buf = self.http.get_buffer(-1)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        self.http.buffer_updated(n)
        return n

    def read_all(self, data: bytes) -> None:
        """Reads without a loop pass in between until ``data`` is taken or the server closed."""
        while data and not self.transport.closed:
            data = data[self.read(data) :]

    def settle(self, extra: Callable[[], Any] = lambda: None) -> None:
        self.harness.settle(self.transport, extra)

    def finish(self) -> Outcome:
        self.transport.protocol.connection_lost(None)
        self.settle()
        records = self.harness._records.records
        return Outcome(
            out=bytes(self.transport.out), writes=list(self.transport.writes),
            closed=self.transport.closed, writes_after_close=self.transport.writes_after_close,
            errors=[r.getMessage() for r in records if r.levelno >= logging.ERROR],
            log=[(r.levelname, r.getMessage()) for r in records],
            leaks=self.harness.leaks(self.http),
        )  # fmt: skip


def _boundaries(pieces: Sequence[bytes]) -> list[int]:
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    return ends


def split_at(data: bytes, *cuts: int) -> list[bytes]:
    """``data`` cut at the given offsets (in any order; duplicates and ends ignored)."""
    pieces, start = [], 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


# -- reading the output back ----------------------------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


@dataclass
class ParsedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class BadOutput(AssertionError):
    """The server wrote something that is not a well-formed HTTP/1.1 response."""


def parse_responses(out: bytes) -> list[ParsedResponse]:
    """Split the server's output into responses; anything malformed raises BadOutput."""
    responses = []
    pos = 0
    while pos < len(out):
        m = STATUS_LINE.match(out, pos)
        if not m:
            raise BadOutput(f"response at {pos} is not 'HTTP/1.1 ...': {out[pos:pos+80]!r}")
        end = out.find(b"\r\n\r\n", m.start())
        if end < 0:
            raise BadOutput(f"unterminated head: {out[pos:pos+200]!r}")
        headers = []
        for line in out[m.end() : end + 2].split(b"\r\n")[:-1]:
            name, sep, value = line.partition(b": ")
            if not sep:
                raise BadOutput(f"bad header line {line!r}")
            headers.append((name, value))
        resp = ParsedResponse(int(m.group(1)), headers, b"")
        pos = end + 4
        if resp.status < 200 or resp.status in (204, 304):
            responses.append(resp)
            continue
        length = resp.header(b"content-length")
        if length is not None:
            resp.body = out[pos : pos + int(length)]
            if len(resp.body) != int(length):
                raise BadOutput(f"body shorter than content-length: {resp!r}")
            pos += int(length)
        elif resp.header(b"transfer-encoding") == b"chunked":
            pos = _read_chunked(out, pos, resp)
        else:
            resp.body = out[pos:]  # HTTP/1.0: delimited by the close
            pos = len(out)
        responses.append(resp)
    return responses


def _read_chunked(out: bytes, pos: int, resp: ParsedResponse) -> int:
    body = bytearray()
    while True:
        eol = out.find(b"\r\n", pos)
        if eol < 0 or not re.fullmatch(rb"[0-9a-f]+", out[pos:eol]):
            raise BadOutput(f"bad chunk size at {pos}: {out[pos:pos+40]!r}")
        size = int(out[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            if out[pos : pos + 2] != b"\r\n":
                raise BadOutput("chunked body not terminated by an empty line")
            resp.body = bytes(body)
            return pos + 2
        body += out[pos : pos + size]
        if out[pos + size : pos + size + 2] != b"\r\n":
            raise BadOutput("chunk not followed by CRLF")
        pos += size + 2


def check_invariants(outcome: Outcome) -> list[ParsedResponse]:
    """What must hold whatever the input: raises AssertionError naming the broken rule;
    returns the parsed responses."""
    assert outcome.writes_after_close == 0, f"{outcome.writes_after_close} write(s) after close"
    assert not outcome.leaks, f"left behind: {outcome.leaks}"
    assert not outcome.stalled, "reading paused for good with input left (hang)"
    responses = parse_responses(outcome.out)
    final = [r for r in responses if r.status >= 200]
    for i, resp in enumerate(final):
        last = i == len(final) - 1
        if resp.status in SERVER_ERRORS and resp.status != 500:
            assert last, f"a response after the {resp.status} rejection"
            assert resp.header(b"connection") == b"close", f"{resp.status} without close"
        if resp.header(b"connection") == b"close":
            assert last, "a response after connection: close"
            assert outcome.closed, "connection: close but the transport stayed open"
    for message in outcome.errors:
        assert message.startswith("Exception in ASGI application"), f"unexpected ERROR: {message}"
    return responses


def server_frames(out: bytes) -> list[tuple[int, bytes]]:
    """The WebSocket frames after the 101 response as (opcode, payload); malformed ones
    raise AssertionError."""
    head_end = out.find(b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 101 ") and head_end > 0, f"no 101: {out[:80]!r}"
    pos, frames = head_end + 4, []
    while pos < len(out):
        assert len(out) - pos >= 2, "truncated frame header"
        first, second = out[pos], out[pos + 1]
        assert first & 0x80 and not first & 0x70, f"a server frame not FIN, or RSV set: {first:#x}"
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
