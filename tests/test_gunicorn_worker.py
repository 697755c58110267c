"""``gunicorn -k palfrey.workers.PalfreyWorker``: a real gunicorn from PyPI, real signals.

The master runs in its own process group (swept at teardown). The app answers each request
with the pid of the worker that served it (tests/apps_workers.py); the figures of the
signal tests are printed (run with -s).
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest

from tests.support.client import Load, get, get_pid
from tests.support.common import START_TIMEOUT, wait_until
from tests.support.server import SupervisedServer, group_members, process_gone

gunicorn = pytest.importorskip("gunicorn")

APP = "tests.apps_workers:app"
WORKER = "palfrey.workers.PalfreyWorker"
# A worker's fork, imports and startup, on a loaded 2-core machine.
WORKER_START = 20.0
LISTENING = re.compile(r"Listening at: (https?)://127\.0\.0\.1:(\d+) ")
BOOTED = "Application startup complete."


def _gunicorn_args() -> list[str]:
    # gunicorn 25.1+ opens a control socket at one fixed path per user: parallel tests
    # would share it.
    major, minor = gunicorn.version_info[:2]
    return ["--no-control-socket"] if (major, minor) >= (25, 1) else []


class Gunicorn(SupervisedServer):
    """``python -m gunicorn -k WORKER ARGS APP`` leading its own process group."""

    worker = WORKER

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "-k", self.worker, "-b", "127.0.0.1:0",
            *_gunicorn_args(), *self.argv,
        ]

    def start(self, wait: bool = True) -> Gunicorn:
        super().start(wait=False)
        if wait:
            try:
                match = self.wait_for_log(LISTENING, timeout=START_TIMEOUT, check_alive=True)
                assert match, self.stderr_text()
                self.scheme, self.port = match.group(1), int(match.group(2))
            except BaseException:
                self.stop()
                raise
        return self

    def workers(self) -> set[int]:
        """Live children of the master (its workers)."""
        return {pid for pid in group_members(self.pid) if pid != self.pid and _ppid(pid) == self.pid}

    def wait_booted(self, count: int) -> set[int]:
        """Wait until ``count`` workers have finished their startup; return their pids."""
        def booted() -> set[int] | None:
            pids = self.workers()
            text = self.stderr_text()
            ready = {pid for pid in pids if f"[{pid}] [INFO] {BOOTED}" in text}
            return ready if len(ready) == count and len(pids) == count else None

        pids = wait_until(booted, WORKER_START)
        assert pids, self.stderr_text()
        return pids


def _ppid(pid: int) -> int:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(raw[raw.rfind(")") + 2 :].split()[1])


@pytest.fixture
def start():
    started: list[Gunicorn] = []

    def make(*args: str, app: str = APP, wait: bool = True) -> Gunicorn:
        server = Gunicorn(*args, app)
        started.append(server)
        return server.start(wait=wait)

    yield make
    for server in started:
        server.stop()


def slow_clients(port: int, path: str, count: int, timeout: float = 20) -> tuple[list, list]:
    """Start ``count`` clients of ``path`` in threads; return (threads, results)."""
    results: list[object] = []

    def client() -> None:
        try:
            results.append(get(port, path, timeout=timeout))
        except OSError as exc:
            results.append(exc)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_serves_requests_with_gunicorn_logging(start) -> None:
    server = start("-w", "2", "--access-logfile", "-")
    workers = server.wait_booted(2)
    status, body = get(server.port)
    assert status == 200 and int(body) in workers
    # Palfrey's lines go through gunicorn's handlers: its format, the worker's pid.
    for pid in workers:
        assert f"[{pid}] [INFO] Started server process [{pid}]" in server.stderr_text()
    assert server.wait_for_log(r'127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200', "stdout")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(65536)
    assert b"\r\nserver: palfrey\r\n" in head

    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0, server.stderr_text()
    assert all(process_gone(pid) for pid in workers)


def test_hup_replaces_workers_without_a_failed_request(start) -> None:
    server = start("-w", "2")
    old = server.wait_booted(2)
    with Load(server.port, threads=4) as load:
        assert wait_until(lambda: load.succeeded() >= 100, 15), load.errors[:5]
        before_hup = load.sent
        server.send_signal(signal.SIGHUP)
        assert wait_until(lambda: all(process_gone(pid) for pid in old), WORKER_START), (
            server.stderr_text()
        )
        after_reload = load.mark()
        assert wait_until(lambda: load.mark() >= after_reload + 100, 15)
    new = server.workers()
    print(
        f"\ngunicorn HUP under load: sent={load.sent} ({before_hup} before the HUP) "
        f"failed={load.failed} errors={load.errors[:3]}"
    )
    assert load.failed == 0, load.errors
    assert len(new) == 2 and not (new & old), (old, new)
    assert load.pids_since(after_reload) <= new
    assert "Hang up" in server.stderr_text()


def test_term_lets_in_flight_requests_finish(start) -> None:
    server = start("-w", "1", "--graceful-timeout", "20")
    server.wait_booted(1)
    mark = server.mark()
    threads, results = slow_clients(server.port, "/slow?s=2", 3)
    assert wait_until(
        lambda: sum("SLOW-BEGIN" in line for line in server.since(mark)) == 3, 10
    ), server.stderr_text()
    server.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert server.wait_exit(20) == 0, server.stderr_text()
    print(f"\ngunicorn TERM with 3 requests in flight: {results}")
    assert len(results) == 3 and all(r[0] == 200 for r in results), results
    assert "Waiting for connections to close." in server.stderr_text()


def test_int_is_a_quick_shutdown(start) -> None:
    server = start("-w", "1", "--graceful-timeout", "60")
    server.wait_booted(1)
    mark = server.mark()
    threads, results = slow_clients(server.port, "/slow?s=40", 1, timeout=30)
    assert server.wait_for_log("SLOW-BEGIN", timeout=10, mark=mark), server.stderr_text()
    server.send_signal(signal.SIGINT)
    # Far sooner than the request or the graceful timeout would allow.
    assert server.wait_exit(15) == 0, server.stderr_text()
    threads[0].join(timeout=10)
    # The cancelled request got the server's 500, not the app's answer.
    assert results and results[0][0] == 500, results


def test_max_requests_recycles_the_worker_with_jitter(start) -> None:
    server = start("-w", "1", "--max-requests", "10", "--max-requests-jitter", "5")
    server.wait_booted(1)
    served: dict[int, int] = {}
    failed: list[str] = []

    def recycled_three_times() -> bool:
        # The server checks its request count once per tick (0.1 s): a fast client may get
        # a few requests more than the limit from one worker.
        try:
            pid = get_pid(server.port)
        except OSError as exc:
            failed.append(repr(exc))
        else:
            served[pid] = served.get(pid, 0) + 1
        return len(served) >= 4

    assert wait_until(recycled_three_times, 3 * WORKER_START, interval=0.01), server.stderr_text()
    limits = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(
            r"\[(\d+)\] \[INFO\] Maximum request limit of (\d+) exceeded", server.stderr_text()
        )
    }
    print(f"\ngunicorn --max-requests 10 --max-requests-jitter 5: served={served} "
          f"limits={limits} failed={failed}")
    assert failed == []
    assert limits and all(10 <= limit <= 15 for limit in limits.values()), limits
    for pid, limit in limits.items():
        assert served[pid] >= limit, (pid, served, limits)


def test_heartbeat_keeps_an_idle_worker_and_a_blocked_one_is_killed(start) -> None:
    server = start("-w", "1", "--timeout", "2")
    (worker,) = server.wait_booted(1)
    assert get_pid(server.port) == worker
    # Idle for two and a half timeouts: the heartbeat alone keeps the worker.
    threading.Event().wait(5)
    assert get_pid(server.port) == worker
    assert "WORKER TIMEOUT" not in server.stderr_text()

    threads, results = slow_clients(server.port, "/block?s=30", 1)
    assert server.wait_for_log(rf"WORKER TIMEOUT \(pid:{worker}\)", timeout=15), (
        server.stderr_text()
    )
    threads[0].join(timeout=10)
    assert results and isinstance(results[0], OSError), results  # died with its worker
    assert wait_until(lambda: process_gone(worker), 10)
    (replacement,) = server.wait_booted(1)
    assert replacement != worker
    assert get_pid(server.port) == replacement


def test_heartbeat_goes_on_through_a_drain_longer_than_the_timeout(start) -> None:
    # The worker recycles (max requests) while a request runs for twice --timeout: it must
    # keep its heartbeat while draining, or the master kills it with the request.
    server = start("-w", "1", "--timeout", "2", "--max-requests", "2")
    (worker,) = server.wait_booted(1)
    mark = server.mark()
    threads, results = slow_clients(server.port, "/slow?s=4", 1)
    assert server.wait_for_log("SLOW-BEGIN", timeout=10, mark=mark)
    assert get_pid(server.port) == worker
    assert get_pid(server.port) == worker
    threads[0].join(timeout=20)
    assert results and results[0] == (200, str(worker).encode()), results
    assert "Maximum request limit of 2 exceeded" in server.stderr_text()
    assert "WORKER TIMEOUT" not in server.stderr_text()


def test_usr1_reopens_the_access_log(start, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = start("-w", "1", "--access-logfile", str(log))
    server.wait_booted(1)
    get(server.port, "/?before")
    assert wait_until(lambda: log.exists() and "GET /?before" in log.read_text(), 5)
    log.rename(tmp_path / "access.log.1")
    server.send_signal(signal.SIGUSR1)

    def reopened() -> bool:
        get(server.port, "/?after")
        return log.exists() and "GET /?after" in log.read_text()

    assert wait_until(reopened, 10, interval=0.2), server.stderr_text()
    get(server.port, "/?final")
    assert wait_until(lambda: "GET /?final" in log.read_text(), 5)
    assert "GET /?final" not in (tmp_path / "access.log.1").read_text()


def test_tls_from_gunicorn_settings(start, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    server = start("-w", "1", "--certfile", str(tmp_path / "server.pem"))
    (worker,) = server.wait_booted(1)
    assert server.scheme == "https"
    import httpx

    context = ssl.create_default_context()
    ca.configure_trust(context)
    response = httpx.get(f"https://127.0.0.1:{server.port}/", verify=context, timeout=10)
    assert response.status_code == 200 and int(response.text) == worker
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5)


def test_lifespan_startup_failure_stops_gunicorn(start) -> None:
    server = start("-w", "1", app="tests.apps_config:startup_failed")
    assert server.wait_exit(WORKER_START) == 3, server.stderr_text()
    text = server.stderr_text()
    assert "database unreachable" in text
    assert "Application startup failed. Exiting." in text
    assert "Worker failed to boot" in text
