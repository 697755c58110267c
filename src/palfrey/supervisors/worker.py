"""One serving child process: what runs inside it, and the supervisor's handle on it.

Both supervisors (multiprocess.py, reload.py) start children the same way: a fresh
interpreter from multiprocessing's "spawn" context (no forked copy of the parent's state,
and the same behaviour on every platform), given the Config, the sockets the parent bound and
the target to run on them: ``server.run`` (Uvicorn's shape; this package never imports the
server module, so there is no import cycle).

Each child keeps one end of a pipe to its parent, used for three things:

- health checks: the parent writes PING, the child answers STARTING while its server is
  still starting, or SERVING once the answer has gone through the server's event loop. A
  loop blocked by a misbehaving app cannot answer, so the parent sees the worker as hung
  (Uvicorn answers from a thread, so it only notices a process that is wholly stuck);
- retiring: the parent writes RETIRE to a worker it replaces, which then drains
  (Server.retire) while the others serve on;
- parent death: when the parent is gone (even killed with SIGKILL) the child reads EOF
  and shuts itself down gracefully, instead of serving on as an orphan.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from palfrey.config import STARTUP_FAILURE, Config, StartupError

logger = logging.getLogger("palfrey.error")

spawn_context = multiprocessing.get_context("spawn")

PING = b"?"
RETIRE = b"r"  # stop serving, draining: the listening socket lives on in the others
STARTING = b"0"
SERVING = b"1"
BOOTED = b"b"  # sent once, unasked, when the child's responder starts

# How often the parent asks each worker whether it is alive; a worker is declared hung when
# an answer is more than --timeout-worker-healthcheck seconds late.
PING_INTERVAL_SECONDS = 0.5


class WorkerProcess:
    """The parent's handle on one child serving ``sockets``."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        target: Callable[..., None],
    ) -> None:
        self._conn, self._child_conn = spawn_context.Pipe()
        self.process = spawn_context.Process(
            target=serve_in_child,
            args=(config, sockets, self._child_conn, target),
            name="palfrey-worker",
        )
        self.serving = False  # the child's last answer: its server has started
        self._ping_sent_at: float | None = None
        self._last_answer_at = 0.0
        self._booted = False
        # A retired worker that failed its health check: since when it has been silent.
        self._silent_since: float | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self.process.start()
        # Keep only our end: when the child dies we read EOF, and when we die, it does.
        self._child_conn.close()
        self._last_answer_at = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def terminate(self) -> None:
        """Ask for a graceful stop (the child's Server finishes in-flight requests)."""
        if self._signal(signal.SIGTERM):
            logger.info("Terminated child process [%d]", self.pid)

    def retire(self) -> None:
        """Ask for a graceful stop that drains instead of closing idle connections (the
        child's Server.retire): for a worker replaced while the others keep serving.
        Falls back to SIGTERM when the pipe is gone."""
        try:
            self._conn.send_bytes(RETIRE)
        except OSError:
            self.terminate()
            return
        logger.info("Retiring child process [%d]", self.pid)

    def interrupt(self) -> None:
        """A second stop request: the child's Server stops waiting for connections."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> bool:
        if self.process.exitcode is not None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def watch_silence(self) -> None:
        """Watch this (retired) worker from now: see silent_too_long."""
        self._silent_since = time.monotonic()

    def silent_too_long(self, timeout: float) -> bool:
        if self._silent_since is None:
            return False
        self.check_health(timeout)  # reads answers, pings on
        if self._last_answer_at >= self._silent_since:
            self._silent_since = None  # it answered: its loop is back, and it drains
            return False
        return time.monotonic() - self._silent_since > timeout

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)
        if self.process.exitcode is not None:
            self._conn.close()

    # -- health -----------------------------------------------------------------------

    def check_health(self, timeout: float) -> bool:
        """Read answers, send the next ping when due; False once an answer is overdue.

        Never blocks, so one hung worker does not delay the checks of the others, nor the
        parent's handling of signals.
        """
        now = time.monotonic()
        if not self._read_answers(now):
            return self.is_alive()  # EOF: the child is exiting; its exit is handled elsewhere
        if self._ping_sent_at is not None:
            # Until it says it has booted, the child is still spawning an interpreter and
            # importing (seconds, on a busy machine): starting, not hung.
            return not self._booted or now - self._ping_sent_at <= timeout
        if now - self._last_answer_at >= PING_INTERVAL_SECONDS:
            try:
                self._conn.send_bytes(PING)
            except OSError:
                return self.is_alive()
            self._ping_sent_at = now
        return True

    def wait_until_serving(self, timeout: float, should_stop: Callable[[], bool]) -> bool:
        """Ping until the child reports that it serves; False if it exits, stops
        answering, ``should_stop()`` turns true, or ``timeout`` passes (all bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_stop():
            if not self.is_alive():
                return False
            if not self.check_health(timeout):
                return False
            if self.serving:
                return True
            time.sleep(0.05)
        return False

    def _read_answers(self, now: float) -> bool:
        """Consume every answer waiting on the pipe; False on EOF."""
        try:
            while self._conn.poll(0):
                message = self._conn.recv_bytes()
                if message == BOOTED:
                    self._booted = True
                    continue
                self.serving = message == SERVING
                self._ping_sent_at = None
                self._last_answer_at = now
        except (EOFError, OSError):
            return False
        return True


# -- inside the child -------------------------------------------------------------------


def serve_in_child(
    config: Config,
    sockets: list[socket.socket],
    conn: Connection,
    target: Callable[..., None],
) -> None:
    """The child's entry point: ``target(sockets=sockets)`` until stopped.

    An exception before the server has started is a startup failure (exit 3), whatever
    raised it (a SyntaxError in the app, say), so the parent can tell it from a crash.
    """
    # The Config arrived pickled, without running __init__: set logging up here.
    config.configure_logging()
    # With target=server.run (the usual case) health answers go through that server's loop;
    # for another callable they come from the responder's thread.
    server = getattr(target, "__self__", None)
    responder = HealthResponder(conn, server)
    responder.start()
    try:
        target(sockets=sockets)
    except KeyboardInterrupt:
        pass  # Ctrl+C reached the child too; the parent is stopping it anyway
    except StartupError as exc:
        for message in exc.messages:
            logger.error(message)
        sys.exit(STARTUP_FAILURE)
    except Exception:
        if server is not None and server.started:
            raise
        logger.exception("Child process [%d] failed to start.", os.getpid())
        sys.exit(STARTUP_FAILURE)


class HealthResponder(threading.Thread):
    """Answers the parent's pings; stops the server when the parent is gone.

    ``server`` is the Server whose loop must carry each answer (None: answer from here)."""

    def __init__(self, conn: Connection, server: Any) -> None:
        super().__init__(name="palfrey-health", daemon=True)
        self.conn = conn
        self.server = server

    def run(self) -> None:
        try:
            self.conn.send_bytes(BOOTED)
        except OSError:
            self._parent_gone()
            return
        while True:
            try:
                message = self.conn.recv_bytes()
            except (EOFError, OSError):
                self._parent_gone()
                return
            if message == RETIRE:
                if self.server is not None:
                    self.server.retire()
                else:
                    os.kill(os.getpid(), signal.SIGTERM)
                continue
            answer = self._answer()
            if answer is None:
                return  # the loop has closed: the server is finishing
            try:
                self.conn.send_bytes(answer)
            except OSError:
                self._parent_gone()
                return

    def _answer(self) -> bytes | None:
        if self.server is None:
            return SERVING  # a foreign target: its loop is not ours to see
        loop = self.server.loop
        if loop is None or not self.server.started:
            # Still importing the app or running lifespan startup (which may take long):
            # alive, not serving yet.
            return STARTING
        reached = threading.Event()
        try:
            loop.call_soon_threadsafe(reached.set)
        except RuntimeError:
            return None
        # No deadline here: a blocked loop never answers, and the parent's timeout is
        # what declares the worker hung.
        while not reached.wait(1.0):
            if loop.is_closed():
                return None
        return SERVING

    def _parent_gone(self) -> None:
        # SIGTERM ourselves: the Server's own handler runs the graceful shutdown.
        os.kill(os.getpid(), signal.SIGTERM)


def wait_for_exit(processes: list[WorkerProcess], should_force: Callable[[], bool]) -> None:
    """Join ``processes`` (already asked to stop); when ``should_force()`` turns true, ask
    them again with SIGINT, which makes their servers stop waiting for connections."""
    forced = False
    while any(p.is_alive() for p in processes):
        if not forced and should_force():
            forced = True
            for process in processes:
                process.interrupt()
        time.sleep(0.05)
    for process in processes:
        process.join()
