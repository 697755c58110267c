"""Helpers for the configuration/CLI/proxy/TLS tests: a server process started with exactly
the arguments given (no --host/--port added), ready when a given log line appears."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading

from tests.conftest import ROOT, START_TIMEOUT, ServerProcess

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
                 pass_fds: tuple[int, ...] = ()) -> None:
        super().__init__("", (), env)
        self.argv = list(args)
        self.pass_fds = pass_fds
        self.match: re.Match[str] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "palfrey", *self.argv]

    def start(self, wait: bool = True) -> Proc:
        self.proc = subprocess.Popen(
            self.command(), cwd=str(ROOT), env=clean_env(self.extra_env),
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
