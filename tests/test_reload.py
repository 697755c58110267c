"""--reload (SPEC.md section 5): a real reloader watching a temporary app directory.

Each test runs twice: with watchfiles (when installed) and with the polling fallback,
forced by making ``import watchfiles`` fail in the reloader process. Every wait is bounded.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from tests.support.client import get
from tests.support.common import IS_PALFREY, wait_until
from tests.support.server import SupervisedServer

pytestmark = pytest.mark.skipif(not IS_PALFREY, reason="Palfrey's reloader (logs)")

# A reload: notice the change, stop the child, spawn a new one, import the app.
RELOAD_TIMEOUT = 20.0

APP_SOURCE = """
MESSAGE = b"{message}"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [(b"content-length", str(len(MESSAGE)).encode())]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": MESSAGE}})
"""

# `python -c` entry point that hides watchfiles, so the reloader falls back to polling.
WITHOUT_WATCHFILES = (
    "import sys; sys.modules['watchfiles'] = None; from palfrey.cli import main; main()"
)


def _watchfiles_installed() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


class ReloadServer(SupervisedServer):
    def __init__(self, *args: str, polling: bool) -> None:
        super().__init__(*args)
        self.polling = polling

    def command(self) -> list[str]:
        if self.polling:
            return [sys.executable, "-c", WITHOUT_WATCHFILES, *self.argv]
        return super().command()


@pytest.fixture(params=["watchfiles", "polling"])
def backend(request) -> str:
    if request.param == "watchfiles" and not _watchfiles_installed():
        pytest.skip("watchfiles is not installed")
    return request.param


@pytest.fixture
def reloading(backend, tmp_path):
    """Start a reloader on ``tmp_path/reload_app.py`` (message "one"); stopped at teardown."""
    started: list[ReloadServer] = []

    def make(*extra: str) -> ReloadServer:
        write_app(tmp_path, "one")
        server = ReloadServer(
            "reload_app:app",
            "--app-dir",
            str(tmp_path),
            "--reload",
            "--reload-dir",
            str(tmp_path),
            "--reload-delay",
            "0.1",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-access-log",
            *extra,
            polling=backend == "polling",
        )
        started.append(server)
        server.start()
        name = "StatReload" if backend == "polling" else "WatchFiles"
        assert server.wait_for_log(
            rf"Started reloader process \[{server.pid}\] using {name}", timeout=5
        ), server.stderr_text()
        assert wait_until(lambda: body_or_none(server) == b"one", RELOAD_TIMEOUT), (
            server.stderr_text()
        )
        return server

    yield make
    for server in started:
        server.stop()


def write_app(directory: Path, message: str, broken: bool = False) -> None:
    source = APP_SOURCE.format(message=message)
    if broken:
        source += "\ndef oops(:\n"
    (directory / "reload_app.py").write_text(source)


def body_or_none(server: SupervisedServer) -> bytes | None:
    try:
        status, body = get(server.port, timeout=2)
    except OSError:
        return None
    return body if status == 200 else None


def reload_lines(server: SupervisedServer) -> list[str]:
    return [line for line in server.lines() if "detected changes in" in line]


def test_editing_a_watched_file_reloads(reloading, tmp_path) -> None:
    server = reloading()
    write_app(tmp_path, "two")
    assert wait_until(lambda: body_or_none(server) == b"two", RELOAD_TIMEOUT), server.stderr_text()
    assert any("'" in line and "reload_app.py" in line for line in reload_lines(server))

    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0, server.stderr_text()
    assert server.wait_for_log(rf"Stopping reloader process \[{server.pid}\]", timeout=5)


def test_an_excluded_pattern_does_not_reload(reloading, tmp_path) -> None:
    server = reloading("--reload-exclude", "ignored_*.py")
    (tmp_path / "ignored_module.py").write_text("VALUE = 1\n")
    # A watched edit after the excluded one: the reload it causes must not name the
    # excluded file, and must be the only one.
    write_app(tmp_path, "two")
    assert wait_until(lambda: body_or_none(server) == b"two", RELOAD_TIMEOUT), server.stderr_text()
    lines = reload_lines(server)
    assert len(lines) == 1, lines
    assert "ignored_module.py" not in lines[0] and "reload_app.py" in lines[0], lines


def test_a_syntax_error_then_a_fix_recovers(reloading, tmp_path) -> None:
    server = reloading()
    write_app(tmp_path, "broken", broken=True)
    assert server.wait_for_log(r"SyntaxError", timeout=RELOAD_TIMEOUT), server.stderr_text()
    assert server.alive()  # the reloader keeps watching

    write_app(tmp_path, "fixed")
    assert wait_until(lambda: body_or_none(server) == b"fixed", RELOAD_TIMEOUT), (
        server.stderr_text()
    )
    assert len(re.findall(r"Started reloader process", server.stderr_text())) == 1
