"""Smoke test of an installed Palfrey (a wheel or an sdist build), standard library only.

Run it with the Python of the environment the package is installed in, from a directory
where no Palfrey source tree is importable::

    python scripts/wheel_smoke.py [-- EXTRA PALFREY ARGS]

It checks that ``palfrey`` and its compiled ``palfrey._parser`` come from site-packages,
starts the ``palfrey`` console script on the demo app (``palfrey.demo:app``, port 0; with
``--http2`` when the h2 package is installed), then runs CHECKS against it: HTTP GET, a
chunked stream, a POST echo, a WebSocket echo (text and a 70000-byte binary message, close
handshake), and a GET over HTTP/2 by prior knowledge (h2c; skipped, and said so, without
h2). It ends with SIGTERM and expects exit status 0. Any failure exits 1 with the server's
log.

This is cibuildwheel's test-command (pyproject.toml) and the per-wheel check of
scripts/build_wheels.py (both install the wheel with ``[standard]``, so h2 is there), and
deploy/container_check.py runs CHECKS against its container. A protocol that arrives with
an extra adds one function to CHECKS, which returns SKIPPED + why when it cannot run.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib.machinery
import importlib.util
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT = 60.0  # seconds; slow under QEMU emulation (cibuildwheel aarch64 on x86_64)
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 10.0
RUNNING_RE = re.compile(r"Palfrey running on http://127\.0\.0\.1:(\d+) ")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
SKIPPED = "skipped: "  # a check that cannot run here returns SKIPPED + why


class SmokeError(Exception):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeError(what)


# --------------------------------------------------------------------------------------------
# Where palfrey comes from
# --------------------------------------------------------------------------------------------


def check_installed() -> str:
    """Return a one-line description; fail unless palfrey is the installed, compiled one."""
    import palfrey
    import palfrey._parser

    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    package = Path(palfrey.__file__).resolve().parent
    expect(package.parent in site, f"palfrey imported from {package}, not from {site}")
    compiled = Path(palfrey._parser.__file__)
    expect(
        any(compiled.name.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES),
        f"palfrey._parser is not a compiled extension: {compiled}",
    )
    return f"palfrey {palfrey.__version__} from {package} ({compiled.name})"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class Server:
    """The ``palfrey`` console script next to this interpreter, on 127.0.0.1, port 0."""

    def __init__(self, extra_args: list[str]) -> None:
        script = Path(sys.executable).parent / "palfrey"
        expect(script.is_file(), f"no palfrey console script next to {sys.executable}")
        # HTTP/2 comes with an extra: on (same port as HTTP/1.1) when h2 is in this env,
        # which is the server's. Otherwise why not, for check_http2 to say.
        self.no_http2: str | None = None
        if "--http2" not in extra_args:
            if importlib.util.find_spec("h2") is None:
                self.no_http2 = "h2 is not installed (pip install 'palfrey[http2]')"
            else:
                extra_args = [*extra_args, "--http2"]
        self.argv = [str(script), "palfrey.demo:app", "--host", "127.0.0.1", "--port", "0",
                     *extra_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PALFREY_", "UVICORN_"))}
        env.pop("WEB_CONCURRENCY", None)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = int(self.wait_for(RUNNING_RE, START_TIMEOUT).group(1))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if m := pattern.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise SmokeError(f"no log line matching {pattern.pattern!r}")
                self.cond.wait(min(left, 0.2))

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            return None

    def log(self) -> str:
        with self.cond:
            return "\n".join(self.lines)


# --------------------------------------------------------------------------------------------
# Checks: each takes the server, raises SmokeError on a wrong answer, returns a summary.
# --------------------------------------------------------------------------------------------


def _http(server: Server, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=IO_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def check_get(server: Server) -> str:
    response, body = _http(server, "GET", "/")
    expect(response.status == 200, f"GET / -> {response.status}")
    expect(body == b"Hello from Palfrey!", f"GET / body {body!r}")
    expect(response.getheader("server") == "palfrey", f"server: {response.getheader('server')}")
    expect(response.getheader("date") is not None, "no date header")
    return "GET / 200"


def check_stream(server: Server) -> str:
    response, body = _http(server, "GET", "/stream")
    expect(response.status == 200, f"GET /stream -> {response.status}")
    expect(response.getheader("transfer-encoding") == "chunked", "/stream is not chunked")
    expected = b"".join(b"chunk %d\n" % i for i in range(1, 11))
    expect(body == expected, f"GET /stream body {body[:80]!r}")
    return "GET /stream chunked 200"


def check_echo(server: Server) -> str:
    payload = os.urandom(100_000)
    response, body = _http(server, "POST", "/echo", payload,
                           {"content-type": "application/x-smoke"})
    expect(response.status == 200, f"POST /echo -> {response.status}")
    expect(body == payload, "POST /echo body differs")
    expect(response.getheader("content-type") == "application/x-smoke", "echo content-type")
    return f"POST /echo {len(payload)} bytes"


def _ws_send(sock: socket.socket, opcode: int, payload: bytes) -> None:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + masked)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 65536))
        expect(bool(chunk), f"connection closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _ws_recv(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = _recv_exact(sock, 2)
    expect(b0 & 0x80 != 0, "fragmented frame from the server")
    expect(b1 & 0x80 == 0, "masked frame from the server (RFC 6455 5.1)")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _recv_exact(sock, 8))
    return b0 & 0x0F, _recv_exact(sock, n)


def check_websocket(server: Server) -> str:
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (server.port, key)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # one byte at a time: no frame bytes are read with the head
            expect(bool(chunk), f"closed during the handshake: {head!r}")
            head += chunk
        expect(head.startswith(b"HTTP/1.1 101 "), f"handshake answer {head[:60]!r}")
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        )
        expect(fields.get(b"sec-websocket-accept") == accept, f"wrong accept in {head!r}")
        text = "héllo palfrey".encode()
        _ws_send(sock, 0x1, text)
        expect(_ws_recv(sock) == (0x1, text), "text echo differs")
        blob = os.urandom(70_000)  # 64-bit length encoding
        _ws_send(sock, 0x2, blob)
        expect(_ws_recv(sock) == (0x2, blob), "binary echo differs")
        _ws_send(sock, 0x8, struct.pack("!H", 1000))
        opcode, payload = _ws_recv(sock)
        expect(opcode == 0x8 and payload[:2] == struct.pack("!H", 1000),
               f"close answer {opcode} {payload!r}")
        expect(sock.recv(1) == b"", "connection still open after the close handshake")
    return "WebSocket /ws echo text + 70000-byte binary, close 1000"


# HTTP/2 (RFC 9113): frame types and flags used below.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# RFC 7541 appendix A: the static table's :status entries.
STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", kind, flags, stream) + payload


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """Literal field without indexing, new name, no Huffman (RFC 7541 6.2.2); short strings
    only (a 7-bit length)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _hpack_int(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An integer with an N-bit prefix (RFC 7541 5.1) at ``pos``: (value, next position)."""
    value = block[pos] & ((1 << prefix) - 1)
    pos += 1
    if value == (1 << prefix) - 1:
        shift = 0
        while True:
            value += (block[pos] & 0x7F) << shift
            shift += 7
            pos += 1
            if not block[pos - 1] & 0x80:
                break
    return value, pos


def _h2_status(block: bytes) -> int | None:
    """:status of a response header block, which comes first (RFC 9113 8.3): an indexed
    static entry (0x88 is 200) or a literal with a :status name and a plain value. None for
    anything else (a Huffman-coded value, a dynamic-table index, a truncated block)."""
    try:
        pos = 0
        while block[pos] & 0xE0 == 0x20:  # dynamic table size updates (RFC 7541 6.3)
            _, pos = _hpack_int(block, pos, 5)
        if block[pos] & 0x80:  # indexed field (6.1)
            return STATIC_STATUS.get(_hpack_int(block, pos, 7)[0])
        # Literal with incremental indexing (6-bit name index), else without/never (4-bit).
        index, pos = _hpack_int(block, pos, 6 if block[pos] & 0x40 else 4)
        if index not in STATIC_STATUS or block[pos] & 0x80:  # not :status, or Huffman
            return None
        length, pos = _hpack_int(block, pos, 7)
        value = block[pos:pos + length]
        return int(value) if len(value) == length and value.isdigit() else None
    except IndexError:
        return None


def _h2_read_frame(sock: socket.socket) -> tuple[int, int, int, bytes]:
    """(type, flags, stream id, payload without padding or priority fields)."""
    head = _recv_exact(sock, 9)
    expect(not head.startswith(b"HTTP/"), f"answered in HTTP/1.x, not HTTP/2: {head!r}")
    length = int.from_bytes(head[:3], "big")
    expect(length <= 16384, f"frame of {length} bytes: over SETTINGS_MAX_FRAME_SIZE")
    kind, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big") & 0x7FFFFFFF
    payload = _recv_exact(sock, length)
    if kind in (DATA, HEADERS) and flags & PADDED:
        payload = payload[1:len(payload) - payload[0]]
    if kind == HEADERS and flags & PRIORITY:
        payload = payload[5:]
    return kind, flags, stream, payload


def check_http2(server: Server) -> str:
    """GET / over HTTP/2 with prior knowledge (h2c, RFC 9113 3.3), frames by hand."""
    why_not = getattr(server, "no_http2", "the server was not started with --http2")
    if why_not:
        return f"{SKIPPED}HTTP/2 h2c check: {why_not}"
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
              (b":authority", b"127.0.0.1:%d" % server.port)]
    block = b"".join(_hpack_literal(name, value) for name, value in fields)
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(H2_PREFACE + _h2_frame(SETTINGS, 0, 0)
                     + _h2_frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
        kind, flags, _, _ = _h2_read_frame(sock)
        expect(kind == SETTINGS and not flags & ACK, "the server's preface is not SETTINGS")
        sock.sendall(_h2_frame(SETTINGS, ACK, 0))
        status, body, ended = None, b"", False
        for _ in range(64):  # SETTINGS ACK, WINDOW_UPDATE..., HEADERS, DATA
            kind, flags, stream, payload = _h2_read_frame(sock)
            expect(kind not in (RST_STREAM, GOAWAY), f"frame type {kind}: {payload.hex()}")
            if stream != 1:
                continue
            if kind == HEADERS and status is None:
                expect(flags & END_HEADERS, "response header block continues (CONTINUATION)")
                status = _h2_status(payload)
                expect(status == 200, f":status {status} (header block {payload[:16].hex()})")
            elif kind == DATA:
                body += payload
            if flags & END_STREAM:
                ended = True
                break
        expect(ended, "no END_STREAM on stream 1 within 64 frames")
        sock.sendall(_h2_frame(GOAWAY, 0, 0, struct.pack("!II", 1, 0)))
    expect(status == 200, "no response HEADERS on stream 1")
    expect(body == b"Hello from Palfrey!", f"HTTP/2 GET / body {body!r}")
    return "HTTP/2 (h2c, prior knowledge) GET / 200"


CHECKS: list[Callable[[Server], str]] = [
    check_get, check_stream, check_echo, check_websocket, check_http2,
]


def main(argv: list[str]) -> int:
    extra = argv[1:] if argv[:1] == ["--"] else argv
    started = time.monotonic()
    try:
        print(check_installed(), flush=True)
    except (SmokeError, ImportError) as exc:
        print(f"SMOKE FAILED: {exc}", flush=True)
        return 1
    server: Server | None = None
    try:
        server = Server(extra)
        for check in CHECKS:
            result = check(server)
            print(f"{'--' if result.startswith(SKIPPED) else 'ok'}  {result}", flush=True)
        status = server.stop()
        expect(status == 0, f"exit status after SIGTERM: {status}")
        server.wait_for(re.compile(r"Finished server process \[\d+\]"), 1.0)
        print(f"ok  SIGTERM -> exit 0 ({time.monotonic() - started:.1f} s in all)", flush=True)
        return 0
    except (SmokeError, OSError) as exc:
        print(f"SMOKE FAILED: {exc!r}", flush=True)
        if server is not None:
            server.stop()
            print("---- server log ----\n" + server.log(), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
