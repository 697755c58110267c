"""HTTP/2 test support (SPEC.md section 8).

- Servers: ``python -m palfrey tests.apps_h2:app --http2 ...`` (h2c, or h2 over TLS with a
  trustme certificate). ``H2_TEST_TARGET=hypercorn`` starts Hypercorn instead, the reference
  for the client side of these tests (options translated, or the test skipped); tests of
  behaviour only Palfrey promises carry ``palfrey_h2_only`` and are skipped there unless
  ``H2_TEST_ALL=1`` (to see what Hypercorn does under an attack).
- ``H2Client``: an HTTP/2 client on the h2 state machine over a real socket, for ordinary
  traffic (prior knowledge, h2c upgrade, TLS with ALPN).
- ``RawH2``: frames built with hyperframe and header blocks with hpack, for what h2 refuses
  to send (floods, CONTINUATION without end, HPACK bombs, streams beyond the limit).
- The server's memory and CPU from /proc; curl and nghttp runners.

Every read has a timeout and every loop a bound.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Self

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.common import free_port
from tests.support.server import Proc, ServerProcess

TARGET = os.environ.get("H2_TEST_TARGET", "palfrey")
ON_HYPERCORN = TARGET == "hypercorn"
RUN_ALL = os.environ.get("H2_TEST_ALL") == "1"

palfrey_h2_only = pytest.mark.skipif(
    ON_HYPERCORN and not RUN_ALL,
    reason="HTTP/2 behaviour only Palfrey promises (H2_TEST_ALL=1 runs it against Hypercorn)",
)

APP = "tests.apps_h2:app"
TIMEOUT = 5.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 7: error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# RFC 9113 6.5.2 and RFC 8441 3: setting identifiers.
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
ENABLE_CONNECT_PROTOCOL = 0x8

CONNECTION_SPECIFIC = (b"connection", b"keep-alive", b"proxy-connection",
                       b"transfer-encoding", b"upgrade")


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


class Certs(NamedTuple):
    ca: str
    cert: str
    key: str

    def client_context(self, alpn: Iterable[str] | None = ("h2", "http/1.1")) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context


def make_certs(directory: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1 and localhost, written as PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certs(str(directory / "ca.pem"), str(directory / "cert.pem"),
                  str(directory / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    cert.private_key_pem.write_to_path(paths.key)
    for blob in cert.cert_chain_pems:
        blob.write_to_path(paths.cert, append=True)
    return paths


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

# Palfrey option -> Hypercorn command-line option, or Hypercorn config key (TOML file).
HYPERCORN_FLAGS = {
    "--timeout-keep-alive": "--keep-alive",
    "--timeout-graceful-shutdown": "--graceful-timeout",
}
HYPERCORN_CONFIG = {
    "--h2-max-concurrent-streams": "h2_max_concurrent_streams",
    "--h2-max-header-list-size": "h2_max_header_list_size",
    "--h2-max-frame-size": "h2_max_inbound_frame_size",
}


class HypercornServer(ServerProcess):
    """``python -m hypercorn APP --bind 127.0.0.1:PORT`` in this process (--workers 0), so
    ``pid`` is the process that serves (for /proc readings); ready once the port accepts."""

    def __init__(self, app: str, args: tuple[str, ...], env: dict[str, str] | None,
                 certs: Certs | None) -> None:
        super().__init__(app, (), env, port=free_port())
        self.hypercorn_args: list[str] = []
        config: dict[str, int] = {}
        items = list(args)
        while items:
            flag = items.pop(0)
            if flag in HYPERCORN_FLAGS:
                self.hypercorn_args += [HYPERCORN_FLAGS[flag], items.pop(0)]
            elif flag in HYPERCORN_CONFIG:
                config[HYPERCORN_CONFIG[flag]] = int(items.pop(0))
            else:
                pytest.skip(f"{flag}: no Hypercorn equivalent")
        if certs is not None:
            self.hypercorn_args += ["--certfile", certs.cert, "--keyfile", certs.key]
        self.config_file: str | None = None
        if config:
            fd, self.config_file = tempfile.mkstemp(suffix=".toml")
            with os.fdopen(fd, "w") as f:
                f.writelines(f"{key} = {value}\n" for key, value in config.items())
            self.hypercorn_args += ["--config", self.config_file]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hypercorn", "--workers", "0",
                "--bind", f"127.0.0.1:{self.fixed_port}", "--error-logfile", "-",
                "--access-logfile", "-", *self.hypercorn_args, self.app]

    def stop(self) -> int | None:
        rc = super().stop()
        if self.config_file:
            os.unlink(self.config_file)
            self.config_file = None
        return rc


def start_h2_server(*args: str, app: str = APP, http2: bool = True, certs: Certs | None = None,
                    env: dict[str, str] | None = None) -> ServerProcess:
    """Start the server under test on a free port; ``server.certs`` is set for TLS."""
    if ON_HYPERCORN:
        if not http2:
            pytest.skip("Hypercorn always speaks HTTP/2")
        server: ServerProcess = HypercornServer(app, args, env, certs)
    else:
        argv = [app, "--host", "127.0.0.1", "--port", "0"]
        if http2:
            argv.append("--http2")
        if certs is not None:
            argv += ["--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key]
        server = Proc(*argv, *args, env=env)
    server.certs = certs  # type: ignore[attr-defined]
    server.start()
    return server


def _stopped_at_teardown() -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(*args: str, **kwargs: Any) -> ServerProcess:
        server = start_h2_server(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def h2_servers() -> Iterator[Callable[..., ServerProcess]]:
    """``h2_servers(*options, app=, http2=, certs=, env=)`` starts a server for this test."""
    yield from _stopped_at_teardown()


@pytest.fixture(scope="module")
def module_h2_servers() -> Iterator[Callable[..., ServerProcess]]:
    yield from _stopped_at_teardown()


@pytest.fixture(scope="module")
def h2_server(module_h2_servers) -> ServerProcess:
    """One --http2 server (cleartext, default options) per test module."""
    return module_h2_servers()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("h2tls"))


# --------------------------------------------------------------------------------------------
# The server's resources (/proc)
# --------------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` line of /proc/PID/status (VmRSS: resident now; VmHWM: peak resident)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Usage:
    """Peak-RSS growth and CPU time of a process between construction and ``measure()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hwm0 = proc_status_kib(pid, "VmHWM")
        self.rss0 = proc_status_kib(pid, "VmRSS")
        self.cpu0 = cpu_seconds(pid)
        self.peak_growth_mib = 0.0
        self.cpu = 0.0

    def measure(self) -> Usage:
        self.peak_growth_mib = (proc_status_kib(self.pid, "VmHWM") - self.rss0) / 1024
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        return self


def figure(name: str, **values: object) -> None:
    """One line of measurements on stdout (``pytest -s`` or ``-rP`` shows it)."""
    print(f"H2-FIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# --------------------------------------------------------------------------------------------
# Sockets
# --------------------------------------------------------------------------------------------


def open_socket(port: int, tls: ssl.SSLContext | None = None, timeout: float = TIMEOUT,
                rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect(), so the window scale matches
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="localhost")
    return sock


def h2c_upgrade_request(path: str = "/", http2_settings: bytes | None = None) -> bytes:
    """A GET asking for h2c (RFC 7540 3.2); ``http2_settings`` is the HTTP2-Settings value
    (by default our SETTINGS with MAX_CONCURRENT_STREAMS 100)."""
    if http2_settings is None:
        http2_settings = settings_header({MAX_CONCURRENT_STREAMS: 100})
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + http2_settings + b"\r\n\r\n")


# --------------------------------------------------------------------------------------------
# HTTP/2 client on h2
# --------------------------------------------------------------------------------------------


class _Connection:
    """A client socket (``self.sock``) closed on leaving a ``with`` block."""

    sock: socket.socket

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass
class Stream:
    """What arrived on one stream."""

    id: int
    headers: list[tuple[bytes, bytes]] | None = None  # final response, pseudo-headers included
    informational: list[list[tuple[bytes, bytes]]] = dataclasses.field(default_factory=list)
    data: bytearray = dataclasses.field(default_factory=bytearray)
    data_events: int = 0
    trailers: list[tuple[bytes, bytes]] | None = None
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code from the server

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    @property
    def status(self) -> int | None:
        for name, value in self.headers or ():
            if name == b":status":
                return int(value)
        return None

    def get_all(self, name: str | bytes) -> list[bytes]:
        n = (name.encode() if isinstance(name, str) else name).lower()
        return [v for k, v in self.headers or () if k == n]

    def get(self, name: str | bytes) -> bytes | None:
        values = self.get_all(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(bytes(self.data))

    def __repr__(self) -> str:
        return (f"<Stream {self.id} headers={self.headers!r} data={bytes(self.data[:200])!r} "
                f"trailers={self.trailers!r} ended={self.ended} reset={self.reset}>")


class GracefulH2Connection(h2.connection.H2Connection):
    """h2's client, except that a GOAWAY(NO_ERROR) does not end the connection: h2 refuses
    every frame after any GOAWAY, but RFC 9113 6.8 lets the streams up to its last stream id
    finish (a graceful shutdown sends it first)."""

    def _receive_goaway_frame(self, frame):  # type: ignore[no-untyped-def]
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = state
        return result


class H2Client(_Connection):
    """One HTTP/2 connection on h2 (client side) over a real socket.

    ``mode``: "prior" (preface first), "upgrade" (h2c Upgrade on an HTTP/1.1 request for
    ``upgrade_path``; that request becomes stream 1) or "tls" (ALPN h2; ``tls`` context
    required). ``settings``: our SETTINGS (e.g. {INITIAL_WINDOW_SIZE: 0}). With
    ``auto_ack`` every DATA received is acknowledged at once (the window refilled); tests
    of flow control turn it off and call ``ack``/``open_window`` themselves."""

    def __init__(self, port: int, *, mode: str = "prior", tls: ssl.SSLContext | None = None,
                 settings: dict[int, int] | None = None, auto_ack: bool = True,
                 validate: bool = True, upgrade_path: str = "/", timeout: float = TIMEOUT,
                 rcvbuf: int | None = None) -> None:
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=validate,
            normalize_inbound_headers=validate)
        self.conn = GracefulH2Connection(config=config)
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.streams: dict[int, Stream] = {}
        self.events: list[h2.events.Event] = []
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.ping_acks: list[bytes] = []
        self.remote_settings: dict[int, int] = {}
        self.settings_frames = 0  # server SETTINGS frames (not ACKs) received
        self.eof = False
        self.upgrade_response = b""
        self.sock = open_socket(port, tls if mode == "tls" else None, timeout, rcvbuf)
        self.alpn = self.sock.selected_alpn_protocol() if mode == "tls" else None
        if settings:  # applied at once (not pending an ACK), so they go in our first SETTINGS
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        if mode == "upgrade":
            # RFC 7540 3.2.1: base64url with the trailing "=" omitted.
            header = self.conn.initiate_upgrade_connection().rstrip(b"=")
            self.streams[1] = Stream(1)
            self.sock.sendall(h2c_upgrade_request(upgrade_path, header))
            head, rest = self._read_http1_head()
            self.upgrade_response = head
            if not head.startswith(b"HTTP/1.1 101 "):
                raise AssertionError(f"h2c upgrade refused: {head!r}")
            self.sock.sendall(self.conn.data_to_send())
            if rest:
                self._feed(rest)
        else:
            self.conn.initiate_connection()
            self.sock.sendall(self.conn.data_to_send())

    def _read_http1_head(self) -> tuple[bytes, bytes]:
        buf = b""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in buf:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed during the upgrade response: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n", rest

    # -- I/O ---------------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float) -> bool:
        """Receive once (waiting at most ``timeout``) and handle the events; False when
        nothing arrived or the connection is closed."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except (TimeoutError, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._feed(data)
        return True

    def _feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.events.append(event)
            self._handle(event)
        try:
            self.flush()
        except OSError:
            self.eof = True

    def _stream(self, stream_id: int) -> Stream:
        return self.streams.setdefault(stream_id, Stream(stream_id))

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._stream(event.stream_id).headers = list(event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self._stream(event.stream_id).informational.append(list(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            stream = self._stream(event.stream_id)
            stream.data += event.data
            stream.data_events += 1
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self._stream(event.stream_id).trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self._stream(event.stream_id).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self._stream(event.stream_id).reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks.append(event.ping_data)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_frames += 1
            for code, setting in event.changed_settings.items():
                self.remote_settings[int(code)] = setting.new_value

    def wait(self, predicate: Callable[[], object], timeout: float | None = None,
             what: str = "condition") -> None:
        """Pump until ``predicate()`` is true; AssertionError after ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.eof and not predicate()):
                raise AssertionError(
                    f"{what}: not within {timeout or self.timeout}s (eof={self.eof}, "
                    f"goaway={self.goaway}, streams={self.streams})")
            self.pump(min(remaining, 0.5))

    def wait_settings(self) -> dict[int, int]:
        """The server's first SETTINGS frame (RFC 9113 3.4: it comes first)."""
        self.wait(lambda: self.settings_frames, what="server SETTINGS")
        return self.remote_settings

    def wait_closed(self, timeout: float | None = None) -> bool:
        """True if the server closes the connection within ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof and time.monotonic() < deadline:
            self.pump(min(0.5, max(0.0, deadline - time.monotonic())))
        return self.eof

    # -- requests ----------------------------------------------------------------------------
    def request(self, method: str = "GET", path: str = "/",
                headers: Iterable[tuple[str | bytes, str | bytes]] = (),
                body: bytes | None = None, end_stream: bool = True,
                authority: str = "localhost", scheme: str | None = None) -> int:
        """Open a stream; send ``body`` (respecting flow control) unless it is None.
        ``scheme``: the :scheme field; by default the connection's, as clients send it."""
        if scheme is None:
            scheme = "https" if self.alpn is not None else "http"
        stream_id = self.conn.get_next_available_stream_id()
        all_headers = [(b":method", method.encode()), (b":scheme", scheme.encode()),
                       (b":authority", authority.encode()), (b":path", path.encode())]
        all_headers += [(k.encode() if isinstance(k, str) else k,
                         v.encode() if isinstance(v, str) else v) for k, v in headers]
        self.streams[stream_id] = Stream(stream_id)
        no_body = body is None and end_stream
        self.conn.send_headers(stream_id, all_headers, end_stream=no_body)
        self.flush()
        if body is not None:
            self.send_body(stream_id, body, end_stream=end_stream)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end_stream: bool = True,
                  timeout: float | None = None) -> None:
        """Send as the peer's windows allow, waiting (bounded) while they are closed."""
        view = memoryview(body)
        while True:
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0 and len(view):
                self.wait(lambda: self.conn.local_flow_control_window(stream_id) > 0
                          or self.streams[stream_id].done,
                          timeout, f"stream {stream_id} send window to open")
                if self.streams[stream_id].done:
                    return
                continue
            chunk = view[:window]
            view = view[len(chunk):]
            last = end_stream and not len(view)
            if len(chunk) or last:
                self.conn.send_data(stream_id, bytes(chunk), end_stream=last)
                self.flush()
            if not len(view):
                return

    def send_available(self, stream_id: int, data: bytes, end_stream: bool = True) -> int:
        """Send as much of ``data`` as the windows allow now, without waiting; the number of
        bytes sent (END_STREAM with the last of them)."""
        sent = 0
        while sent < len(data):
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size, len(data) - sent)
            if window <= 0:
                break
            last = end_stream and sent + window == len(data)
            self.conn.send_data(stream_id, data[sent:sent + window], end_stream=last)
            sent += window
        self.flush()
        return sent

    def response(self, stream_id: int, timeout: float | None = None) -> Stream:
        """Wait until the stream ended or was reset."""
        self.wait(lambda: self.streams[stream_id].done, timeout,
                  f"response on stream {stream_id}")
        return self.streams[stream_id]

    def get(self, path: str = "/", timeout: float | None = None, **kwargs: Any) -> Stream:
        return self.response(self.request("GET", path, **kwargs), timeout)

    def ping(self, payload: bytes) -> None:
        self.conn.ping(payload)
        self.flush()

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    def open_window(self, stream_id: int, increment: int) -> None:
        """WINDOW_UPDATE on the stream and on the connection."""
        self.conn.increment_flow_control_window(increment, stream_id)
        self.conn.increment_flow_control_window(increment)
        self.flush()


def report(server: ServerProcess, report_id: str) -> Any:
    """What an app recorded in tests.apps.STATE (GET /report?id=X on a new connection)."""
    certs = getattr(server, "certs", None)
    kwargs = {"mode": "tls", "tls": certs.client_context()} if certs else {}
    with H2Client(server.port, **kwargs) as client:
        stream = client.get(f"/report?id={report_id}")
        assert stream.status == 200, stream
        return stream.json()


def wait_report(server: ServerProcess, report_id: str, predicate: Callable[[Any], bool],
                timeout: float = TIMEOUT) -> Any:
    """Poll /report until ``predicate(state)`` (bounded); the last state either way."""
    deadline = time.monotonic() + timeout
    while True:
        state = report(server, report_id)
        if (state is not None and predicate(state)) or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def assert_served(server: ServerProcess) -> None:
    """A new connection is served: GET /hello answers 200."""
    certs = getattr(server, "certs", None)
    kwargs = {"mode": "tls", "tls": certs.client_context()} if certs else {}
    with H2Client(server.port, **kwargs) as client:
        stream = client.get("/hello")
    assert stream.status == 200 and bytes(stream.data) == b"Hello, world!", stream


# --------------------------------------------------------------------------------------------
# Frame-level client (hyperframe + hpack): what h2 refuses to send
# --------------------------------------------------------------------------------------------


def request_headers(path: str = "/hello", method: str = "GET", authority: str = "localhost",
                    extra: Iterable[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    return [(b":method", method.encode()), (b":scheme", b"http"),
            (b":authority", authority.encode()), (b":path", path.encode()), *extra]


class RawH2(_Connection):
    """A socket speaking HTTP/2 frames directly. The server's SETTINGS are acknowledged as
    they are read (``ack_settings``); nothing else is answered unless the test does it."""

    def __init__(self, port: int, *, settings: dict[int, int] | None = None,
                 rcvbuf: int | None = None, timeout: float = TIMEOUT,
                 ack_settings: bool = True, preface: bool = True) -> None:
        self.sock = open_socket(port, None, timeout, rcvbuf)
        self.timeout = timeout
        self.ack_settings = ack_settings
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.buf = bytearray()
        self.frames: list[Frame] = []  # everything received, in order
        self.eof = False
        self.reset_by_peer = False
        self.send_failed = False
        self.send_error = ""  # "timeout" (the server stopped reading) or "closed"
        self.bytes_sent = 0
        self.goaway: GoAwayFrame | None = None
        self.headers: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.remote_settings: dict[int, int] = {}
        self._block: tuple[int, bytearray, bool] | None = None  # header block in progress
        if preface:
            settings_frame = SettingsFrame(0)
            settings_frame.settings.update(settings or {})
            self.send(PREFACE + settings_frame.serialize())

    # -- sending -----------------------------------------------------------------------------
    def send(self, data: bytes | Frame | Iterable[Frame]) -> bool:
        """Send (bounded by the socket timeout); False if the server closed, reset or
        stopped reading."""
        if isinstance(data, Frame):
            data = data.serialize()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            data = b"".join(f.serialize() for f in data)
        if self.send_failed:
            return False
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except TimeoutError:
            self.send_failed, self.send_error = True, "timeout"
            return False
        except OSError:
            self.send_failed, self.send_error = True, "closed"
            return False
        self.bytes_sent += len(data)
        return True

    def header_block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(headers)

    def headers_frame(self, stream_id: int, headers: list[tuple[bytes, bytes]] | bytes,
                      end_stream: bool = True, end_headers: bool = True) -> HeadersFrame:
        frame = HeadersFrame(stream_id)
        frame.data = headers if isinstance(headers, bytes) else self.header_block(headers)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame

    def send_request(self, stream_id: int, path: str = "/hello", method: str = "GET",
                     body: bytes | None = None,
                     extra: Iterable[tuple[bytes, bytes]] = ()) -> bool:
        frames: list[Frame] = [self.headers_frame(
            stream_id, request_headers(path, method, extra=extra), end_stream=body is None)]
        if body is not None:
            frames.append(data_frame(stream_id, body, end_stream=True))
        return self.send(frames)

    # -- receiving ---------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Read what is there (waiting at most ``timeout`` for the first bytes) and parse
        it; the number of frames parsed."""
        before = len(self.frames)
        wait = timeout
        while not self.eof:
            try:
                readable, _, _ = select.select([self.sock], [], [], wait)
            except (OSError, ValueError):
                self.eof = True
                break
            if not readable:
                break
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, ConnectionAbortedError):
                self.eof = self.reset_by_peer = True
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
            self._parse()
            wait = 0.0
        return len(self.frames) - before

    def _parse(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(self.buf[9:9 + length])))
            del self.buf[:9 + length]
            self.frames.append(frame)
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.remote_settings.update(frame.settings)
            if self.ack_settings:
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                self.send(ack)
        elif isinstance(frame, GoAwayFrame):
            self.goaway = self.goaway or frame
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, DataFrame):
            self.data.setdefault(frame.stream_id, bytearray()).extend(frame.data)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._block = (frame.stream_id, bytearray(frame.data),
                               "END_STREAM" in frame.flags)
            elif self._block is not None:
                self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags and self._block is not None:
                stream_id, block, end = self._block
                self._block = None
                decoded = [(bytes(k), bytes(v)) for k, v in self.decoder.decode(bytes(block),
                                                                                 raw=True)]
                self.headers.setdefault(stream_id, []).append(decoded)
                if end:
                    self.ended.add(stream_id)

    def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Read until ``predicate()`` or EOF; bounded by ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                return bool(predicate())
            self.poll(min(remaining, 0.2))
        return True

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self.wait_for(lambda: self.eof, timeout)

    def setting(self, code: int) -> int | None:
        """The server's value for a setting, once its SETTINGS frame is read (bounded)."""
        self.wait_for(lambda: self.remote_settings)
        return self.remote_settings.get(code)

    def status(self, stream_id: int) -> int | None:
        for block in self.headers.get(stream_id, []):
            for name, value in block:
                if name == b":status" and not value.startswith(b"1"):
                    return int(value)
        return None

    def response_headers(self, stream_id: int) -> list[tuple[bytes, bytes]]:
        """The final response's header block (informational ones skipped)."""
        for block in self.headers.get(stream_id, []):
            if any(n == b":status" and not v.startswith(b"1") for n, v in block):
                return block
        return []

    def stream_done(self, stream_id: int) -> bool:
        return stream_id in self.ended or stream_id in self.resets

    def describe(self) -> str:
        goaway = (f"GOAWAY(code={self.goaway.error_code}, last={self.goaway.last_stream_id})"
                  if self.goaway else "no GOAWAY")
        return (f"{goaway}, eof={self.eof}, reset_by_peer={self.reset_by_peer}, "
                f"send_error={self.send_error!r}, sent={self.bytes_sent} bytes, "
                f"frames received={len(self.frames)}, resets={dict(list(self.resets.items())[:5])}")

    def flood(self, frames: Iterable[bytes], batch: int = 64 * 1024, read: bool = True,
              stop: Callable[[], object] = lambda: False) -> int:
        """Send serialized frames in batches of about ``batch`` bytes until all are sent or
        the server ends the connection (GOAWAY, close, reset, or it stops reading: the send
        times out). Between batches, with ``read``, what the server sent is parsed, and
        ``stop()`` ends the flood too. Returns the number of frames sent."""
        sent = 0
        pending: list[bytes] = []
        size = 0

        def push() -> bool:
            nonlocal sent, size
            ok = self.send(b"".join(pending))
            if ok:
                sent += len(pending)
            pending.clear()
            size = 0
            if read:
                self.poll(0)
            return ok and not (read and (self.goaway is not None or self.eof or stop()))

        for data in frames:
            pending.append(data)
            size += len(data)
            if size >= batch and not push():
                return sent
        if pending:
            push()
        return sent


def data_frame(stream_id: int, data: bytes, end_stream: bool = False) -> DataFrame:
    frame = DataFrame(stream_id)
    frame.data = data
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame


def rst_frame(stream_id: int, code: int = CANCEL) -> RstStreamFrame:
    frame = RstStreamFrame(stream_id)
    frame.error_code = code
    return frame


def ping_frame(payload: bytes = b"\0" * 8, ack: bool = False) -> PingFrame:
    frame = PingFrame(0)
    frame.opaque_data = payload
    if ack:
        frame.flags.add("ACK")
    return frame


def window_update_frame(stream_id: int, increment: int) -> WindowUpdateFrame:
    frame = WindowUpdateFrame(stream_id)
    frame.window_increment = increment
    return frame


def continuation_frame(stream_id: int, data: bytes, end_headers: bool = False
                       ) -> ContinuationFrame:
    frame = ContinuationFrame(stream_id)
    frame.data = data
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame


def settings_frame(settings: dict[int, int] | None = None) -> SettingsFrame:
    frame = SettingsFrame(0)
    frame.settings.update(settings or {})
    return frame


# --------------------------------------------------------------------------------------------
# Real clients
# --------------------------------------------------------------------------------------------


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install curl nghttp2-client)")
    return path


def run_tool(*argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    need_tool(argv[0])
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def curl(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return run_tool("curl", "-sS", "--max-time", "10", *args, timeout=timeout)


def settings_header(settings: dict[int, int]) -> bytes:
    """The HTTP2-Settings value for ``settings`` (base64url of a SETTINGS payload)."""
    return base64.urlsafe_b64encode(settings_frame(settings).serialize_body()).rstrip(b"=")

