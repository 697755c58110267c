"""Clients that talk to a server over real sockets: RawConn (exact bytes out, responses parsed
in, every read bounded), one-shot requests, the checks of a server-made error response, and a
small load generator.

RawConn raises ConnectionClosed or ReadTimeout when the peer closes early or stays silent;
those are not assertion failures, so a test that expects one catches it by name. A response
that is not HTTP/1.1 (bad status line, chunk framing...) fails with AssertionError.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Self

from tests.support.common import SOCK_TIMEOUT


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete message arrived.

    Not an AssertionError: a test that expects a close catches this by name, and an
    ``except`` for it never swallows a failed assertion."""


class ReadTimeout(Exception):
    """Nothing arrived within the socket timeout (see ConnectionClosed)."""


class Response:
    def __init__(
        self,
        version: bytes,
        status: int,
        reason: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        head: bytes,
    ) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers  # names exactly as on the wire
        self.head = head  # status line + headers + CRLF CRLF, as on the wire
        self.body = b""
        self.chunks: list[bytes] = []
        self.chunked = False
        self.close_delimited = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self.client_port: int | None = None

    def get_all(self, name: str | bytes) -> list[bytes]:
        n = name.encode() if isinstance(name, str) else name
        n = n.lower()
        return [v for k, v in self.raw_headers if k.lower() == n]

    def get(self, name: str | bytes) -> bytes | None:
        values = self.get_all(name)
        return values[0] if values else None

    def header_names(self) -> list[bytes]:
        return [k for k, _ in self.raw_headers]

    def connection_tokens(self) -> list[bytes]:
        tokens = []
        for v in self.get_all("connection"):
            tokens += [t.strip().lower() for t in v.split(b",")]
        return tokens

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (
            f"<Response {self.status} {self.reason!r} headers={self.raw_headers!r} "
            f"body={self.body[:200]!r}>"
        )


class RawConn:
    """A plain TCP connection with a receive buffer; every read has a timeout."""

    def __init__(
        self,
        port: int,
        timeout: float = SOCK_TIMEOUT,
        nodelay: bool = True,
        uds: str | None = None,
        host: str | None = None,
    ) -> None:
        if uds is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(uds)
        elif host is not None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            if nodelay:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.received = bytearray()  # everything ever received
        self.eof = False
        self.reset = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, reporting False (instead of raising) if the peer already went away."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _recv(self, timeout: float | None = None) -> bool:
        """Receive once into the buffer; False on EOF/reset. Raises ReadTimeout."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise ReadTimeout(
                f"no data within {self.timeout if timeout is None else timeout}s; "
                f"received so far: {bytes(self.received)[-500:]!r}"
            ) from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += data
        return True

    def read_until(self, delim: bytes) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            if not self._recv():
                raise ConnectionClosed(
                    f"closed while waiting for {delim!r}; buffered: {bytes(self.buf)[:500]!r}"
                )

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._recv():
                raise ConnectionClosed(
                    f"closed after {len(self.buf)} of {n} bytes: {bytes(self.buf)[:500]!r}"
                )
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until_close(self, timeout: float | None = None) -> bytes:
        """Everything until EOF (bounded by ``timeout`` overall)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout(f"connection not closed; buffered: {bytes(self.buf)[:500]!r}")
            self._recv(remaining)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout: float = SOCK_TIMEOUT) -> bool:
        """True if the peer closes within ``timeout``. Data that arrives meanwhile is buffered."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._recv(remaining)
            except ReadTimeout:
                return False
        return True

    def is_open_now(self, wait: float = 0.2) -> bool:
        """True if no EOF arrives within ``wait`` seconds."""
        return not self.wait_closed(wait)

    def read_response(self, head: bool = False) -> Response:
        """Read one response. ``head=True`` for a response to HEAD (never a body)."""
        raw_head = self.read_until(b"\r\n\r\n")
        lines = raw_head[:-4].split(b"\r\n")
        status_line = lines[0]
        m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3}) ?(.*)", status_line)
        if not m:
            raise AssertionError(f"bad status line {status_line!r} in {raw_head!r}")
        headers = []
        for line in lines[1:]:
            if b":" not in line:
                raise AssertionError(f"bad header line {line!r} in {raw_head!r}")
            name, _, value = line.partition(b":")
            headers.append((name, value.strip(b" \t")))
        resp = Response(m.group(1), int(m.group(2)), m.group(3), headers, raw_head)
        if head or 100 <= resp.status < 200 or resp.status in (204, 304):
            return resp
        te = [v.strip().lower() for v in resp.get_all("transfer-encoding")]
        if te:
            assert te == [b"chunked"], f"unexpected transfer-encoding {te!r}"
            resp.chunked = True
            self._read_chunked(resp)
        elif resp.get("content-length") is not None:
            cls = resp.get_all("content-length")
            assert len(cls) == 1, f"several content-length headers: {cls!r}"
            resp.body = self.read_exact(int(cls[0]))
        else:
            resp.close_delimited = True
            resp.body = self.read_until_close()
        return resp

    def _read_chunked(self, resp: Response) -> None:
        body = bytearray()
        while True:
            size_line = self.read_until(b"\r\n")[:-2]
            size_str = size_line.split(b";", 1)[0].strip()
            assert re.fullmatch(rb"[0-9a-fA-F]+", size_str), f"bad chunk size line {size_line!r}"
            size = int(size_str, 16)
            if size == 0:
                break
            data = self.read_exact(size)
            crlf = self.read_exact(2)
            assert crlf == b"\r\n", f"chunk data not followed by CRLF: {crlf!r}"
            resp.chunks.append(data)
            body += data
        while True:
            line = self.read_until(b"\r\n")[:-2]
            if not line:
                break
            name, _, value = line.partition(b":")
            resp.trailers.append((name, value.strip()))
        resp.body = bytes(body)


def raw_request(
    port: int, data: bytes, head: bool = False, timeout: float = SOCK_TIMEOUT
) -> tuple[Response, RawConn]:
    """Send ``data`` on a fresh connection and read one response (caller closes the conn)."""
    conn = RawConn(port, timeout=timeout)
    conn.send(data)
    return conn.read_response(head=head), conn


def simple_get(
    path: str = "/", extra: bytes = b"", version: bytes = b"HTTP/1.1", method: bytes = b"GET"
) -> bytes:
    return (
        method
        + b" "
        + path.encode()
        + b" "
        + version
        + b"\r\nHost: example.org\r\n"
        + extra
        + b"\r\n"
    )


ERROR_BODIES = {
    400: b"Invalid HTTP request received.",
    413: b"Request body too large.",
    414: b"Request target too long.",
    431: b"Request header fields too large.",
    500: b"Internal Server Error",
    501: b"Unsupported transfer coding.",
    503: b"Service Unavailable",
}


def assert_error_response(resp: Response, conn: RawConn, status: int) -> None:
    """A server-generated error: exact status, text/plain body, content-length, close."""
    body = ERROR_BODIES[status]
    assert resp.status == status, resp
    assert resp.version == b"HTTP/1.1", resp.head
    assert resp.body == body, resp
    assert resp.get("content-type") == b"text/plain; charset=utf-8", resp.head
    assert resp.get_all("content-length") == [str(len(body)).encode()], resp.head
    assert b"close" in resp.connection_tokens(), resp.head
    assert resp.get("transfer-encoding") is None, resp.head
    assert conn.wait_closed(SOCK_TIMEOUT), "server did not close the connection after the error"
    assert not conn.buf, f"bytes after the error response: {bytes(conn.buf)[:300]!r}"


def send_expect_error(port: int, data: bytes, status: int) -> tuple[Response, RawConn]:
    """Send a request the server must refuse with ``status``; check the response fully."""
    conn = RawConn(port)
    client_port = conn.local_port
    conn.try_send(data)
    resp = conn.read_response()
    resp.client_port = client_port
    assert_error_response(resp, conn, status)
    return resp, conn


def unix_request(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send one request on a unix socket and read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        out = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(out)
            out += chunk


# -- one GET per connection, and a load of them (the --workers and --reload tests) -----------------


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """One GET on a new connection (``Connection: close``); returns (status, body).
    Raises OSError (or a subclass) when the connection fails or is cut short."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError(f"incomplete response: {bytes(data)[:200]!r}")
    status = int(head[9:12])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        ),
        None,
    )
    if length is not None and len(body) != length:
        raise ConnectionError(f"short body: {len(body)} of {length} bytes")
    return status, body


def get_pid(port: int, path: str = "/", timeout: float = 5.0) -> int:
    """The pid an apps_workers app answers with (one GET)."""
    status, body = get(port, path, timeout)
    assert status == 200, (status, body)
    return int(body)


class Load:
    """``threads`` clients sending GETs back to back (a new connection each) until stop()
    or ``max_seconds``; counts successes and failures and remembers every pid seen."""

    def __init__(self, port: int, threads: int = 4, max_seconds: float = 30.0) -> None:
        self.port = port
        self.sent = 0
        self.failed = 0
        self.errors: list[str] = []
        self.pids: list[int] = []  # in arrival order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _client(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            pid: int | None = None
            try:
                status, body = get(self.port)
            except (OSError, ValueError) as exc:  # refused, reset, cut short, garbled
                error = repr(exc)
            else:
                # A failed request is counted, not asserted: the tests compare the counts.
                if status == 200 and body.isdigit():
                    pid, error = int(body), None
                else:
                    error = f"status {status}: {body[:100]!r}"
            with self._lock:
                self.sent += 1
                if pid is None:
                    self.failed += 1
                    self.errors.append(error or "")
                else:
                    self.pids.append(pid)

    def succeeded(self) -> int:
        with self._lock:
            return self.sent - self.failed

    def pids_since(self, index: int) -> set[int]:
        with self._lock:
            return set(self.pids[index:])

    def mark(self) -> int:
        with self._lock:
            return len(self.pids)
