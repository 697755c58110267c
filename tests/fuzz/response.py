"""The response target: the app's messages are the fuzz input, the client's view the oracle.

The bytes choose a request (GET or HEAD, HTTP/1.1 or 1.0, keep-alive or not, a second
request pipelined behind it) and what the app sends for it: a status (any int, or not an
int), headers (names and values from a small dictionary of framing headers or raw bytes,
sometimes of the wrong type) and body messages. The compiled encoder must either refuse a
message (an exception to the app, the response it had started cut by a close, or a 500 when
nothing was sent) or put on the wire exactly what the app asked for, framed so that a client
reading by RFC 9112 6.3 sees the app's status, the app's headers first and in order, the
app's body, and then the pipelined response intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fuzz.apps import new_driver
from tests.support.harness import Outcome

NAMES = [b"content-length", b"transfer-encoding", b"connection", b"server", b"date",
         b"content-type", b"set-cookie", b"trailer", b"upgrade", b"x-a"]  # fmt: skip
VALUES = [b"0", b"1", b"5", b"chunked", b"gzip", b"chunked, gzip", b"gzip, chunked",
          b"close", b"keep-alive", b"Close", b" 5", b"5 ", b"+5", b"-1", b"05",
          b"99999999999999999999", b"a\tb", b""]  # fmt: skip
WEIRD_STATUSES = [None, "200", 200.0, True, -1, 2**63, 0, 99, 600, 101, 103, 204, 304]
PIPELINED = b"GET /again HTTP/1.1\r\nHost: fuzz\r\n\r\n"
AGAIN_BODY = b"again"
FRAMING_FIELDS = (b"content-length", b"transfer-encoding")
# The ERROR lines an app that raises, or stops half-way, may cause.
APP_ERRORS = ("Exception in ASGI application", "ASGI callable returned without completing")


class Consumer:
    """Reads small integers and byte strings off the fuzz input; zeros once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


@dataclass
class Script:
    head: bool = False
    http10: bool = False
    close: bool = False
    pipelined: bool = False
    status: object = 200
    headers: list = field(default_factory=list)
    bodies: list[tuple[object, bool]] = field(default_factory=list)  # (body, more_body)

    def request(self) -> bytes:
        method = b"HEAD" if self.head else b"GET"
        version = b"HTTP/1.0" if self.http10 else b"HTTP/1.1"
        head = method + b" /r " + version + b"\r\nHost: fuzz\r\n"
        if self.close:
            head += b"Connection: close\r\n"
        elif self.http10:
            head += b"Connection: keep-alive\r\n"
        return head + b"\r\n" + (PIPELINED if self.pipelined else b"")


def decode(data: bytes) -> Script:
    c = Consumer(data)
    flags = c.byte()
    script = Script(head=bool(flags & 1), http10=bool(flags & 2), close=bool(flags & 4),
                    pipelined=bool(flags & 8))  # fmt: skip
    pick = c.byte()
    if pick < 16:
        script.status = WEIRD_STATUSES[pick % len(WEIRD_STATUSES)]
    else:
        script.status = (c.byte() << 8 | c.byte()) % 700
    for _ in range(c.byte() % 9):
        kind = c.byte()
        name = NAMES[kind % len(NAMES)] if kind & 0x80 else c.bytes(c.byte() % 24)
        if kind & 0x40:
            name = name.upper()
        vkind = c.byte()
        value = VALUES[vkind % len(VALUES)] if vkind & 0x80 else c.bytes(c.byte() % 48)
        if kind & 0x20 and vkind & 0x40:  # now and then not bytes: must be refused
            value = value.decode("latin-1") if vkind & 1 else bytearray(value)
        script.headers.append((name, value))
    for i in range(c.byte() % 6):
        size = c.byte()
        body = c.bytes(size % 64) if size < 250 else bytes(size * 300)  # now and then large
        if size & 0x40 and size & 1:
            body = bytearray(body)
        script.bodies.append((body, i < 5 and bool(c.byte() & 1)))
    return script


@dataclass
class AppRecord:
    """What the app managed to send: every message the core accepted, and the first refusal."""

    accepted: list[dict] = field(default_factory=list)
    refused: BaseException | None = None


class ResponseDriver:
    def __init__(self) -> None:
        self.script = Script()
        self.record = AppRecord()
        self.driver = new_driver(self._app)

    async def _app(self, scope, receive, send) -> None:
        if scope["raw_path"] == b"/again":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"5")]})  # fmt: skip
            await send({"type": "http.response.body", "body": AGAIN_BODY})
            return
        messages = [{"type": "http.response.start", "status": self.script.status,
                     "headers": self.script.headers}]  # fmt: skip
        messages += [{"type": "http.response.body", "body": body, "more_body": more}
                     for body, more in self.script.bodies]  # fmt: skip
        for message in messages:
            try:
                await send(message)
            except Exception as exc:
                self.record.refused = exc
                raise  # the core's error path: a 500, or a close once started
            self.record.accepted.append(message)

    def run(self, script: Script) -> Outcome:
        self.script = script
        self.record = AppRecord()
        return self.driver.run_connection([script.request()])


# -- the client's reading ---------------------------------------------------------------------------


class ClientView:
    """One response as a client reads it (RFC 9112 6.3); raises AssertionError when it
    cannot be read at all."""

    def __init__(self, out: bytes, head_request: bool) -> None:
        end = out.find(b"\r\n\r\n")
        assert end >= 0, f"unterminated head: {out[:200]!r}"
        lines = out[:end].split(b"\r\n")
        assert lines[0][:9] == b"HTTP/1.1 " and lines[0][9:12].isdigit(), lines[0]
        assert lines[0][12:13] == b" ", lines[0]
        self.status = int(lines[0][9:12])
        self.headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b": ")
            assert sep and name and all(_is_tchar(ch) for ch in name), f"bad field line {line!r}"
            assert not any((ch < 32 and ch != 9) or ch == 127 for ch in value), f"CTL in {line!r}"
            self.headers.append((name, value))
        self.rest = out[end + 4 :]
        self.body = b""
        self.until_close = False
        self.truncated = False  # the framing promised more than arrived
        self.after = b""
        self.head_request = head_request

    def codings(self) -> list[bytes]:
        return [t.strip().lower() for v in self.values(b"transfer-encoding")
                for t in v.split(b",") if t.strip()]  # fmt: skip

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def frame(self) -> ClientView:
        """Read the body as RFC 9112 6.3 says; raises AssertionError on bad framing."""
        if self.head_request or self.status < 200 or self.status in (204, 304):
            self.after = self.rest
            return self
        codings = self.codings()
        lengths = self.values(b"content-length")
        if codings:
            assert not lengths, "both transfer-encoding and content-length"
            assert codings.count(b"chunked") <= 1, f"chunked applied twice: {codings}"
            if codings[-1] == b"chunked":
                self.body, self.after, self.truncated = _dechunk(self.rest)
            else:
                self.body, self.until_close = self.rest, True
        elif lengths:
            assert len(set(lengths)) == 1 and lengths[0].isdigit(), f"content-length {lengths}"
            n = int(lengths[0])
            self.body, self.after = self.rest[:n], self.rest[n:]
            self.truncated = len(self.body) < n
        else:
            self.body, self.until_close = self.rest, True
        return self


def _is_tchar(ch: int) -> bool:
    return chr(ch).isalnum() and ch < 128 or chr(ch) in "!#$%&'*+-.^_`|~"


def _dechunk(data: bytes) -> tuple[bytes, bytes, bool]:
    """(body, what follows, truncated): a cut may come anywhere, garbage may not."""
    body, pos = bytearray(), 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            assert all(ch in b"0123456789abcdef" for ch in data[pos:]), data[pos : pos + 40]
            return bytes(body), b"", True
        assert eol > pos and all(ch in b"0123456789abcdef" for ch in data[pos:eol]), (
            f"bad chunk size line at {pos}: {data[pos:pos+40]!r}"
        )
        size = int(data[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            if len(data) < pos + 2:
                return bytes(body), b"", True
            assert data[pos : pos + 2] == b"\r\n", "no empty line after the last chunk"
            return bytes(body), data[pos + 2 :], False
        body += data[pos : pos + size]
        if len(data) < pos + size + 2:
            return bytes(body), b"", True
        assert data[pos + size : pos + size + 2] == b"\r\n", "chunk not followed by CRLF"
        pos += size + 2


# -- the target ------------------------------------------------------------------------------------


def check_response(script: Script, record: AppRecord, outcome: Outcome) -> None:
    _check_common(outcome)
    out = outcome.out
    if not record.accepted:
        # Refused at http.response.start: the core answers 500 by itself and closes.
        assert record.refused is not None, "the app sent nothing and nothing failed"
        view = ClientView(out, script.head).frame()
        assert view.status == 500, f"start refused ({record.refused!r}) but {view.status}"
        assert outcome.closed, "a refused start must close the connection"
        return
    start = record.accepted[0]
    view = ClientView(out, script.head)
    assert view.status == start["status"], (view.status, start["status"])
    # The app's fields lead, in order and verbatim; the framing fields the server may drop
    # where RFC 9110 8.6 / RFC 9112 6.1 forbid them (their effect is checked on the body).
    sent = [(bytes(n).lower(), bytes(v)) for n, v in start["headers"]]
    sent_other = [h for h in sent if h[0] not in FRAMING_FIELDS]
    got_other = [h for h in view.headers if h[0] not in FRAMING_FIELDS]
    assert got_other[: len(sent_other)] == sent_other, (view.headers, sent)
    assert start["status"] >= 200, "an app's 1xx went out as its final response"
    # RFC 9112 6.1: no transfer-encoding to HTTP/1.0; chunked once and last (6.1, 7.1).
    assert not (script.http10 and view.values(b"transfer-encoding")), view.headers
    codings = view.codings()
    if b"chunked" in codings:
        assert codings[-1] == b"chunked" and codings.count(b"chunked") == 1, codings
    view.frame()
    body = b"".join(bytes(m["body"]) for m in record.accepted[1:])
    complete = bool(record.accepted[1:]) and not record.accepted[-1]["more_body"]
    no_body = script.head or view.status < 200 or view.status in (204, 304)
    if no_body:
        assert view.body == b"", f"a body on a response that has none: {view.body[:80]!r}"
    elif complete and record.refused is None:
        assert not view.truncated, "a complete response that the client reads as cut"
        assert view.body == body, f"body {view.body[:80]!r} != app's {body[:80]!r}"
    else:
        assert body.startswith(view.body) or view.body.startswith(body[: len(view.body)]), (
            "a cut response is not a prefix of the app's body"
        )
    if view.until_close or not complete or record.refused is not None:
        assert outcome.closed, "a response delimited by the close, or cut, must close"
        if not no_body:
            return
    keep_alive = not (script.close or view.values(b"connection") and any(
        b"close" in v.lower() for v in view.values(b"connection")))  # fmt: skip
    if script.pipelined and keep_alive and complete and record.refused is None:
        again = ClientView(view.after, False).frame()
        assert (again.status, again.body) == (200, AGAIN_BODY), (
            f"the pipelined response after it is garbled: {view.after[:120]!r}"
        )


def _check_common(outcome: Outcome) -> None:
    """driver.check_invariants' rules that need no reading of the responses."""
    assert outcome.writes_after_close == 0, f"{outcome.writes_after_close} write(s) after close"
    assert not outcome.leaks, f"left behind: {outcome.leaks}"
    assert not outcome.stalled, "reading paused for good with input left (hang)"
    for message in outcome.errors:
        assert message.startswith(APP_ERRORS), f"unexpected ERROR: {message}"


_driver: ResponseDriver | None = None


def response_target(data: bytes) -> None:
    global _driver
    if _driver is None:
        _driver = ResponseDriver()
    script = decode(data)
    outcome = _driver.run(script)
    check_response(script, _driver.record, outcome)
