"""Accepting connections ourselves, so that running out of file descriptors is survived the same
way under uvloop and asyncio: log once, stop accepting for a moment, keep serving.

Left to the loops, ``accept`` failing with EMFILE/ENFILE goes two wrong ways:

* libuv (uvloop) closes its reserve descriptor, accepts every waiting connection and closes
  it at once (``uv__emfile_trick``): clients that would have been served a moment later are
  reset, and nothing is logged; when the reserve could not be reopened, the error reaches
  uvloop, which closes the listening socket for good.
* asyncio's selector loop logs a traceback and schedules a retry for every one of up to
  ``backlog`` accept attempts in the same pass (thousands of lines a second).

Here the loop only binds (``start_serving=False``); an ``AcceptingServer`` listens on a
duplicate of each of its sockets, watches it, accepts in batches and hands each connection to
``loop.connect_accepted_socket`` (TLS included). On EMFILE/ENFILE/ENOBUFS/ENOMEM it logs one
WARNING for the episode, stops watching for ``ACCEPT_RETRY_SECONDS`` and tries again; waiting
clients stay in the kernel's backlog meanwhile and are served once descriptors free up.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

# How long accepting pauses when the process is out of descriptors (seconds); nginx waits
# 500 ms too. Retried at this pace, silently, until an accept succeeds.
ACCEPT_RETRY_SECONDS = 0.5
# Connections accepted per readiness event at most, so one busy listener cannot hold the loop.
ACCEPT_BATCH = 128
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

logger = logging.getLogger("palfrey.error")


class PlainSocket(socket.socket):
    """A non-blocking socket whose ``family`` and ``type`` are plain attributes: the loop reads
    them several times while taking a connection over, and ``socket.socket`` converts them to
    an IntEnum on every read (a third of what accepting here cost)."""

    __slots__ = ("family", "type")

    def __init__(self, family: int, type: int, fd: int) -> None:
        super().__init__(family, type, 0, fileno=fd)
        self.family = family
        self.type = type
        self.setblocking(False)


class AcceptingServer:
    """Wraps a loop server created with ``start_serving=False``: same ``sockets``, ``close()``
    and ``wait_closed()``, but the accepting is ours (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: asyncio.AbstractServer,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        ssl: ssl_module.SSLContext | None,
        backlog: int,
    ) -> None:
        self.loop = loop
        self.server = server
        self.protocol_factory = protocol_factory
        self.ssl = ssl
        self.closed = False
        self.out_of_fds = False  # inside an episode: logged once, not again until it ends
        self.retry: asyncio.TimerHandle | None = None
        self.handshakes: set[asyncio.Task] = set()
        # Duplicates (the loop keeps its own objects): uvloop's server sockets cannot accept.
        self.listeners = []
        for listening in server.sockets:
            sock = PlainSocket(listening.family, listening.type, os.dup(listening.fileno()))
            sock.listen(backlog)  # the loop listens only once it serves, which it never does
            self.listeners.append(sock)
        for sock in self.listeners:
            loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def sockets(self) -> Any:
        return self.server.sockets

    def _accept(self, sock: PlainSocket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                # What socket.accept() calls, without the socket object it would build.
                fd, _ = sock._accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while waiting in the backlog
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._back_off(exc)
                return
            if self.out_of_fds:
                self.out_of_fds = False
                logger.info("Accepting connections again.")
            self._serve(PlainSocket(sock.family, sock.type, fd))

    def _serve(self, conn: socket.socket) -> None:
        coro = self.loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl)
        task = self.loop.create_task(coro)
        # Kept until done: a TLS handshake may take a while and must not be collected.
        self.handshakes.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:
        self.handshakes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A failed TLS handshake or a client gone before it: the loop would stay quiet too.
            logger.debug("Connection not established: %r", task.exception())

    def _back_off(self, exc: OSError) -> None:
        if not self.out_of_fds:
            self.out_of_fds = True
            logger.warning(
                "Cannot accept connections: %s. Retrying every %.1f s; open connections "
                "are still served.",
                exc.strerror or exc,
                ACCEPT_RETRY_SECONDS,
            )
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
        self.retry = self.loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)

    def _resume(self) -> None:
        self.retry = None
        if not self.closed:
            for sock in self.listeners:
                self.loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.retry is not None:
            self.retry.cancel()
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.server.close()

    async def wait_connected(self, give_up: Callable[[], bool]) -> None:
        """Wait until every connection accepted so far has its protocol (or failed its TLS
        handshake), or ``give_up()`` (checked every 0.1 s) is true. Shutdown calls this after
        close(): a connection accepted just before would otherwise be dropped with the loop,
        unanswered, instead of being drained."""
        # Nothing is accepted after close(): the set only shrinks.
        pending = [task for task in self.handshakes if not task.done()]
        while pending and not give_up():
            _, still = await asyncio.wait(pending, timeout=0.1)
            pending = list(still)

    async def wait_closed(self) -> None:
        await self.server.wait_closed()
