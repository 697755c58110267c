"""``--interface wsgi``: serve a WSGI (PEP 3333) app from a thread pool.

The shape of a2wsgi: the app runs in a worker thread and talks to the event loop one
message at a time, so neither side buffers a whole body:

* ``wsgi.input`` reads the request body as the app asks for it (each read waits on the
  loop's ``receive()``), instead of collecting it all before calling the app;
* each chunk the app yields is sent before the next is asked for (each waits on the
  loop's ``send()``), so a slow client holds back the app, not memory;
* headers go out with the first non-empty chunk (PEP 3333 "start_response"), so an app
  may still replace them with ``exc_info`` until then.

Lifespan is acknowledged (a WSGI app has none); WebSocket requests are closed (403).
Request headers whose names contain "_" are dropped: in the environ ``X_Forwarded_For``
and ``X-Forwarded-For`` would both become ``HTTP_X_FORWARDED_FOR`` (header smuggling).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import sys
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


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, read from ``receive()`` on demand."""

    def __init__(self, bridge: _Bridge, receive: Any) -> None:
        self.bridge = bridge
        self.receive = receive
        self.buffer = bytearray()
        self.more = True

    def readable(self) -> bool:
        return True

    def _fill(self, wanted: int | None) -> None:
        while self.more and (wanted is None or len(self.buffer) < wanted):
            message = self.bridge.call(self.receive())
            if message["type"] != "http.request":  # http.disconnect
                self.more = False
                break
            self.buffer += message.get("body", b"")
            self.more = message.get("more_body", False)

    def _take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(None)
            return self._take(len(self.buffer))
        self._fill(size)
        return self._take(size)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        while (
            self.more
            and b"\n" not in self.buffer
            and (size is None or size < 0 or len(self.buffer) < size)
        ):
            self._fill(len(self.buffer) + 1)
        end = self.buffer.find(b"\n")
        n = len(self.buffer) if end == -1 else end + 1
        if size is not None and size >= 0:
            n = min(n, size)
        return self._take(n)

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
        environ = build_environ(scope, _Input(bridge, receive))
        try:
            await loop.run_in_executor(self.executor, _Responder(self.app, bridge, send), environ)
        finally:
            # A cancelled call (shutdown timeout) lets its thread go at the next wait.
            bridge.abandoned = True


class _Responder:
    """One WSGI call, in the worker thread."""

    def __init__(self, app: Any, bridge: _Bridge, send: Any) -> None:
        self.app = app
        self.bridge = bridge
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
        if not data:
            return
        if not self.headers_sent:
            self._send_headers()
        self.bridge.call(
            self.send({"type": "http.response.body", "body": bytes(data), "more_body": True})
        )

    def __call__(self, environ: dict[str, Any]) -> None:
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
