"""``--interface wsgi``: serve a WSGI (PEP 3333) app from a thread pool.

The shape of a2wsgi: the app runs in a worker thread and talks to the event loop one
message at a time, so neither side buffers a whole body:

* ``wsgi.input`` reads the request body as the app asks for it (each read waits on the
  loop's ``receive()``), instead of collecting it all before calling the app;
* each chunk the app yields is sent before the next is asked for (each waits on the
  loop's ``send()``), so a slow client holds back the app, not memory;
* headers go out with the first non-empty chunk (PEP 3333 "start_response"), so an app
  may still replace them with ``exc_info`` until then;
* a client that goes away stops the iteration: the next chunk is not asked for and the
  iterable's ``close()`` is called at once (PEP 3333), instead of running the app to its end.

One loop task per request owns ``receive()``: it reads the body ahead of the app, at most
``BODY_READ_AHEAD`` bytes, and once the body is complete waits for ``http.disconnect``. An app
that streams a response while leaving more than that of an upload unread learns of a
disconnect when it next reads ``wsgi.input``.

Lifespan is acknowledged (a WSGI app has none); WebSocket requests are closed (403).
Request headers whose names contain "_" are dropped: in the environ ``X_Forwarded_For``
and ``X-Forwarded-For`` would both become ``HTTP_X_FORWARDED_FOR`` (header smuggling).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

# A worker thread waiting on the loop re-checks this often whether the loop still runs,
# so a server that stops under a running WSGI call cannot leave the thread stuck.
_POLL_SECONDS = 1.0


class _Disconnected(OSError):
    """The client went away, or the server stopped, while the app was running."""


class _Bridge:
    """Run loop coroutines from the worker thread and wait for their result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.abandoned = False

    def call(self, coro: Any) -> Any:
        if self.abandoned or self.loop.is_closed():
            coro.close()
            raise _Disconnected("the request was abandoned")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        while True:
            try:
                return future.result(_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                if self.abandoned or self.loop.is_closed():
                    future.cancel()
                    raise _Disconnected("the request was abandoned") from None


# How much of the request body the loop reads ahead of what the app asked for (bytes); as
# the core's own high-water mark, so a body the app does not read is not pulled into memory.
BODY_READ_AHEAD = 65536


class _Body:
    """The request body and the client's presence, read by a task on the loop (``pump``) and
    consumed by ``wsgi.input`` in the worker thread."""

    def __init__(self, bridge: _Bridge, receive: Any) -> None:
        self.bridge = bridge
        self.receive = receive
        self.cond = threading.Condition()
        self.buffer = bytearray()  # read from receive(), not yet taken by the app
        self.more = True  # more body to come
        self.disconnected = False  # the client went away (set on the loop)
        self.waiting = False  # the app waits for more than the buffer holds
        self.room = asyncio.Event()  # wakes the pump when it may read again

    async def pump(self) -> None:
        """Runs on the loop for the whole WSGI call (cancelled at its end)."""
        while self.more:
            while len(self.buffer) >= BODY_READ_AHEAD and not self.waiting:
                self.room.clear()
                await self.room.wait()
            message = await self.receive()
            with self.cond:
                if message["type"] == "http.request":
                    self.buffer += message.get("body", b"")
                    self.more = message.get("more_body", False)
                else:
                    self.more = False
                    self.disconnected = True
                self.cond.notify_all()
        # The body is complete: this returns when the client goes, or with the response.
        if not self.disconnected and (await self.receive())["type"] == "http.disconnect":
            self.disconnected = True

    def take(self, wanted: int | None, line: bool = False) -> bytes:
        """In the worker thread: up to ``wanted`` bytes (all, if None), or up to the first
        line end when ``line``; waits for the pump until enough has come or the body ends."""
        with self.cond:
            while self.more and (
                (wanted is None or len(self.buffer) < wanted)
                and not (line and b"\n" in self.buffer)
            ):
                if self.bridge.abandoned or self.bridge.loop.is_closed():
                    raise _Disconnected("the request was abandoned")
                if not self.waiting:  # e.g. a line longer than the read-ahead
                    self.waiting = True
                    self.bridge.loop.call_soon_threadsafe(self.room.set)
                self.cond.wait(_POLL_SECONDS)
            self.waiting = False
            n = len(self.buffer) if wanted is None else min(wanted, len(self.buffer))
            if line:
                end = self.buffer.find(b"\n", 0, n)
                n = n if end == -1 else end + 1
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
            if self.more and len(self.buffer) < BODY_READ_AHEAD:
                self.bridge.loop.call_soon_threadsafe(self.room.set)
            return data


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, as the pump reads it."""

    def __init__(self, body: _Body) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self.body.take(None if size is None or size < 0 else size)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        return self.body.take(None if size is None or size < 0 else size, line=True)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def build_environ(scope: dict, body: Any) -> dict[str, Any]:
    """PEP 3333 environ for an ASGI HTTP scope."""
    script_name = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    path_info = scope["path"].encode("utf-8").decode("latin-1")
    if script_name and path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),  # a string, as PEP 3333 says
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if key in environ:
            # RFC 9110 5.3: repeated fields combine with commas (cookies with "; ").
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


class WSGIMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]], workers: int = 10) -> None:
        self.app = app
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="palfrey-wsgi"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.executor.shutdown(wait=False)
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        bridge = _Bridge(loop)
        body = _Body(bridge, receive)
        environ = build_environ(scope, _Input(body))
        pump = loop.create_task(body.pump())
        try:
            await loop.run_in_executor(
                self.executor, _Responder(self.app, bridge, body, send), environ
            )
        finally:
            # A cancelled call (shutdown timeout) lets its thread go at the next wait.
            bridge.abandoned = True
            pump.cancel()


class _Responder:
    """One WSGI call, in the worker thread."""

    def __init__(self, app: Any, bridge: _Bridge, body: _Body, send: Any) -> None:
        self.app = app
        self.bridge = bridge
        self.body = body
        self.send = send
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a reference cycle
        elif self.status is not None:
            raise RuntimeError("start_response() called twice without exc_info")
        code = status.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit():
            raise ValueError(f"Invalid WSGI status {status!r}")
        self.status = int(code)
        self.headers = [
            (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
            for name, value in headers
        ]
        return self.write

    def _send_headers(self) -> None:
        if self.status is None:
            raise RuntimeError("The WSGI app did not call start_response()")
        self.headers_sent = True
        self.bridge.call(
            self.send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
        )

    def write(self, data: bytes) -> None:
        if self.body.disconnected:
            raise _Disconnected("the client went away")
        if not data:
            return
        if not self.headers_sent:
            self._send_headers()
        self.bridge.call(
            self.send({"type": "http.response.body", "body": bytes(data), "more_body": True})
        )

    def __call__(self, environ: dict[str, Any]) -> None:
        try:
            self._respond(environ)
        except _Disconnected:
            pass  # the client is gone, or the server stopped: nobody to answer, nothing to log

    def _respond(self, environ: dict[str, Any]) -> None:
        result = self.app(environ, self.start_response)
        try:
            for chunk in result:
                self.write(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not self.headers_sent:
            self._send_headers()
        self.bridge.call(self.send({"type": "http.response.body", "body": b"", "more_body": False}))
