"""Zero-loss process recycling (issue 15): a worker that stops while the others keep serving
(SIGHUP, --limit-max-requests, SIGTTOU) drains its keep-alive connections instead of closing
them under the clients. 32 keep-alive connections stay busy with GET and POST the whole
time; every request must get a 2xx, and no connection may fail. Counts, not timings.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time

import pytest

from tests.support.common import IS_PALFREY, wait_until
from tests.support.server import process_gone, supervised_servers

pytestmark = pytest.mark.skipif(not IS_PALFREY, reason="Palfrey's supervisor (pids, logs)")

APP = "tests.apps_workers:app"
BASE = ("--host", "127.0.0.1", "--port", "0", "--no-access-log")
WORKER_START = 20.0  # a worker's spawn, imports and startup, on a loaded 2-core machine
CONNECTIONS = 32
# Each client starts a new connection after this many requests (nginx's keepalive_requests
# in miniature), so connections spread over new workers too.
REQUESTS_PER_CONNECTION = 50
POST_BODY = b"p" * 2048


@pytest.fixture
def supervised():
    yield from supervised_servers()


class KeepAliveLoad:
    """CONNECTIONS clients, each on one keep-alive connection, sending GET and POST back to
    back, and opening a new connection every REQUESTS_PER_CONNECTION requests. A response
    with ``connection: close`` ends the connection cleanly (the next request goes on a new
    one); anything else that ends a connection (EOF or a reset
    before a whole response, a refused connect) is an error. Every outcome is counted."""

    def __init__(self, port: int, connections: int = CONNECTIONS) -> None:
        self.port = port
        self.responses = 0
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.closes = 0  # connections the server ended with connection: close
        self.pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(connections)
        ]

    def __enter__(self) -> KeepAliveLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _client(self, index: int) -> None:
        sock: socket.socket | None = None
        buffer = b""
        count = 0
        while not self._stop.is_set():
            post = (count + index) % 2 == 1
            count += 1
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    buffer = b""
                if post:
                    request = (
                        b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(POST_BODY), POST_BODY)
                    )
                else:
                    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                sock.sendall(request)
                status, close, body, buffer = _read_response(sock, buffer)
            except (OSError, ValueError) as exc:
                with self._lock:
                    self.errors.append(f"{'POST' if post else 'GET'}: {exc!r}")
                if sock is not None:
                    sock.close()
                sock = None
                continue
            with self._lock:
                self.responses += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.pids.add(int(body.split()[0]))
                if close:
                    self.closes += 1
            if close or count % REQUESTS_PER_CONNECTION == 0:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def count(self) -> int:
        with self._lock:
            return self.responses

    def pids_seen(self) -> set[int]:
        with self._lock:
            return set(self.pids)

    def check(self) -> None:
        """0 errors, every response 2xx."""
        assert not self.errors, f"{len(self.errors)} errors, first: {self.errors[:5]}"
        assert self.responses and set(self.statuses) <= {200}, self.statuses


def _read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bool, bytes, bytes]:
    """(status, connection: close, body, what follows) of one content-length response."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ValueError(f"EOF before a response head; had {buffer[:200]!r}")
        buffer += data
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    length = int(fields[b"content-length"])
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            raise ValueError("EOF in a response body")
        buffer += data
    return status, fields.get(b"connection") == b"close", buffer[:length], buffer[length:]


def _more(load: KeepAliveLoad, n: int, timeout: float = 20.0) -> None:
    start = load.count()
    assert wait_until(lambda: load.count() >= start + n, timeout), (load.count(), load.errors[:3])


def test_two_sighup_restarts_lose_no_request(supervised) -> None:
    server = supervised(APP, *BASE, "--workers", "2")
    first = wait_until(lambda: len(server.worker_pids()) == 2 and server.worker_pids(),
                       WORKER_START)
    assert first, server.stderr_text()
    generations = [set(first)]
    with KeepAliveLoad(server.port) as load:
        _more(load, 500)
        for _ in range(2):
            mark = server.mark()
            server.send_signal(signal.SIGHUP)
            assert server.wait_for_log(
                "Restarted all processes", timeout=2 * WORKER_START, mark=mark
            ), server.stderr_text()
            old = generations[-1]
            assert wait_until(lambda: all(process_gone(p) for p in old), 30), server.stderr_text()
            generations.append(server.worker_pids())
            _more(load, 500)
    print(f"\n2 x SIGHUP under 32 keep-alive connections: {load.responses} responses, "
          f"{load.closes} connection: close, {len(load.errors)} errors")
    load.check()
    assert load.closes > 0  # the retiring workers did answer with connection: close
    assert not (generations[0] & generations[2]) and len(generations[2]) == 2
    assert "Draining" in server.stderr_text()


def test_limit_max_requests_recycles_without_loss(supervised) -> None:
    server = supervised(APP, *BASE, "--workers", "2", "--limit-max-requests", "1500",
                        "--limit-max-requests-jitter", "500")
    first = wait_until(lambda: len(server.worker_pids()) == 2 and server.worker_pids(),
                       WORKER_START)
    assert first, server.stderr_text()
    with KeepAliveLoad(server.port) as load:
        # Several recycles: at least 4 workers other than the first two have served.
        assert wait_until(lambda: len(load.pids_seen() - first) >= 4, 90), (
            load.pids_seen(), load.errors[:3], server.stderr_text()[-2000:])
    text = server.stderr_text()
    print(f"\n--limit-max-requests 1500+500 under load: {load.responses} responses, "
          f"{len(re.findall('Maximum request limit', text))} recycles, {len(load.errors)} errors")
    load.check()
    assert all(process_gone(pid) for pid in first)
    assert server.alive()


def test_sigttin_then_sigttou_lose_no_request(supervised) -> None:
    server = supervised(APP, *BASE, "--workers", "2")
    first = wait_until(lambda: len(server.worker_pids()) == 2 and server.worker_pids(),
                       WORKER_START)
    assert first, server.stderr_text()
    with KeepAliveLoad(server.port) as load:
        _more(load, 300)
        server.send_signal(signal.SIGTTIN)
        assert wait_until(lambda: len(server.worker_pids()) == 3, WORKER_START)
        added = server.worker_pids() - first
        assert wait_until(lambda: added <= load.pids_seen(), WORKER_START)  # it serves
        mark = server.mark()
        server.send_signal(signal.SIGTTOU)
        match = server.wait_for_log(r"Retiring child process \[(\d+)\]", timeout=10, mark=mark)
        assert match, server.stderr_text()
        retired = int(match.group(1))
        assert wait_until(lambda: process_gone(retired), 30), server.stderr_text()
        _more(load, 300)
    load.check()
    assert len(server.worker_pids()) == 2


def test_a_retiring_worker_keeps_an_idle_connection_until_its_next_request(supervised) -> None:
    """Drain, not close: an idle keep-alive connection on a retiring worker is answered once
    more (with connection: close). A server that stops as a whole would have closed it after
    a short grace; this one waits up to --timeout-keep-alive."""
    server = supervised(APP, *BASE, "--workers", "2", "--timeout-keep-alive", "20")
    first = wait_until(lambda: len(server.worker_pids()) == 2 and server.worker_pids(),
                       WORKER_START)
    assert first, server.stderr_text()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, close, body, rest = _read_response(sock, b"")
        assert (status, close) == (200, False)
        old_pid = int(body)
        mark = server.mark()
        server.send_signal(signal.SIGHUP)
        assert server.wait_for_log(rf"Retiring child process \[{old_pid}\]",
                                   timeout=2 * WORKER_START, mark=mark), server.stderr_text()
        assert server.wait_for_log(r"Draining 1 connection \(idle ones", timeout=10, mark=mark)
        # Idle longer than the grace a whole-server stop gives (1 s, checked once a second):
        # the idle time is the behaviour under test.
        time.sleep(3)
        assert not process_gone(old_pid)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, close, body, _ = _read_response(sock, rest)
        assert (status, close, int(body)) == (200, True, old_pid)
    assert wait_until(lambda: process_gone(old_pid), 15), server.stderr_text()


def _h2c_request() -> tuple[object, bytes]:
    """An h2 client connection and its first bytes: preface, SETTINGS, a GET on stream 1."""
    import h2.config

    from tests.support.h2 import GracefulH2Connection  # reads streams on after a GOAWAY

    client = GracefulH2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "t"),
                            (":path", "/")], end_stream=True)
    return client, client.data_to_send()


def _h2c_status(client, answer: bytes) -> int | None:
    import h2.events

    for event in client.receive_data(answer):
        if isinstance(event, h2.events.ResponseReceived):
            return int(dict(event.headers)[b":status"])
    return None


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("protocol", ["http/1.1", "h2c"])
def test_a_connection_accepted_as_shutdown_begins_is_answered(loop: str, protocol: str) -> None:
    """In-process, to hit the window exactly: a connection accepted (its protocol still being
    made by a loop task) when shutdown begins is drained, not dropped with the loop. Found by
    test_workers.py's SIGHUP test under load in CI: 1 request in 8,601 got an empty answer.
    Over h2c (prior knowledge) the request reaches HTTP/2 as bytes the HTTP/1.1 core read:
    they are served before the GOAWAY."""
    from palfrey.config import Config
    from palfrey.server import Server

    config = Config(app="tests.apps_workers:app", port=0, loop=loop, access_log=False,
                    http2=protocol == "h2c")
    config.load()
    server = Server(config)
    server.lifespan = config.lifespan_class(config)  # what serve() sets up before startup()
    h2_client, request = (_h2c_request() if protocol == "h2c"
                          else (None, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
    client = socket.socket()
    client.settimeout(10)

    async def serve_and_stop() -> None:
        await server.startup()
        listening = server.servers[0]
        client.connect(listening.sockets[0].getsockname()[:2])  # completed by the kernel
        client.sendall(request)
        listening._accept(listening.listeners[0])  # accepted; its protocol is a task away
        server.should_exit = True
        await server.shutdown()

    with client:
        # As Server.run: closing the runner cancels what is left, as the process's exit would.
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve_and_stop())
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    if h2_client is not None:
        assert _h2c_status(h2_client, answer) == 200, answer
    else:
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert b"\r\nconnection: close\r\n" in answer.lower(), answer
