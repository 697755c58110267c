"""ASGI apps for the HTTP/2 tests (tests/test_http2_*.py).

``app`` answers the paths below and hands every other HTTP path to ``tests.apps.app`` (hello,
scope, echo, big, stream, flood, hold, disconnect, report...), WebSocket scopes to
``tests.ws_apps.app`` and lifespan to ``tests.apps``. What the client cannot see is recorded
in ``tests.apps.STATE`` and read back with ``/report?id=X``.
"""

from __future__ import annotations

import asyncio
import struct
import time

from tests import apps, ws_apps
from tests.apps import STATE, query, read_body, respond


async def r_sleep(scope, receive, send, q):
    """Sleeps ``t`` seconds; records when it started and ended (monotonic clock of the
    server process) under ``id``."""
    rid = q["id"]
    STATE[rid] = {"start": time.monotonic(), "end": None}
    await asyncio.sleep(float(q.get("t", "1")))
    STATE[rid]["end"] = time.monotonic()
    await respond(send, 200, b"slept " + rid.encode())


def grpc_message(payload: bytes) -> bytes:
    """gRPC length-prefixed message: compressed flag (0), 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(payload)) + payload


async def r_grpc(scope, receive, send, q):
    """A unary gRPC-style method: echoes the request's message with "echo:" in front and
    ends with trailers ``grpc-status: 0`` (http.response.trailers extension)."""
    body, _ = await read_body(receive)
    payload = body[5:] if len(body) >= 5 else body
    STATE["grpc"] = {"extensions": sorted(scope.get("extensions") or {}),
                     "te": [v.decode("latin-1") for k, v in scope["headers"] if k == b"te"]}
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"application/grpc")]})
    await send({"type": "http.response.body", "body": grpc_message(b"echo:" + payload),
                "more_body": False})
    await send({"type": "http.response.trailers", "more_trailers": False,
                "headers": [(b"grpc-status", b"0"), (b"grpc-message", b"OK")]})


async def r_conn_headers(scope, receive, send, q):
    """Connection-specific response fields (RFC 9113 8.2.2) next to an ordinary one."""
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", b"2"),
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"identity"),
        (b"upgrade", b"h2c"),
        (b"x-kept", b"yes"),
    ]})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def r_bodyless(scope, receive, send, q):
    """``code`` with a content-length and a body the server must not send on HEAD, 204
    and 304 (on 204 the content-length must go too, RFC 9110 8.6)."""
    code = int(q.get("code", "200"))
    body = b"must-not-be-sent"
    headers = [(b"content-type", b"text/plain")]
    if code != 204:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def r_upload(scope, receive, send, q):
    """Sleeps ``t`` seconds before reading (the client's window must close meanwhile), then
    records each receive()'s size and answers the total and the sha256."""
    import hashlib

    await asyncio.sleep(float(q.get("t", "1")))
    digest = hashlib.sha256()
    sizes = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        sizes.append(len(chunk))
        digest.update(chunk)
        if not message.get("more_body", False):
            break
    await apps.respond_json(send, {"total": sum(sizes), "max": max(sizes or [0]),
                                   "reads": len(sizes), "sha256": digest.hexdigest()})


ROUTES = {
    "/sleep": r_sleep,
    "/grpc": r_grpc,
    "/palfrey.Echo/Say": r_grpc,  # as a gRPC client names a method
    "/conn-headers": r_conn_headers,
    "/bodyless": r_bodyless,
    "/upload": r_upload,
}


async def app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await ws_apps.app(scope, receive, send)
        return
    if scope["type"] == "http":
        handler = ROUTES.get(scope["path"])
        if handler is None and scope["path"].startswith("/scope/"):
            handler = apps.r_scope
        if handler is not None:
            await handler(scope, receive, send, query(scope))
            return
    await apps.app(scope, receive, send)
