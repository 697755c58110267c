"""Server processes for the tests, and what they log.

    ServerProcess("tests.apps:app", ("--loop", "asyncio"))   palfrey (or, with
        PALFREY_TEST_TARGET=uvicorn, uvicorn) on 127.0.0.1 and a free port, unless the args
        say otherwise (--host, --uds, or ``port=``)
    Proc("tests.apps:app", "--port", "0", ...)               exactly these arguments
    SupervisedServer(...)                                    a Proc in a process group of its
        own: stop() also ends every worker it started

Each is started from the repository root with a clean environment (no PALFREY_*, UVICORN_*,
WEB_CONCURRENCY or FORWARDED_ALLOW_IPS from the caller), is ready once its "running on" line
appears, and is always stopped by PID (SIGTERM, then SIGKILL). Its stdout and stderr are kept
line by line: ``wait_for_log`` waits (bounded) for a line; ``catch_up`` makes every line the
process has written so far visible, so that a test can check that a line is absent.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.common import IS_PALFREY, ROOT, START_TIMEOUT, STOP_TIMEOUT

_ESC = r"(?:\x1b\[[0-9;]*m)*"  # --use-colors wraps the address in ANSI codes
# The "running on" line: group 1 scheme, 2 host, 3 port; or 4 a unix socket path; or 5 --fd.
RUNNING_RE = re.compile(
    rf"(?:Palfrey|Uvicorn) running on {_ESC}(?:(https?)://(\S+?):(\d+)|unix socket (\S+?)|"
    rf"socket (.+?)){_ESC} \(Press CTRL\+C"
)
# An access-log line of a client on 127.0.0.1.
ACCESS_RE = re.compile(r'^INFO:     127\.0\.0\.1:\d+ - "')
STREAMS = ("stdout", "stderr")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server under test: this one, with the repository importable and
    nothing that would configure palfrey behind the test's back; then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("WEB_CONCURRENCY", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    for key in list(env):
        if key.startswith(("PALFREY_", "UVICORN_")):
            env.pop(key)
    env.update(extra or {})
    return env


class Process:
    """A child process whose output is kept line by line (see the module docstring).
    Subclasses say what to run (``command``) and when it is ready (``wait_ready``)."""

    new_session = False  # start it as the leader of a process group of its own

    def __init__(self, env: dict[str, str] | None = None, cwd: Path = ROOT,
                 pass_fds: tuple[int, ...] = ()) -> None:  # fmt: skip
        self.extra_env = env or {}
        self.cwd = cwd
        self.pass_fds = pass_fds
        self.port: int = 0
        self.uds: str | None = None
        self.match: re.Match[str] | None = None  # the "running on" line
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: dict[str, list[str]] = {name: [] for name in STREAMS}
        self._partial: dict[str, bytes] = {name: b"" for name in STREAMS}
        self._open: dict[str, bool] = {name: False for name in STREAMS}
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        raise NotImplementedError

    # -- start / stop ------------------------------------------------------------------------

    def start(self, wait: bool = True) -> Any:
        """Start; with ``wait`` (the default) return once it is ready, else at once (for a
        process expected to fail). A process that does not get ready is stopped."""
        self.proc = subprocess.Popen(
            self.command(), cwd=str(self.cwd), env=clean_env(self.extra_env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=self.pass_fds, start_new_session=self.new_session,
        )  # fmt: skip
        for name in STREAMS:
            pipe = getattr(self.proc, name)
            os.set_blocking(pipe.fileno(), False)
            self._open[name] = True
            thread = threading.Thread(target=self._collect, args=(name, pipe.fileno()), daemon=True)
            thread.start()
            self._threads.append(thread)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self) -> None:
        """Wait for the "running on" line; note the port or unix socket it names."""
        m = self.wait_for_log(RUNNING_RE, "stderr", START_TIMEOUT, check_alive=True)
        if m is None:
            raise RuntimeError(
                f"server did not start within {START_TIMEOUT}s: {self.command()}\n"
                f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
            )
        self.match = m
        if m.group(3):
            self.port = int(m.group(3))
        if m.group(4):
            self.uds = m.group(4)

    def run_to_exit(self, timeout: float = 15.0) -> int:
        """Start without waiting for readiness and return the exit code (bounded)."""
        self.start(wait=False)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.stop()
            raise AssertionError(f"still running after {timeout}s:\n{self.stderr_text()}")
        return rc

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
        """Return the exit code, or None if still running after ``timeout`` seconds. Once it
        has exited, all its output is collected."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for thread in self._threads:
            thread.join(timeout=2)
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
        for thread in self._threads:
            thread.join(timeout=2)
        with self._cond:
            for name in STREAMS:
                self._open[name] = False
                pipe = getattr(self.proc, name)
                if pipe is not None:
                    pipe.close()
        return self.proc.returncode

    # -- output ------------------------------------------------------------------------------

    def _collect(self, name: str, fd: int) -> None:
        """The collector thread of one pipe: take what arrives, until end of file."""
        while True:
            with self._cond:
                if not self._open[name]:
                    return
            try:
                select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                return  # closed by stop()
            with self._cond:
                if not self._take(name):
                    return

    def _take(self, name: str) -> bool:
        """Read what the pipe holds now into lines (with self._cond held). False at end of
        file. Reading and storing happen under one lock, so once this returns every byte
        written to the pipe before the call is in a line (or in the unfinished last one)."""
        if not self._open[name]:
            return False
        fd = getattr(self.proc, name).fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                self._open[name] = False
                if self._partial[name]:
                    self._lines[name].append(self._partial[name].decode("utf-8", "replace"))
                    self._partial[name] = b""
                self._cond.notify_all()
                return False
            *complete, self._partial[name] = (self._partial[name] + data).split(b"\n")
            for raw in complete:
                self._lines[name].append(raw.rstrip(b"\r").decode("utf-8", "replace"))
            if complete:
                self._cond.notify_all()

    def catch_up(self) -> None:
        """Make every line the process has written so far visible. The server writes a log
        line before the bytes the client then reads, so after the client has seen an answer
        (or a close), this shows whatever was logged for it: a test may check for absence."""
        with self._cond:
            for name in STREAMS:
                self._take(name)

    def lines(self, stream: str = "stderr") -> list[str]:
        with self._cond:
            self._take(stream)
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
            for name in STREAMS:
                self._take(name)
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
            self._take(stream)
            return list(self._lines[stream][mark[stream] :])

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        stream: str = "stderr",
        timeout: float = 5.0,
        mark: dict[str, int] | None = None,
        check_alive: bool = False,
    ) -> re.Match[str] | None:
        """Wait (bounded) for a line matching ``pattern`` (re.search) after ``mark``. With
        ``check_alive``, give up as soon as the process has exited and its output is read."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        start = mark[stream] if mark else 0
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                # Checked before reading: once it has exited, this read takes all it wrote.
                exited = check_alive and self.proc is not None and self.proc.poll() is not None
                self._take(stream)
                lines = self._lines[stream]
                for line in lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                start = len(lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or exited:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class ServerProcess(Process):
    """``python -m palfrey APP ARGS`` (or uvicorn, see tests/support/common.py) on 127.0.0.1
    and a free port, unless ``args`` name a --host or --uds or ``port`` is fixed (then it is
    ready when it accepts a connection: for --log-level warning, which logs no "running on")."""

    def __init__(
        self,
        app: str,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(env)
        self.app = app
        self.args = list(args)
        self.fixed_port = port

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

    def wait_ready(self) -> None:
        if not self.fixed_port or "--uds" in self.args:
            super().wait_ready()
            return
        self.port = self.fixed_port
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.alive():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # poll interval: nothing to wait on but the port
        raise RuntimeError(
            f"server not connectable within {START_TIMEOUT}s: {self.command()}\n"
            f"stdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
        )


class Proc(Process):
    """``python -m palfrey ARGS...``, exactly these arguments (no --host/--port added)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), cwd: Path = ROOT) -> None:  # fmt: skip
        super().__init__(env, cwd, pass_fds)
        self.argv = list(args)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "palfrey", *self.argv]


class ScriptProc(Proc):
    """``python SCRIPT``: a server a test starts from its own script (``palfrey.run(...)``)."""

    def __init__(self, script: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, str(self.script)]


class SupervisedServer(Proc):
    """A Proc leading a new process group (session): stop() ends the parent by PID, then
    kills whatever is left in its group (workers, multiprocessing's resource tracker)."""

    new_session = True

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
            time.sleep(0.05)  # poll interval: /proc has nothing to wait on

    def worker_pids(self) -> set[int]:
        return worker_pids(self.pid)


# -- fixture bodies: every process started through them is stopped at teardown ---------------------


def _stopped_at_teardown(new: Callable[..., Process]) -> Iterator[Callable[..., Any]]:
    started: list[Process] = []

    def make(*args: Any, wait: bool = True, **kwargs: Any) -> Any:
        process = new(*args, **kwargs)
        started.append(process)
        return process.start(wait=wait)

    yield make
    for process in started:
        process.stop()


def servers_stopped_at_teardown() -> Iterator[Callable[..., ServerProcess]]:
    """``make(app="tests.apps:app", *args, env=None, port=None)`` starts a ServerProcess."""

    def new(app: str = "tests.apps:app", *args: str, env: dict[str, str] | None = None,
            port: int | None = None) -> ServerProcess:  # fmt: skip
        return ServerProcess(app, args, env, port)

    yield from _stopped_at_teardown(new)


def procs_stopped_at_teardown(**options: Any) -> Iterator[Callable[..., Proc]]:
    """``make(*args, wait=True, env=None)`` starts a Proc (``options``: e.g. ``cwd``)."""
    yield from _stopped_at_teardown(lambda *args, env=None: Proc(*args, env=env, **options))


def supervised_servers() -> Iterator[Callable[..., SupervisedServer]]:
    """``make(*args, wait=True, env=None)`` starts a SupervisedServer."""
    yield from _stopped_at_teardown(lambda *args, env=None: SupervisedServer(*args, env=env))


def start_server(
    app: str = "tests.apps:app",
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """A started ServerProcess the caller stops (prefer the server_factory fixture)."""
    return ServerProcess(app, args, env, port).start()


# -- checking what a server logged -----------------------------------------------------------------


def check_one_warning(
    server: Process,
    mark: dict[str, int],
    message: str,
    access_log_allowed: bool = False,
    port: int | None = None,
) -> None:
    """Exactly one WARNING line with ``message`` since ``mark``, no traceback, no ERROR (and
    no access-log line for the client port ``port``, or for anyone if ``port`` is None).
    Call it once the client has seen the answer: the lines logged for it are then written."""
    line = f"WARNING:  {message}"
    assert server.wait_for_log(re.escape(line), "stderr", 5.0, mark), (
        f"no {line!r} on stderr; got:\n" + "\n".join(server.since(mark))
    )
    server.catch_up()
    new = server.since(mark)
    assert sum(1 for x in new if x == line) == 1, new
    assert not any("Traceback" in x for x in new), new
    assert not any(x.startswith("ERROR:") for x in new), new
    if not access_log_allowed:
        access = [
            x
            for x in server.since(mark, "stdout")
            if ACCESS_RE.match(x) and (port is None or f"127.0.0.1:{port} " in x)
        ]
        assert not access, access


# -- processes in /proc ----------------------------------------------------------------------------


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


def wait_for_note(server: Process, text: str, timeout: float = 5.0) -> None:
    """Wait (bounded) for the ``APP <text>`` line an app of tests/apps.py writes (apps.note):
    what the app has done, when the client cannot see it yet."""
    pattern = f"^APP {re.escape(text)}$"
    assert server.wait_for_log(pattern, "stderr", timeout), (
        f"no {pattern!r} on stderr:\n" + server.stderr_text()[-3000:]
    )
