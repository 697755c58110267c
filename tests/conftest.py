"""Black-box harness: run the server as a subprocess and talk to it over real sockets.

The server under test is started as ``python -m palfrey tests.apps:NAME --host 127.0.0.1
--port 0 ...`` from the repository root; the real port is parsed from the
``... running on http://127.0.0.1:PORT`` line. Set ``PALFREY_TEST_TARGET=uvicorn`` to run the
same suite against Uvicorn (``--http httptools``) as a reference; tests of behaviour where
Palfrey differs from Uvicorn on purpose are marked ``palfrey_only`` and skipped there.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = os.environ.get("PALFREY_TEST_TARGET", "palfrey")
IS_PALFREY = TARGET == "palfrey"
SERVER_NAME = b"palfrey" if IS_PALFREY else b"uvicorn"

RUNNING_RE = re.compile(
    r"(?:Palfrey|Uvicorn) running on http://(?:127\.0\.0\.1|\[::1\]):(\d+) "
    r"\(Press CTRL\+C to quit\)"
)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
SOCK_TIMEOUT = 5.0
# Every test gets a hard upper bound so nothing can hang the suite.
TEST_TIMEOUT = 60


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "palfrey_only: behaviour where Palfrey differs from Uvicorn on purpose"
    )
    config.addinivalue_line("markers", "http2: HTTP/2 (SPEC.md section 8; tests/test_http2_*.py)")
    config.addinivalue_line(
        "markers", "slow: a minute or more and not about the interpreter; .ci/run runs it on "
        "the first Python only (-m 'not slow' on the others)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_uvicorn = pytest.mark.skip(reason="Palfrey-specific behaviour (beyond Uvicorn)")
    has_timeout = config.pluginmanager.hasplugin("timeout")
    for item in items:
        if not IS_PALFREY and item.get_closest_marker("palfrey_only"):
            item.add_marker(skip_uvicorn)
        if has_timeout and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server subprocess. stdout and stderr are drained line by line by threads."""

    def __init__(
        self,
        app: str,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.args = list(args)
        self.extra_env = env or {}
        self.fixed_port = port
        self.port: int = 0
        self.uds: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- start / stop ------------------------------------------------------------------------
    def command(self) -> list[str]:
        port = str(self.fixed_port) if self.fixed_port else "0"
        if IS_PALFREY:
            cmd = [sys.executable, "-m", "palfrey", self.app]
        else:
            cmd = [sys.executable, "-m", "uvicorn", self.app, "--http", "httptools"]
        if "--uds" in self.args:
            return cmd + self.args
        if "--host" in self.args:
            return cmd + ["--port", port, *self.args]
        return cmd + ["--host", "127.0.0.1", "--port", port, *self.args]

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("WEB_CONCURRENCY", None)
        for key in list(env):
            if key.startswith(("PALFREY_", "UVICORN_")) and key != "PALFREY_TEST_TARGET":
                env.pop(key)
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("stdout", "stderr"):
            t = threading.Thread(
                target=self._drain, args=(name, getattr(self.proc, name)), daemon=True
            )
            t.start()
            self._threads.append(t)
        try:
            if "--uds" in self.args:
                m = self.wait_for_log(
                    r"running on unix socket (\S+) \(Press CTRL\+C to quit\)",
                    "stderr",
                    START_TIMEOUT,
                    check_alive=True,
                )
                if m is None:
                    raise RuntimeError(
                        f"server did not start within {START_TIMEOUT}s: {self.command()}\n"
                        f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
                    )
                self.uds = m.group(1)
            elif self.fixed_port:
                self.port = self.fixed_port
                self._wait_connectable(START_TIMEOUT)
            else:
                m = self.wait_for_log(RUNNING_RE, "stderr", START_TIMEOUT, check_alive=True)
                if m is None:
                    raise RuntimeError(
                        f"server did not start within {START_TIMEOUT}s: {self.command()}\n"
                        f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
                    )
                self.port = int(m.group(1))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_connectable(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.fixed_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"server not connectable within {timeout}s: {self.command()}\n"
            f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
        )

    def _drain(self, name: str, pipe) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines[name].append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        """Return the exit code, or None if still running after ``timeout`` seconds."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(timeout=2)
        return rc

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Always by PID."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=STOP_TIMEOUT)
        for t in self._threads:
            t.join(timeout=2)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode

    # -- logs --------------------------------------------------------------------------------
    def lines(self, stream: str = "stderr") -> list[str]:
        with self._cond:
            return list(self._lines[stream])

    def stdout_text(self) -> str:
        return "\n".join(self.lines("stdout"))

    def stderr_text(self) -> str:
        return "\n".join(self.lines("stderr"))

    def mark(self, settle: float = 0.05, limit: float = 1.0) -> dict[str, int]:
        """A position in both streams; pass it to ``since`` / ``wait_for_log``.

        Waits (bounded by ``limit``) until no line has arrived for ``settle`` seconds, so
        that late log lines of an earlier test on a shared server land before the mark."""
        deadline = time.monotonic() + limit
        with self._cond:
            current = {k: len(v) for k, v in self._lines.items()}
            while settle > 0 and time.monotonic() < deadline:
                self._cond.wait(settle)
                now = {k: len(v) for k, v in self._lines.items()}
                if now == current:
                    break
                current = now
            return current

    def since(self, mark: dict[str, int], stream: str = "stderr") -> list[str]:
        with self._cond:
            return list(self._lines[stream][mark[stream] :])

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        stream: str = "stderr",
        timeout: float = 5.0,
        mark: dict[str, int] | None = None,
        check_alive: bool = False,
    ) -> re.Match[str] | None:
        """Wait (bounded) for a line matching ``pattern`` (re.search) after ``mark``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        start = mark[stream] if mark else 0
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                lines = self._lines[stream]
                for line in lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                start = len(lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if check_alive and self.proc is not None and self.proc.poll() is not None:
                    # Give the drain threads a moment to deliver the last lines.
                    self._cond.wait(0.2)
                    for line in self._lines[stream][start:]:
                        m = rx.search(line)
                        if m:
                            return m
                    return None
                self._cond.wait(min(remaining, 0.1))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def start_server(
    app: str = "tests.apps:app",
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    return ServerProcess(app, args, env, port).start()


def _servers_stopped_at_teardown() -> Iterator:
    servers: list[ServerProcess] = []

    def make(
        app: str = "tests.apps:app",
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> ServerProcess:
        s = ServerProcess(app, args, env, port)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers inside one test; all are stopped at teardown."""
    yield from _servers_stopped_at_teardown()


@pytest.fixture(scope="module")
def module_server_factory() -> Iterator:
    """Like server_factory but the servers live for the whole module."""
    yield from _servers_stopped_at_teardown()


@pytest.fixture(scope="module")
def server(module_server_factory) -> ServerProcess:
    """The default server (tests.apps:app, default options), one per test module."""
    return module_server_factory("tests.apps:app")


# --------------------------------------------------------------------------------------------
# Raw-socket client
# --------------------------------------------------------------------------------------------


class ConnectionClosed(AssertionError):
    """The peer closed the connection before a complete message arrived."""


class ReadTimeout(AssertionError):
    """Nothing arrived within the socket timeout."""


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


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (bounded); return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


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


ACCESS_RE = re.compile(r'^INFO:     127\.0\.0\.1:\d+ - "')


def check_one_warning(
    server: ServerProcess,
    mark: dict[str, int],
    message: str,
    access_log_allowed: bool = False,
    port: int | None = None,
) -> None:
    """Exactly one WARNING line with ``message``, no traceback (and no access log line
    for the client port ``port``, or for anyone if ``port`` is None)."""
    line = f"WARNING:  {message}"
    assert server.wait_for_log(re.escape(line), "stderr", 5.0, mark), (
        f"no {line!r} on stderr; got:\n" + "\n".join(server.since(mark))
    )
    time.sleep(0.05)
    new = server.since(mark)
    assert sum(1 for x in new if x == line) == 1, new
    assert not any("Traceback" in x for x in new), new
    assert not any(x.startswith("ERROR:") for x in new), new
    if not access_log_allowed:
        time.sleep(0.05)
        access = [
            x
            for x in server.since(mark, "stdout")
            if ACCESS_RE.match(x) and (port is None or f"127.0.0.1:{port} " in x)
        ]
        assert not access, access
