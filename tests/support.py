"""Helpers for the configuration/CLI/proxy/TLS tests: a server process started with exactly
the arguments given (no --host/--port added), ready when a given log line appears; nginx in
front of it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, START_TIMEOUT, ServerProcess, free_port

_ESC = r"(?:\x1b\[[0-9;]*m)*"  # --use-colors wraps the address in ANSI codes
RUNNING_ANY = re.compile(
    rf"Palfrey running on {_ESC}(?:(https?)://(\S+?):(\d+)|unix socket (\S+?)|socket (.+?))"
    rf"{_ESC} \(Press CTRL\+C"
)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
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


class Proc(ServerProcess):
    """``python -m palfrey ARGS...``; ``start()`` waits for the "running on" line (or, with
    ``wait=False``, returns at once: for processes expected to fail)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), cwd: Path = ROOT) -> None:
        super().__init__("", (), env)
        self.argv = list(args)
        self.pass_fds = pass_fds
        self.cwd = cwd
        self.match: re.Match[str] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "palfrey", *self.argv]

    def start(self, wait: bool = True) -> Proc:
        self.proc = subprocess.Popen(
            self.command(), cwd=str(self.cwd), env=clean_env(self.extra_env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=self.pass_fds,
        )
        for name in ("stdout", "stderr"):
            t = threading.Thread(target=self._drain, args=(name, getattr(self.proc, name)),
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if not wait:
            return self
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
        return self

    def run_to_exit(self, timeout: float = 15.0) -> int:
        """Start without waiting for readiness and return the exit code (bounded)."""
        self.start(wait=False)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.stop()
            raise AssertionError(f"still running after {timeout}s:\n{self.stderr_text()}")
        return rc


def procs_stopped_at_teardown(**options: Any) -> Iterator:
    """The body of a fixture that starts ``Proc``s (``options``: e.g. ``cwd``) inside a test
    and stops every one at teardown (``yield from procs_stopped_at_teardown()``)."""
    started: list[Proc] = []

    def make(*args: str, wait: bool = True, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(*args, env=env, **options)
        started.append(proc)
        return proc.start(wait=wait)

    yield make
    for proc in started:
        proc.stop()


class ScriptProc(Proc):
    """``python SCRIPT``: a server a test starts from its own script (``palfrey.run(...)``)."""

    def __init__(self, script: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, str(self.script)]


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


# -- nginx in front (tests/test_nginx.py, tests/test_websocket_nginx.py) -----------------------

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
)

# Everything nginx writes goes under the test's temporary directory: pid, logs, temp files.
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    proxy_http_version 1.1;
{http}
}}
"""


@contextlib.contextmanager
def running_nginx(tmp: Path, http: str) -> Iterator[int]:
    """Run nginx with ``http`` (the inside of its http block, listening on ``{port}``) from
    a config in ``tmp``; yield the port once it accepts; always stop it by PID."""
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, http=http.replace("{port}", str(port))))
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if nginx.poll() is not None:
                out = nginx.stdout.read().decode(errors="replace") if nginx.stdout else ""
                log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                raise RuntimeError(f"nginx exited with {nginx.returncode}:\n{out}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start listening within 10 s") from None
                time.sleep(0.05)
        yield port
    finally:
        if nginx.poll() is None:
            os.kill(nginx.pid, signal.SIGTERM)
            try:
                nginx.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(nginx.pid, signal.SIGKILL)
                nginx.wait(timeout=5)
        if nginx.stdout is not None:
            nginx.stdout.close()
