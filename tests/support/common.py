"""What every other support module uses: where the repository is, which server is under
test, the bounds of every wait, a free port and a bounded poll."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent.parent
# PALFREY_TEST_TARGET=uvicorn runs the black-box suite against Uvicorn (--http httptools) as a
# reference; tests of behaviour where Palfrey differs on purpose are marked palfrey_only.
TARGET = os.environ.get("PALFREY_TEST_TARGET", "palfrey")
IS_PALFREY = TARGET == "palfrey"
SERVER_NAME = b"palfrey" if IS_PALFREY else b"uvicorn"

START_TIMEOUT = 15.0  # seconds for a server to say it is running
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
SOCK_TIMEOUT = 5.0  # seconds any one socket read may wait

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass; return
    its last value (falsy on timeout: the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
