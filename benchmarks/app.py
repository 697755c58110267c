"""The one plain-ASGI app every server in the benchmark serves (no framework, no middleware).

Routes:
    GET  /         13 bytes "Hello, world!" with content-length (scenarios hello, pipelined)
    POST /echo     the request body echoed back with content-length (scenario post)
    GET  /stream   100 chunks of 1 KiB, no content-length: chunked (scenario stream)
    WS   any path  a WebSocket echo: each message sent back unchanged (scenarios ws-echo-*)
    anything else  404

The handlers only touch what the ASGI spec guarantees, so the same file runs under Palfrey,
Uvicorn, Granian and Hypercorn.
"""

HELLO = b"Hello, world!"
CHUNK = b"x" * 1024
STREAM_CHUNKS = 100
ECHO_MAX = 1 << 20  # the benchmark posts 16 KiB; refuse anything silly

# Response messages are built once: the benchmark measures the server, not the app.
_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_HELLO_BODY = {"type": "http.response.body", "body": HELLO}
_STREAM_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream")],
}
_STREAM_CHUNK = {"type": "http.response.body", "body": CHUNK, "more_body": True}
_STREAM_END = {"type": "http.response.body", "body": b"", "more_body": False}
_NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
}
_NOT_FOUND_BODY = {"type": "http.response.body", "body": b"Not Found"}


async def hello(scope, receive, send):
    await send(_HELLO_START)
    await send(_HELLO_BODY)


async def echo(scope, receive, send):
    parts = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if body:
            parts.append(body)
            size += len(body)
            if size > ECHO_MAX:
                await send({"type": "http.response.start", "status": 413, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(size).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"".join(parts)})


async def stream(scope, receive, send):
    await send(_STREAM_START)
    for _ in range(STREAM_CHUNKS):
        await send(_STREAM_CHUNK)
    await send(_STREAM_END)


async def not_found(scope, receive, send):
    await send(_NOT_FOUND_START)
    await send(_NOT_FOUND_BODY)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- WebSocket echo (scenario ws-echo) ----------------------------------------------------------
_ACCEPT = {"type": "websocket.accept"}


async def websocket_echo(scope, receive, send):
    """Accept, then send every message back unchanged until the client leaves."""
    await receive()  # websocket.connect
    await send(_ACCEPT)
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})


ROUTES = {
    ("GET", "/"): hello,
    ("POST", "/echo"): echo,
    ("GET", "/stream"): stream,
}


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        handler = ROUTES.get((scope["method"], scope["path"]), not_found)
        await handler(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "websocket":
        await websocket_echo(scope, receive, send)
    else:
        raise RuntimeError(f"unsupported scope type {kind!r}")
