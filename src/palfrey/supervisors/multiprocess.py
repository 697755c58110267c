"""``--workers N``: one parent, N worker processes sharing the sockets the parent bound.

The parent serves nothing itself. Its loop wakes every TICK_SECONDS to handle the signals
that arrived (the handlers only queue them: a Python signal handler may run in the middle
of any bytecode, so it must not take locks or start processes) and to check every worker:

- a worker that exited is replaced, unless it exited with status 3 (it could not start:
  the app, TLS or socket is broken and a new one would fail the same way), which stops
  the parent with status 3;
- a worker whose health-check answer is more than --timeout-worker-healthcheck seconds
  late (its event loop is blocked) is replaced at once and asked to retire: it drains if
  its loop comes back, and is killed if it stays silent for one more such period.

Signals: SIGINT/SIGTERM stop every worker gracefully (a second one forces them), SIGHUP
replaces the workers one at a time (each replacement serves before its predecessor is asked
to stop, so no connection is refused), SIGTTIN adds a worker, SIGTTOU removes one.

A worker that stops while the others serve on (SIGHUP, SIGTTOU, --limit-max-requests, a
replaced one) drains instead of closing its idle keep-alive connections: each is answered
once more with `connection: close`, or closes at its keep-alive timeout, so no request a
client has sent meets a closed socket (Server.retire).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from click import style

from palfrey.config import STARTUP_FAILURE, TICK_SECONDS, Config
from palfrey.supervisors.worker import WorkerProcess, wait_for_exit

logger = logging.getLogger("palfrey.error")
# How long a SIGHUP replacement may take to start serving before the restart is abandoned
# (the old workers keep serving). Longer than the health-check timeout on purpose: an app
# that loads for a while at startup is starting, not hung, and answers pings meanwhile.
READY_TIMEOUT_SECONDS = 60.0

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Uvicorn's set: the ones without a handler below are logged and otherwise ignored, so that
# e.g. SIGWINCH from a resized terminal or a stray SIGUSR1 cannot kill the parent.
HANDLED_SIGNALS = tuple(
    getattr(signal, f"SIG{name}")
    for name in ("INT", "TERM", "HUP", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
    if hasattr(signal, f"SIG{name}")
)


class Multiprocess:
    """``target(sockets=sockets)`` (``server.run``) in ``config.workers`` child processes."""

    def __init__(
        self, config: Config, target: Callable[..., None], sockets: list[socket.socket]
    ) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.workers: list[WorkerProcess] = []
        # Asked to stop (SIGHUP, SIGTTOU) and still finishing their in-flight requests.
        self.retiring: list[WorkerProcess] = []
        self.pending_signals: list[int] = []
        self.stop_requests = 0
        self.should_exit = False
        self.exit_status = 0  # what palfrey.run exits with

    # -- the parent's loop ------------------------------------------------------------

    def run(self) -> None:
        pid = os.getpid()
        logger.info(
            "Started parent process [%d]",
            pid,
            extra={
                "color_message": "Started parent process ["
                + style("%d", fg="cyan", bold=True)
                + "]"
            },
        )
        previous = {sig: signal.signal(sig, self._queue_signal) for sig in HANDLED_SIGNALS}
        try:
            for _ in range(self.config.workers):
                self.workers.append(self._start_worker())
            while not self.should_exit:
                time.sleep(TICK_SECONDS)
                self.handle_signals()
                self.supervise()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info(
            "Stopping parent process [%d]",
            pid,
            extra={
                "color_message": "Stopping parent process ["
                + style("%d", fg="cyan", bold=True)
                + "]"
            },
        )

    def _queue_signal(self, sig: int, frame: FrameType | None) -> None:
        self.pending_signals.append(sig)

    def _start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.config, self.sockets, self.target)
        worker.start()
        return worker

    def supervise(self) -> None:
        """Replace dead and hung workers; forget retired ones that have finished."""
        for index, worker in enumerate(self.workers):
            if self.should_exit:
                return
            if not worker.is_alive():
                worker.join()
                if not self._may_replace(worker):
                    return
                logger.info("Child process [%d] died", worker.pid)
            elif not worker.check_health(self.config.timeout_worker_healthcheck):
                logger.error(
                    "Child process [%d] did not answer a health check within %s seconds; "
                    "replacing it.",
                    worker.pid,
                    self.config.timeout_worker_healthcheck,
                )
                # It drains if its loop comes back; if it stays silent for one more
                # health-check period, it is hung and killed (_reap_retired).
                worker.watch_silence()
                self._retire(worker)
            else:
                continue
            self.workers[index] = self._start_worker()
        self._reap_retired()

    def _may_replace(self, worker: WorkerProcess) -> bool:
        if worker.exitcode != STARTUP_FAILURE:
            return True
        logger.error("Child process [%d] failed to start, stopping the parent process.", worker.pid)
        self.exit_status = STARTUP_FAILURE
        self.should_exit = True
        return False

    def _retire(self, worker: WorkerProcess) -> None:
        """Stop a worker while the others serve on: it drains (WorkerProcess.retire)."""
        worker.retire()
        self.retiring.append(worker)

    def _reap_retired(self) -> None:
        timeout = self.config.timeout_worker_healthcheck
        for worker in list(self.retiring):
            if worker.is_alive() and worker.silent_too_long(timeout):
                logger.error("Child process [%d] is hung; killing it.", worker.pid)
                worker.kill()
            if not worker.is_alive():
                worker.join()
                self.retiring.remove(worker)

    def _stop_all(self) -> None:
        everyone = self.workers + self.retiring
        for worker in everyone:
            worker.terminate()
        for worker in everyone:
            logger.info("Waiting for child process [%d]", worker.pid)
        wait_for_exit(everyone, should_force=self._stop_requested_again)
        self.workers, self.retiring = [], []

    def _stop_requested_again(self) -> bool:
        self.stop_requests += len(self._take_signals(STOP_SIGNALS))
        return self.stop_requests > 1

    # -- signals ----------------------------------------------------------------------

    def _take_signals(self, wanted: tuple[int, ...]) -> list[int]:
        taken = [sig for sig in self.pending_signals if sig in wanted]
        for sig in taken:
            self.pending_signals.remove(sig)
        return taken

    def _stop_signal_pending(self) -> bool:
        """Checked while waiting on a replacement, so SIGTERM is not delayed by a restart."""
        for sig in self._take_signals(STOP_SIGNALS):
            self._handle_stop(sig)
        return self.should_exit

    def handle_signals(self) -> None:
        while self.pending_signals and not self.should_exit:
            sig = self.pending_signals.pop(0)
            handler = getattr(self, f"handle_{signal.Signals(sig).name[3:].lower()}", None)
            if handler is None:
                logger.debug(
                    "Received signal %s, but no handler is defined for it.",
                    signal.Signals(sig).name,
                )
            else:
                handler()

    def _handle_stop(self, sig: int) -> None:
        logger.info("Received %s, exiting.", signal.Signals(sig).name)
        self.stop_requests += 1
        self.should_exit = True

    def handle_int(self) -> None:
        self._handle_stop(signal.SIGINT)

    def handle_term(self) -> None:
        self._handle_stop(signal.SIGTERM)

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, restarting processes.")
        self.restart_all()

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.workers.append(self._start_worker())

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU, decreasing number of processes.")
        if len(self.workers) <= 1:
            logger.info(
                "Already reached one process, cannot decrease the number of processes anymore."
            )
            return
        self._retire(self.workers.pop())

    def restart_all(self) -> None:
        """Replace each worker in turn; the old one is asked to stop only once its
        replacement serves. A replacement that does not come up ends the restart and the
        remaining old workers keep serving."""
        for index in range(len(self.workers)):
            old = self.workers[index]
            new = self._start_worker()
            if not new.wait_until_serving(READY_TIMEOUT_SECONDS, self._stop_signal_pending):
                if self._stop_signal_pending():
                    # It may serve already: it stops, gracefully, with the others.
                    self.workers.append(new)
                    return
                new.kill()
                new.join()
                if not self.should_exit:
                    logger.error(
                        "New child process [%d] was not ready in time; keeping worker [%d] "
                        "and aborting the restart.",
                        new.pid,
                        old.pid,
                    )
                return
            self.workers[index] = new
            self._retire(old)
        logger.info("Restarted all processes.")
