"""A small ASGI app to try Palfrey with: ``palfrey palfrey.demo:app``.

  GET  /        -> ``Hello from Palfrey!`` (text/plain)
  POST /echo    -> the request body, back (same content-type, else octet-stream)
  GET  /stream  -> 10 chunks, streamed (chunked transfer encoding)
  WS   /ws      -> a WebSocket echo: text and binary messages come back unchanged
  anything else -> 404

HEAD is answered wherever GET is (RFC 9110 section 9.3.2); the server drops the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

STREAM_CHUNKS = 10


async def app(scope: dict, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
    elif kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)


async def _websocket(scope: dict, receive: Receive, send: Send) -> None:
    if scope["path"] != "/ws":
        # No WebSocket route: closing before accept is answered with 403.
        await send({"type": "websocket.close"})
        return
    # An echo: every text or binary message goes back unchanged.
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _http(scope: dict, receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    if path == "/" and method in ("GET", "HEAD"):
        await _respond(send, 200, b"Hello from Palfrey!", b"text/plain; charset=utf-8")
    elif path == "/echo" and method == "POST":
        body = await _read_body(receive)
        content_type = _header(scope, b"content-type") or b"application/octet-stream"
        await _respond(send, 200, body, content_type)
    elif path == "/stream" and method in ("GET", "HEAD"):
        await _stream(send)
    else:
        await _respond(send, 404, b"Not Found", b"text/plain; charset=utf-8")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send) -> None:
    # No content-length: the server frames the body with chunked encoding.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    for i in range(1, STREAM_CHUNKS + 1):
        await send(
            {
                "type": "http.response.body",
                "body": b"chunk %d\n" % i,
                "more_body": i < STREAM_CHUNKS,
            }
        )


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _header(scope: dict, name: bytes) -> Any:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None
