"""Apps for the configuration tests (lifespan modes, interfaces, environment, contextvars)."""

from __future__ import annotations

import contextvars
import json
import os
import sys
import time

from tests.apps import respond, respond_json, scope_app  # noqa: F401  (re-exported)

LIFESPAN_CALLS: list[str] = []
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")
# Set at import, in the main context: request tasks inherit it, unless the server runs each
# request in a fresh context (--reset-contextvars).
VAR.set("from-import")


async def raise_on_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("boom in startup")
    await respond(send, 200, b"ok")


async def startup_failed(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await respond(send, 200, b"ok")


async def record_lifespan(scope, receive, send):
    """Reports which scope types it has seen, and the request's state."""
    LIFESPAN_CALLS.append(scope["type"])
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                scope["state"]["counter"] = 0
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    state = scope.get("state", {})
    data = {"seen": sorted(set(LIFESPAN_CALLS)), "state": dict(state), "var": VAR.get()}
    state["counter"] = state.get("counter", 0) + 1  # must not leak into the next request
    await respond_json(send, data)


async def env_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await respond_json(send, {"value": os.environ.get("PALFREY_TEST_FROM_ENV_FILE")})


def asgi2_app(scope):
    async def instance(receive, send):
        await respond(send, 200, ("asgi2 " + scope["path"]).encode())

    return instance


class Tracked:
    """A WSGI response iterable that logs (stderr) how many chunks it gave and when its
    close() is called: ``wsgi-close NAME after N chunks``. ``fail_at`` raises at that chunk."""

    def __init__(self, name: str, count: int, interval: float = 0.0, fail_at: int = -1) -> None:
        self.name, self.count, self.interval, self.fail_at = name, count, interval, fail_at
        self.given = 0

    def __iter__(self):
        for i in range(self.count):
            if i == self.fail_at:
                raise RuntimeError(f"wsgi {self.name} failed at chunk {i}")
            if i and self.interval:
                time.sleep(self.interval)
            self.given += 1
            yield b"chunk%d;" % i

    def close(self) -> None:
        print(f"wsgi-close {self.name} after {self.given} chunks", file=sys.stderr, flush=True)


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("stream", 5)
    if path == "/drip":  # a chunk every 0.5 s for 20 s
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("drip", 40, interval=0.5)
    if path == "/fail-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("fail-mid", 5, fail_at=2)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        body = json.dumps([line.decode() for line in lines]).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/error":
        raise RuntimeError("wsgi boom")
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
            "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "CONTENT_TYPE", "HTTP_X_CUSTOM",
            "HTTP_X_SMUGGLED", "wsgi.url_scheme")
    data = {k: environ.get(k) for k in keys}
    body = json.dumps(data).encode()
    start_response("201 Created", [("Content-Type", "application/json"),
                                   ("Content-Length", str(len(body)))])
    return [body]
