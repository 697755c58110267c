"""Helpers for the --workers and --reload tests: a supervised server in its own process
group (so teardown can sweep every worker it started), the worker pids from /proc, and a
small bounded load generator that counts what succeeded and what failed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from tests.conftest import START_TIMEOUT, STOP_TIMEOUT
from tests.support import RUNNING_ANY, Proc, clean_env


class SupervisedServer(Proc):
    """``python -m palfrey ARGS`` as the leader of a new process group: stop() ends the
    parent by PID, then kills whatever is left in its group (workers, resource tracker)."""

    def start(self, wait: bool = True) -> SupervisedServer:
        """As Proc.start, in a new session (process group led by the parent)."""
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.cwd),
            env=clean_env(self.extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        for name in ("stdout", "stderr"):
            thread = threading.Thread(
                target=self._drain, args=(name, getattr(self.proc, name)), daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if wait:
            self._wait_running()
        return self

    def _wait_running(self) -> None:
        try:
            self.match = self.wait_for_log(RUNNING_ANY, "stderr", START_TIMEOUT, check_alive=True)
            if self.match is None:
                raise RuntimeError(
                    f"server did not start: {self.command()}\n"
                    f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
                )
            if self.match.group(3):
                self.port = int(self.match.group(3))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int | None:
        rc = super().stop()
        if self.proc is not None:
            self.sweep_group()
        return rc

    def sweep_group(self) -> None:
        """SIGKILL anything still in the group, then wait (bounded) until it is empty."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def worker_pids(self) -> set[int]:
        return worker_pids(self.pid)


def supervised_servers() -> Iterator:
    """The body of a fixture that starts ``SupervisedServer``s inside a test and stops
    every one at teardown (``yield from supervised_servers()``)."""
    started: list[SupervisedServer] = []

    def make(*args: str, wait: bool = True, env: dict[str, str] | None = None) -> SupervisedServer:
        server = SupervisedServer(*args, env=env)
        started.append(server)
        return server.start(wait=wait)

    yield make
    for server in started:
        server.stop()


# -- processes ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    return raw[raw.rfind(")") + 2 :].split()


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped counts as gone)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def worker_pids(parent: int) -> set[int]:
    """Live children of ``parent`` that are serving workers (not multiprocessing's
    resource tracker)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] == "Z" or int(fields[1]) != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


def wait_for(predicate, timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until truthy or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# -- requests ----------------------------------------------------------------------------


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
            try:
                pid: int | None = get_pid(self.port)
                error = None
            except (OSError, AssertionError, ValueError) as exc:
                pid, error = None, repr(exc)
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
