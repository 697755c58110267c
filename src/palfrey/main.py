"""``palfrey.run``: the glue of Config, Server and the supervisors (Uvicorn's main.py shape).

One process: ``Server(config).run()``. ``--workers N`` or ``--reload``: the socket is bound
here once and supervisors/ start child processes that each run ``server.run`` on it. This is
the one place, with the CLI that calls it, where a StartupError becomes exit status 3.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from palfrey.config import STARTUP_FAILURE, Config, StartupError
from palfrey.server import Server
from palfrey.supervisors import ChangeReload, Multiprocess

logger = logging.getLogger("palfrey.error")


def run(app: Any, **kwargs: Any) -> None:
    """``palfrey.run(app, **kwargs)``: build a Config (same keywords as ``Config``), serve
    until told to stop.

    Exits with status 3 when the server could not start, as ``uvicorn.run`` does."""
    config = Config(app, **kwargs)
    try:
        status = _run(config)
    except StartupError as exc:
        for message in exc.messages:
            logger.error(message)
        status = STARTUP_FAILURE
    if status:
        sys.exit(status)


def _run(config: Config) -> int:
    """Serve ``config``; the exit status (0, or a child's startup failure)."""
    server = Server(config=config)
    if config.reload or config.workers > 1:
        if not isinstance(config.app, str):
            logger.warning(
                "You must pass the application as an import string to enable 'reload' or 'workers'."
            )
            return STARTUP_FAILURE
        return _run_supervised(config, server)
    # Import once up front so a bad APP fails before any loop or socket exists.
    config.load_app()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if server.started:
            _remove_unix_socket(config)
    return 0 if server.started else STARTUP_FAILURE


def _run_supervised(config: Config, server: Server) -> int:
    """--reload or --workers: bind once here, serve from child processes that each run
    ``server.run`` on the socket. The app is not imported in this process (as Uvicorn): each
    child imports it, so a reload sees the edited code."""
    sock = config.bind_socket()
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[sock]).run()
            return 0
        supervisor = Multiprocess(config, target=server.run, sockets=[sock])
        supervisor.run()
        return supervisor.exit_status
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
        _remove_unix_socket(config)


def _remove_unix_socket(config: Config) -> None:
    # SPEC 5: the --uds file is removed on exit, by the process that bound it: after a
    # failed start it may be another server's.
    if config.uds and os.path.exists(config.uds):
        os.remove(config.uds)
