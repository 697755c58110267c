"""Smoke test of an installed Palfrey (a wheel or an sdist build), standard library only.

Run it with the Python of the environment the package is installed in, from a directory
where no Palfrey source tree is importable::

    python scripts/wheel_smoke.py [-- EXTRA PALFREY ARGS]

It checks that ``palfrey`` and its compiled ``palfrey._parser`` come from site-packages,
starts the ``palfrey`` console script on the demo app (``palfrey.demo:app``, port 0),
then runs CHECKS against it: HTTP GET, a chunked stream, a POST echo, a WebSocket echo
(text and a 70000-byte binary message, close handshake). It ends with SIGTERM and expects
exit status 0. Any failure exits 1 with the server's log.

This is cibuildwheel's test-command (pyproject.toml) and the per-wheel check of
scripts/build_wheels.py. A protocol that arrives with an extra (e.g. HTTP/2 through
``[standard]``) adds one function to CHECKS.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib.machinery
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


CHECKS: list[Callable[[Server], str]] = [check_get, check_stream, check_echo, check_websocket]


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
            print(f"ok  {check(server)}", flush=True)
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
