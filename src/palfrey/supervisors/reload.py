"""``--reload``: serve from a child process and start a fresh one when watched files change.

Development only. The parent binds the socket once, so the port stays open (connections
wait in the backlog) while the child restarts. Files are watched with watchfiles when it
is installed (``pip install 'palfrey[standard]'``), else by polling their mtimes; both
apply the same --reload-include/--reload-exclude filter under the Config's resolved
--reload-dir directories, and both look again --reload-delay seconds after each look.

A child that fails (a SyntaxError while editing, say) is left dead; the reloader keeps
watching and starts a new child on the next change, so fixing the file brings it back.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from click import style

from palfrey.config import RELOAD_DEFAULT_EXCLUDES, RELOAD_DEFAULT_INCLUDES, Config, is_dir
from palfrey.supervisors.worker import WorkerProcess, wait_for_exit

logger = logging.getLogger("palfrey.error")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The stop flag is checked this often while pausing between looks.
PAUSE_STEP_SECONDS = 0.05
# watchfiles returns from a wait at least this often (ms), so the first call, which arms
# the watcher, is short, and a stop request is seen promptly.
ARM_TIMEOUT_MS = 200


class ReloadFilter:
    """Which changed paths cause a reload (Uvicorn's rules).

    A file is watched when its name matches an include pattern ('*.py' unless excluded,
    plus --reload-include) and neither lies under an excluded directory nor matches an
    exclude pattern (dotfiles, compiled Python, editor swap and backup files, plus
    --reload-exclude). A file named outright by an include pattern is watched regardless.
    """

    def __init__(self, config: Config) -> None:
        self.includes = list(
            dict.fromkeys(
                [p for p in RELOAD_DEFAULT_INCLUDES if p not in config.reload_excludes]
                + list(config.reload_includes)
            )
        )
        self.exclude_dirs = list(config.reload_dirs_excludes)
        excluded_dir_patterns = {p for p in config.reload_excludes if is_dir(Path(p))}
        self.excludes = list(
            dict.fromkeys(
                [p for p in RELOAD_DEFAULT_EXCLUDES if p not in config.reload_includes]
                + [p for p in config.reload_excludes if p not in excluded_dir_patterns]
            )
        )

    def __call__(self, path: Path) -> bool:
        matched = [pattern for pattern in self.includes if path.match(pattern)]
        if not matched:
            return False
        if any(str(path).endswith(pattern) for pattern in matched):
            return True
        if self.in_excluded_dir(path):
            return False
        return not any(path.match(pattern) for pattern in self.excludes)

    def in_excluded_dir(self, path: Path) -> bool:
        return any(
            directory == path or directory in path.parents for directory in self.exclude_dirs
        )


class StopFlag:
    """Set from a signal handler, read by the loops and by watchfiles (``is_set``).

    A plain attribute rather than threading.Event: Event.set takes a lock that the
    interrupted main thread may be holding, and the handler would deadlock on it.
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class BaseReload:
    """The reloader's loop; subclasses say how changes are found (``watch``)."""

    reloader_name = ""

    def __init__(
        self,
        config: Config,
        target: Callable[..., None],
        sockets: list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.target = target  # server.run, as Uvicorn passes it
        self.sockets = list(sockets or [])
        self.should_exit = StopFlag()
        self.stop_requests = 0
        self.pid = os.getpid()
        self.filter = ReloadFilter(config)
        self.process: WorkerProcess | None = None
        self.retired: list[WorkerProcess] = []  # old children still draining

    def run(self) -> None:
        self._log_lifecycle("Started reloader process [%d] using %s")
        previous = {sig: signal.signal(sig, self._handle_stop) for sig in STOP_SIGNALS}
        try:
            changes_seen = self.watch()
            next(changes_seen)  # arm the watcher first: an edit made as the child starts counts
            self.process = self._start_child()
            for changes in changes_seen:
                logger.warning(
                    "%s detected changes in %s. Reloading...",
                    self.reloader_name,
                    ", ".join(_display_path(path) for path in changes),
                )
                self.restart()
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._log_lifecycle("Stopping reloader process [%d]")

    def watch(self) -> Iterator[list[Path]]:
        """Yield an empty list once the watcher is armed, then each batch of changed files."""
        raise NotImplementedError

    def restart(self) -> None:
        """The old child retires (it drains: the socket stays open, so its idle clients'
        next requests are answered, with connection: close) while the new one starts."""
        self._reap_retired()
        old, self.process = self.process, None
        if old is not None:
            old.retire()
            self.retired.append(old)
        if not self.should_exit.is_set():
            self.process = self._start_child()

    def shutdown(self) -> None:
        self._stop_child()
        for process in self.retired:
            process.terminate()
        wait_for_exit(self.retired, should_force=lambda: self.stop_requests > 1)
        self.retired = []
        for sock in self.sockets:
            sock.close()

    def _reap_retired(self) -> None:
        for process in [p for p in self.retired if not p.is_alive()]:
            process.join()
            self.retired.remove(process)

    def pause(self) -> None:
        """Wait --reload-delay seconds, or less if asked to stop."""
        deadline = time.monotonic() + self.config.reload_delay
        while not self.should_exit.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, PAUSE_STEP_SECONDS))

    def _start_child(self) -> WorkerProcess:
        process = WorkerProcess(self.config, self.sockets, self.target)
        process.start()
        return process

    def _stop_child(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        wait_for_exit([process], should_force=lambda: self.stop_requests > 1)

    def _handle_stop(self, sig: int, frame: FrameType | None) -> None:
        self.stop_requests += 1
        self.should_exit.set()

    def _log_lifecycle(self, message: str) -> None:
        colored = message.replace("[%d]", "[" + style("%d", fg="cyan", bold=True) + "]")
        if "%s" in message:
            colored = colored.replace("%s", style("%s", fg="cyan", bold=True))
            args: tuple[object, ...] = (self.pid, self.reloader_name)
        else:
            args = (self.pid,)
        logger.info(message, *args, extra={"color_message": colored})


class WatchFilesReload(BaseReload):
    """File-system events through watchfiles (inotify on Linux)."""

    reloader_name = "WatchFiles"

    def watch(self) -> Iterator[list[Path]]:
        import watchfiles

        events = watchfiles.watch(
            *self.config.reload_dirs,
            # Our filter instead of watchfiles' default one, so the rules are the ones
            # --reload-include/--reload-exclude describe (and the same as polling's).
            watch_filter=lambda change, path: self.filter(Path(path)),
            stop_event=self.should_exit,
            yield_on_timeout=True,
            rust_timeout=ARM_TIMEOUT_MS,
            ignore_permission_denied=True,
        )
        next(events, None)  # the first call sets up inotify (it returns at the timeout)
        yield []
        while not self.should_exit.is_set():
            self.pause()
            # Events that arrive meanwhile are kept by the watcher for the next call.
            changes = next(events, None)
            if self.should_exit.is_set() or changes is None:
                return
            if changes:
                yield sorted({Path(path) for _, path in changes})


class StatReload(BaseReload):
    """Polling: compare each watched file's mtime and size with the previous look's.

    Unlike Uvicorn's, this honours --reload-include/--reload-exclude and also notices
    new and deleted files.
    """

    reloader_name = "StatReload"

    def watch(self) -> Iterator[list[Path]]:
        previous = self.snapshot()
        yield []
        while not self.should_exit.is_set():
            self.pause()
            if self.should_exit.is_set():
                return
            current = self.snapshot()
            changed = sorted(
                path
                for path in previous.keys() | current.keys()
                if previous.get(path) != current.get(path)
            )
            previous = current
            if changed:
                yield changed

    def snapshot(self) -> dict[Path, tuple[int, int]]:
        stamps: dict[Path, tuple[int, int]] = {}
        for directory in self.config.reload_dirs:
            for path in self._watched_files(Path(directory)):
                try:
                    info = path.stat()
                except OSError:
                    continue  # deleted between the listing and the stat
                stamps[path] = (info.st_mtime_ns, info.st_size)
        return stamps

    def _watched_files(self, root: Path) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath)
            # Prune excluded directories rather than stat'ing everything below them.
            dirnames[:] = [d for d in dirnames if not self.filter.in_excluded_dir(base / d)]
            for name in filenames:
                path = base / name
                if self.filter(path):
                    yield path


def _display_path(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"


def reloader_class() -> type[BaseReload]:
    """WatchFiles when watchfiles can be imported, else polling."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return StatReload
    return WatchFilesReload
