"""Server: startup, the supervising tick, signals and graceful shutdown (SPEC.md section 5).

The request hot path is not here: every connection is a compiled ``HttpProtocol`` sharing
one ``ServerContext``. This module only builds that context from the Config, listens,
and reads the context's counters once per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Generator, Sequence
from types import FrameType
from typing import Any

from click import style

from palfrey.config import TICK_SECONDS, Config, StartupError, log_running, socket_from_fd
from palfrey.listener import AcceptingServer

HANDLED_SIGNALS = (
    signal.SIGINT,  # Ctrl+C
    signal.SIGTERM,  # kill <pid>, process managers
)
# After cancelling app calls, how long to let them unwind. Bounded: an app may swallow
# the cancellation, and shutdown must still end.
CANCEL_SETTLE_SECONDS = 0.5
# callback_notify is checked on this subset of wake-ups (once a second), as Uvicorn.
TICKS_PER_NOTIFY_CHECK = 10

logger = logging.getLogger("palfrey.error")


class ServerState:
    """Uvicorn's ``server.server_state``, as read-only views of the compiled context.

    Before startup (and after a failed one) there is no context: the views are empty.
    """

    def __init__(self) -> None:
        self.ctx: Any = None  # palfrey._parser.ServerContext, set by Server.startup
        self.default_headers: list[tuple[bytes, bytes]] = []

    @property
    def total_requests(self) -> int:
        return self.ctx.total_requests if self.ctx is not None else 0

    @property
    def active_requests(self) -> int:
        return self.ctx.active_requests if self.ctx is not None else 0

    @property
    def connections(self) -> set[Any]:
        return self.ctx.connections if self.ctx is not None else set()


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[AcceptingServer] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop serve() runs on
        self._captured_signals: list[int] = []
        self.limit_max_requests: int | None = None  # drawn when serving starts
        # Set with should_exit when this process retires while the listening socket lives
        # on in others (a rolling restart, a recycled worker): idle connections are then
        # not cut short, each stays until its next request (answered with connection:
        # close) or its keep-alive timeout, so no client's request meets a closed socket.
        self.draining = False
        self.sockets_shared = False  # serving sockets a supervisor bound (and others share)

    # -- entry points -----------------------------------------------------------------

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to stop, on a loop of its own (--loop).

        Raises StartupError when the server cannot start."""
        # Resolve the loop before creating the coroutine, so a bad --loop fails without
        # leaving a never-awaited coroutine behind.
        loop_factory = self.config.get_loop_factory()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(self.serve(sockets=sockets))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        pid = os.getpid()
        self.loop = asyncio.get_running_loop()
        self.sockets_shared = sockets is not None
        config = self.config
        if config.limit_max_requests is not None:
            # Drawn in each serving process (workers get a pickled copy of one Server), so
            # that workers sharing one limit restart at different times: the jitter's point.
            self.limit_max_requests = config.limit_max_requests + random.randint(
                0, config.limit_max_requests_jitter
            )
        if not config.loaded:
            config.load()
        self.lifespan = config.lifespan_class(config)

        logger.info(
            "Started server process [%d]",
            pid,
            extra={"color_message": "Started server process [" + style("%d", fg="cyan") + "]"},
        )
        await self.startup(sockets=sockets)
        if not self.should_exit:
            await self.main_loop()
        if self.started:
            await self.shutdown(sockets=sockets)
            logger.info(
                "Finished server process [%d]",
                pid,
                extra={"color_message": "Finished server process [" + style("%d", fg="cyan") + "]"},
            )

    # -- startup ----------------------------------------------------------------------

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Lifespan first, as Uvicorn: the app is ready before the port accepts anything.
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise StartupError()  # the lifespan has logged why

        loop = asyncio.get_running_loop()
        ctx = self._create_context(loop)
        protocol_class = self.config.http_protocol_class

        def create_protocol() -> asyncio.BaseProtocol:
            return protocol_class(ctx)

        try:
            listeners = await self._listen(loop, create_protocol, sockets)
        except OSError as exc:
            # e.g. "[Errno 98] ... address already in use": one ERROR line, exit 3.
            await self.lifespan.shutdown()
            raise StartupError(str(exc)) from None

        if self.config.http2:
            logger.info(
                "Protocols: HTTP/1.1 and HTTP/2 (%s)",
                "ALPN h2 over TLS" if self.config.ssl else "h2c: prior knowledge and Upgrade",
            )
        if sockets is None:
            self._log_started_message(listeners)
        # else: the supervisor that bound the sockets has logged the address already.
        self.started = True

    def _create_context(self, loop: asyncio.AbstractEventLoop) -> Any:
        from palfrey._parser import ServerContext
        from palfrey.protocols.websocket import websocket_protocol_factory, websocket_settings

        config = self.config
        ws_settings = websocket_settings(config, logger)
        h2_protocol = None
        if config.http2:
            from palfrey.protocols.http2 import h2_protocol_factory

            h2_protocol = h2_protocol_factory(config, ws_settings)
        access_logger = logging.getLogger("palfrey.access")
        ctx = ServerContext(
            app=config.loaded_app,
            loop=loop,
            app_state=self.lifespan.state,
            root_path=config.root_path,
            default_headers=config.encoded_headers,
            date_header=config.date_header,
            # No handler anywhere up the tree means nobody would see the line: let the
            # core skip building the record, as Uvicorn's protocols do.
            access_log=bool(config.access_log and access_logger.hasHandlers()),
            error_logger=logger,
            access_logger=access_logger,
            limit_concurrency=config.limit_concurrency,
            timeout_keep_alive=config.timeout_keep_alive,
            timeout_request_header=config.timeout_request_header,
            timeout_request_body=config.timeout_request_body,
            limit_header_size=config.limit_header_size,
            limit_header_line_size=config.limit_header_line_size,
            limit_header_count=config.limit_header_count,
            limit_target_size=config.limit_target_size,
            limit_body_size=config.limit_body_size,
            ws_protocol=websocket_protocol_factory(ws_settings),  # None for --ws none
            h2_protocol=h2_protocol,
            tls_server_cert=config.server_certificate_pem(),
            access_log_format=config.access_log_formatter,
        )
        self._ctx = ctx
        self.server_state.ctx = ctx
        self.server_state.default_headers = config.encoded_headers
        return ctx

    async def _listen(
        self,
        loop: asyncio.AbstractEventLoop,
        create_protocol: Any,
        sockets: list[socket.socket] | None,
    ) -> Sequence[socket.socket]:
        config = self.config
        if sockets is not None:
            # Sockets bound by a parent (workers, reload, gunicorn): serve each one.
            for sock in sockets:
                server = await loop.create_server(
                    create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog,
                    start_serving=False,
                )
                self.servers.append(
                    AcceptingServer(loop, server, create_protocol, config.ssl, config.backlog)
                )
            return sockets

        if config.fd is not None:
            server = await loop.create_server(
                create_protocol,
                sock=socket_from_fd(config.fd),
                ssl=config.ssl,
                backlog=config.backlog,
                start_serving=False,
            )
        elif config.uds is not None:
            server = await loop.create_unix_server(
                create_protocol, path=config.uds, ssl=config.ssl, backlog=config.backlog,
                start_serving=False,
            )
            os.chmod(config.uds, 0o666)  # any local user may connect (SPEC.md section 5)
        else:
            # host/port rather than one pre-bound socket: create_server binds every
            # address the host resolves to (e.g. "localhost" -> 127.0.0.1 and ::1).
            server = await loop.create_server(
                create_protocol,
                host=config.host,
                port=config.port,
                ssl=config.ssl,
                backlog=config.backlog,
                start_serving=False,
            )
        # The loop only binds: listening and accepting are listener.py's (out of descriptors).
        self.servers = [AcceptingServer(loop, server, create_protocol, config.ssl, config.backlog)]
        return list(server.sockets or [])

    def _log_started_message(self, listeners: Sequence[socket.socket]) -> None:
        config = self.config
        if config.fd is not None:
            log_running(config, sockname=listeners[0].getsockname())
        elif config.uds is not None:
            log_running(config, uds=config.uds)
        else:
            port = config.port
            if port == 0:
                # Ephemeral port: the kernel chose it; report the real one.
                port = listeners[0].getsockname()[1]
            log_running(config, port=port)

    # -- main loop --------------------------------------------------------------------

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000  # wrap daily; only counter % 10 matters
            await asyncio.sleep(TICK_SECONDS)
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        self._ctx.tick(asyncio.get_running_loop().time())
        notify = self.config.callback_notify
        if notify is not None and counter % TICKS_PER_NOTIFY_CHECK == 0:
            now = time.time()
            if now - self.last_notified > self.config.timeout_notify:
                self.last_notified = now
                await notify()

        if self.should_exit:
            return True
        limit = self.limit_max_requests
        if limit is not None and self._ctx.total_requests >= limit:
            logger.info("Maximum request limit of %d exceeded. Terminating process.", limit)
            # Recycled: under a supervisor the others keep serving this socket.
            self.draining = self.sockets_shared
            return True
        return False

    def retire(self) -> None:
        """Stop serving, draining (see ``draining``): called by a supervisor for a worker
        it replaces, from any thread."""
        self.draining = True
        self.should_exit = True

    # -- shutdown ---------------------------------------------------------------------

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        ctx = self._ctx

        # Stop accepting first, so the drain below can finish.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        # In-flight responses finish with connection: close. Idle connections: when the
        # whole server stops, a request already on its way gets a short grace and the rest
        # close; when this process retires (draining), each stays until its next request
        # or its keep-alive timeout. HTTP/2 connections get GOAWAY and finish their streams.
        open_connections = len(ctx.connections) + len(ctx.h2_connections) + len(ctx.websockets)
        if open_connections:
            logger.info(
                "Draining %d connection%s%s",
                open_connections,
                "" if open_connections == 1 else "s",
                " (idle ones until their next request)" if self.draining else "",
            )
        ctx.shutdown(self.draining)
        # WebSockets are closed with 1012 (Service Restart); their apps see the disconnect.
        for websocket in list(ctx.websockets):
            websocket.shutdown()
        try:
            await asyncio.wait_for(self._drain(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:  # asyncio's is the builtin since 3.11
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded",
                ctx.active_requests,
            )
            await self._cancel_requests()
        if self.force_exit:
            await self._cancel_requests()
        else:
            await self.lifespan.shutdown()

    async def _cancel_requests(self) -> None:
        """Cancel the app calls still running, then let them unwind briefly, so their
        500s are written and their log lines come before the lifespan shutdown's."""
        ctx = self._ctx
        ctx.cancel_requests()
        for websocket in list(ctx.websockets):
            websocket.cancel()
        deadline = asyncio.get_running_loop().time() + CANCEL_SETTLE_SECONDS
        while (ctx.active_requests or ctx.websockets) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _drain(self) -> None:
        ctx = self._ctx
        # Accepted just before close(): such a connection joins ctx.connections (and meets
        # ctx.shutdown's rules in connection_made) once its protocol exists.
        for server in self.servers:
            await server.wait_connected(lambda: self.force_exit)
        if ctx.connections or ctx.active_requests or ctx.websockets or ctx.h2_connections:
            # Give connections closed by ctx.shutdown() a moment to report connection_lost,
            # so the message below is only logged when something really is still running.
            await asyncio.sleep(0.1)

        # A WebSocket counts as a connection until its app call has returned too.
        if (ctx.connections or ctx.websockets or ctx.h2_connections) and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while (ctx.connections or ctx.websockets or ctx.h2_connections) and not self.force_exit:
                await asyncio.sleep(0.1)
                ctx.tick(asyncio.get_running_loop().time())  # deadlines still apply

        # An app call can outlive its connection (a client that left mid-request).
        if ctx.active_requests and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while ctx.active_requests and not self.force_exit:
                await asyncio.sleep(0.1)

        if not self.force_exit:
            for server in self.servers:
                await server.wait_closed()

    # -- signals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Python delivers signals to the main thread only; elsewhere (e.g. a test that
        # runs the server in a thread) the embedding code owns shutdown.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # signal.signal rather than loop.add_signal_handler: it returns the previous
        # handler, so it can be put back, and works the same under asyncio and uvloop.
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        # Hand the signals on, newest first, to previous handlers that are Python code
        # (an embedding program's own handler; SIGINT's KeyboardInterrupt, which run()
        # turns into exit 0). Unlike Uvicorn, not to SIG_DFL: the shutdown was graceful,
        # so the process exits 0 instead of dying by the signal (-15 / 143).
        for sig in reversed(self._captured_signals):
            if callable(original[sig]):
                signal.raise_signal(sig)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # second Ctrl+C: stop waiting
        else:
            self.should_exit = True

