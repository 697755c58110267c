"""Drive the compiled ``palfrey._parser.HttpProtocol`` in-process: bytes in, responses out.

The protocol is fed as the event loop feeds it (``get_buffer`` then ``buffer_updated``),
against a fake transport that records every write, close and pause. Between two pieces of
input the loop runs until nothing moves, so the app tasks answer. ``run_connection`` returns
what the client would have seen; ``check_invariants`` says what must hold for any input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field

from palfrey._parser import HttpProtocol, ServerContext

# Small limits, so that random inputs reach the 413/414/431 paths as well.
LIMITS = {
    "limit_header_size": 2048,
    "limit_header_line_size": 512,
    "limit_header_count": 20,
    "limit_target_size": 256,
    "limit_body_size": 1024,
}
# Statuses the server produces on its own; the fuzz app answers 200 or (route /e) 500.
SERVER_ERRORS = {400, 408, 413, 414, 431, 500, 501, 503}
# How many loop passes may go by without progress before the connection counts as settled.
SETTLE_PASSES = 4
MAX_SETTLE_PASSES = 200


class FakeTransport(asyncio.Transport):
    """What the protocol sees of a socket: writes are kept, nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False
        self.writes_after_close = 0

    def write(self, data) -> None:
        if self.closed:
            self.writes_after_close += 1
            return
        self.out += data

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True  # our side is done (FIN); a lingering close reads on, discarding

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

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

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )


async def fuzz_app(scope, receive, send) -> None:
    """Echo app with a few shapes chosen by the path's second byte, all deterministic."""
    kind = scope["raw_path"][1:2]
    if kind == b"e":
        raise RuntimeError("fuzz app error")  # -> 500, or a close once started
    body = bytearray()
    if kind != b"n":  # /n answers without reading the body
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
    data = json.dumps(
        {
            "m": scope["method"],
            "p": scope["raw_path"].decode("latin-1"),
            "q": scope["query_string"].decode("latin-1"),
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "b": body.decode("latin-1"),
        }
    ).encode()
    if kind == b"s":  # chunked, in pieces
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(0, len(data), 64):
            await send({"type": "http.response.body", "body": data[i : i + 64], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class _ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Outcome:
    out: bytes = b""
    closed: bool = False
    stalled: bool = False  # reading paused with input left that the protocol never asked for
    writes_after_close: int = 0
    errors: list[str] = field(default_factory=list)  # ERROR log lines (app exceptions)
    leaks: list[str] = field(default_factory=list)

    def comparable(self) -> tuple:
        """What must not depend on how the input was split."""
        return (self.out, self.closed, self.stalled, self.writes_after_close, tuple(self.errors))


class Driver:
    """One event loop and one ServerContext shared by every connection it runs."""

    def __init__(self, app=fuzz_app) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors = _ErrorCounter()
        error_logger = logging.getLogger("palfrey.fuzz.error")
        error_logger.propagate = False
        error_logger.handlers[:] = [self.errors]
        error_logger.setLevel(logging.WARNING)
        access_logger = logging.getLogger("palfrey.fuzz.access")
        access_logger.propagate = False
        self.ctx = ServerContext(
            app=app, loop=self.loop, app_state={}, root_path="",
            default_headers=[(b"server", b"palfrey")], date_header=True, access_log=False,
            error_logger=error_logger, access_logger=access_logger,
            limit_concurrency=None, timeout_keep_alive=5.0, timeout_request_header=10.0,
            timeout_request_body=30.0, ws_protocol=None, h2_protocol=None, tls_server_cert=None,
            access_log_format=None,
            **LIMITS,
        )  # fmt: skip
        # Never ticked again: the Date line stays the same for every run of this driver, so
        # two runs of one input can be compared byte for byte.

    def close(self) -> None:
        self.loop.close()

    def _settle(self, transport: FakeTransport) -> None:
        """Run the loop until neither the output nor the set of tasks changes for a while."""

        async def passes() -> None:
            quiet = 0
            last = None
            for _ in range(MAX_SETTLE_PASSES):
                await asyncio.sleep(0)
                # Responses gathered for one write do not change the output yet: the count
                # of completed responses shows that pipelined requests are still moving.
                state = (len(transport.out), transport.closed, transport.paused,
                         len(asyncio.all_tasks()), self.ctx.total_requests,
                         self.ctx.active_requests)  # fmt: skip
                quiet = quiet + 1 if state == last else 0
                last = state
                if quiet >= SETTLE_PASSES:
                    return

        self.loop.run_until_complete(passes())

    def run_connection(self, pieces: list[bytes]) -> Outcome:
        """Feed ``pieces`` one read at a time, then let the client vanish."""
        transport = FakeTransport()
        proto = HttpProtocol(self.ctx)
        proto.connection_made(transport)
        self.errors.messages.clear()
        outcome = Outcome()
        pending = b"".join(pieces)
        boundaries = _boundaries(pieces)
        fed = 0
        while fed < len(pending) and not transport.closed:
            if transport.paused:
                self._settle(transport)
                if transport.paused:
                    outcome.stalled = True
                    break
                continue
            end = next(b for b in boundaries if b > fed)
            fed += _feed(proto, pending[fed:end])
            self._settle(transport)
        proto.connection_lost(None)
        self._settle(transport)
        outcome.out = bytes(transport.out)
        outcome.closed = transport.closed
        outcome.writes_after_close = transport.writes_after_close
        outcome.errors = list(self.errors.messages)
        outcome.leaks = self._leaks(proto)
        return outcome

    def _leaks(self, proto) -> list[str]:
        """After connection_lost and a settled loop nothing of the connection may remain."""
        leaks = []
        if proto in self.ctx.connections:
            leaks.append("connection still in ctx.connections")
            self.ctx.connections.discard(proto)
        if self.ctx.active_requests:
            leaks.append(f"active_requests={self.ctx.active_requests}")
            self.ctx.active_requests = 0
        live = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if live:
            leaks.append(f"{len(live)} task(s) still running: {live!r}")
            for task in live:
                task.cancel()
            self._settle(FakeTransport())
        return leaks


def _boundaries(pieces: list[bytes]) -> list[int]:
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    return ends


def _feed(proto, data: bytes) -> int:
    """One read of the loop: copy into the protocol's buffer, as much as it offers."""
    buf = proto.get_buffer(-1)
    n = min(len(buf), len(data))
    buf[:n] = data[:n]
    proto.buffer_updated(n)
    return n


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
    pass


def parse_responses(out: bytes) -> list[ParsedResponse]:
    """Split the server's output into responses; anything malformed raises BadOutput."""
    responses = []
    pos = 0
    while pos < len(out):
        m = STATUS_LINE.match(out, pos)
        if not m:
            raise BadOutput(f"response at {pos} does not start with 'HTTP/1.1 ': {out[pos:pos+80]!r}")
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
    """What must hold whatever the input: raises AssertionError naming the broken rule."""
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
