"""Run Palfrey under gunicorn: ``gunicorn -k palfrey.workers.PalfreyWorker main:app``.

gunicorn's master binds the listening sockets, forks the workers, watches their heartbeat
and sends the signals; each worker serves gunicorn's sockets with a Palfrey ``Server``.

What a worker takes from gunicorn's settings (everything else is Palfrey's default, or
``CONFIG_KWARGS`` of a subclass):

  ``--bind``, ``--backlog``            the sockets gunicorn bound (and their backlog)
  ``--certfile``, ``--keyfile``, ...   TLS: the SSLContext gunicorn's own ``ssl_context``
                                       hook builds (``--ca-certs``, ``--cert-reqs``,
                                       ``--ciphers`` and a custom hook included)
  ``--keep-alive``                     ``timeout_keep_alive``
  ``--max-requests``, ``--max-requests-jitter``  ``limit_max_requests`` (gunicorn draws
                                       the jitter once per worker)
  ``--graceful-timeout``               ``timeout_graceful_shutdown`` (a little less, so
                                       the worker cancels what is left before the master
                                       kills it)
  ``--timeout``                        the heartbeat period (see below)
  ``--forwarded-allow-ips``            ``forwarded_allow_ips``
  ``--log-level``, ``--error-logfile``, ``--access-logfile``  Palfrey's loggers write to
                                       gunicorn's handlers (``--access-logfile`` unset: no
                                       access log)

Signals, as gunicorn's own workers understand them:

  TERM (and HUP sent to a worker)  graceful: stop accepting, finish in-flight requests
                                   (bounded by the graceful timeout), lifespan shutdown;
                                   idle keep-alive connections are drained (each answers
                                   its next request with connection: close, or closes at
                                   its keep-alive timeout), as gunicorn's sockets live on
  INT, QUIT                        quick: ``worker_int`` hook, then stop accepting and
                                   cancel what is in flight; no lifespan shutdown
  USR1                             reopen the log files (gunicorn's handler)
  ABRT                             sent by the master to a worker whose heartbeat stopped:
                                   ``worker_abort`` hook, exit status 1 at once

The heartbeat: gunicorn kills a worker that has not touched its heartbeat file for
``--timeout`` seconds. A task on the worker's event loop touches it, from startup until the
loop ends (through the graceful drain too), so an idle worker stays alive and a worker whose
loop is blocked by the app is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Generator
from types import FrameType
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from gunicorn.sock import ssl_context
from gunicorn.workers.base import Worker

from palfrey.config import Config, StartupError
from palfrey.server import Server

logger = logging.getLogger("palfrey.error")

# The heartbeat task wakes at least this often: gunicorn's own workers notice ``alive``
# turning false (their --reload) within a second, so this one does too.
HEARTBEAT_MAX_SECONDS = 1.0
# The drain ends this much before gunicorn's --graceful-timeout (at most half of it), so
# that cancelling the rest and the lifespan shutdown happen before the master's SIGKILL.
GRACEFUL_MARGIN_SECONDS = 1.0


class PalfreyWorker(Worker):
    """A gunicorn worker serving ASGI apps with Palfrey.

    Subclass and set ``CONFIG_KWARGS`` to pass other ``Config`` options, e.g.
    ``CONFIG_KWARGS = {"loop": "asyncio", "limit_body_size": 1_048_576}``.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {}

    def init_process(self) -> None:
        # After the fork, before the app is imported (gunicorn's init_process imports it
        # and then calls run()): Palfrey's log lines go where gunicorn's go.
        self._adopt_gunicorn_logging()
        super().init_process()

    def _adopt_gunicorn_logging(self) -> None:
        error_log = self.log.error_log
        palfrey_error = logging.getLogger("palfrey.error")
        palfrey_error.handlers = list(error_log.handlers)
        palfrey_error.setLevel(error_log.level)
        palfrey_error.propagate = False
        palfrey_access = logging.getLogger("palfrey.access")
        if self.cfg.accesslog:
            palfrey_access.handlers = list(self.log.access_log.handlers)
            palfrey_access.setLevel(logging.INFO)
        else:
            palfrey_access.handlers = []
        palfrey_access.propagate = False

    def config_kwargs(self) -> dict[str, Any]:
        """The ``Config`` options taken from gunicorn's settings (see the module docstring)."""
        cfg = self.cfg
        graceful = float(cfg.graceful_timeout)
        kwargs: dict[str, Any] = {
            "log_config": None,  # gunicorn configured logging; Palfrey's loggers joined it
            "access_log": bool(cfg.accesslog),
            "backlog": cfg.backlog,
            "timeout_keep_alive": cfg.keepalive,
            "timeout_graceful_shutdown": graceful - min(GRACEFUL_MARGIN_SECONDS, graceful / 2),
            "forwarded_allow_ips": cfg.forwarded_allow_ips,
            # gunicorn has already added this worker's jitter.
            "limit_max_requests": self.max_requests if cfg.max_requests > 0 else None,
        }
        if cfg.is_ssl:
            kwargs["ssl_context_factory"] = lambda config, default_factory: ssl_context(cfg)
        kwargs.update(self.CONFIG_KWARGS)
        return kwargs

    def run(self) -> None:
        config = Config(self.wsgi, **self.config_kwargs())
        server = GunicornServer(config, worker=self)
        sockets = [listener.sock for listener in self.sockets]
        try:
            server.run(sockets=sockets)
        except StartupError as exc:
            for message in exc.messages:
                logger.error(message)
        if not server.started:
            # The app, its lifespan startup or TLS failed: gunicorn stops instead of
            # starting replacement workers forever.
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class GunicornServer(Server):
    """``Server`` with gunicorn's signal meanings and heartbeat."""

    def __init__(self, config: Config, worker: PalfreyWorker) -> None:
        super().__init__(config)
        self.worker = worker

    async def serve(self, sockets: list[Any] | None = None) -> None:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        try:
            await super().serve(sockets=sockets)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self) -> None:
        # The worker's timeout is half of gunicorn's --timeout; touching the file twice
        # per period leaves room for a loop that is busy, not blocked.
        timeout = self.worker.timeout
        period = min(timeout / 2, HEARTBEAT_MAX_SECONDS) if timeout > 0 else HEARTBEAT_MAX_SECONDS
        while True:
            self.worker.notify()
            if not self.worker.alive:  # gunicorn's --reload saw a change
                self.retire()  # gunicorn's other workers serve the sockets on
            await asyncio.sleep(period)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        handlers = {
            signal.SIGTERM: self._graceful,
            signal.SIGHUP: self._graceful,
            signal.SIGINT: self._quick,
            signal.SIGQUIT: self._quick,
            signal.SIGABRT: self._abort,
        }
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _graceful(self, sig: int, frame: FrameType | None) -> None:
        # gunicorn's master holds the listening sockets (a HUP starts new workers on them
        # before this one is told to stop): drain, so idle clients' next requests are
        # answered rather than met by a closed socket.
        self.retire()

    def _quick(self, sig: int, frame: FrameType | None) -> None:
        self.worker.cfg.worker_int(self.worker)
        self.should_exit = True
        self.force_exit = True

    def _abort(self, sig: int, frame: FrameType | None) -> None:
        # The master found the heartbeat stale: the loop is (or was) blocked, and a graceful
        # stop cannot be relied on. Exit here, whatever the app was doing: a SystemExit
        # raised into an app call could be caught by the app or the server.
        self.worker.alive = False
        self.worker.cfg.worker_abort(self.worker)
        logging.shutdown()
        os._exit(1)
