"""Apps for the hardening tests (differential parsing, slowloris, soak, shutdown, leaks).

``app`` routes on the path:

    /echo            the request as JSON: method, target, version, headers, body (latin-1)
    /slow?t=S        sleeps S seconds, then answers 200 with a fixed 64-byte body
    /stream?n=N      N chunks of 1 KiB, each after a loop pass (chunked response)
    /upload          reads the whole body, answers its length
    /debug           live counts of the server's own objects (see ``debug_counts``)
    anything else    200 `ok`

WebSocket requests (any path) are accepted and echoed until the client closes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from urllib.parse import parse_qs

SLOW_BODY = b"s" * 63 + b"\n"


def target_of(scope) -> str:
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    return target.decode("latin-1")


async def read_all(receive) -> tuple[bytes, bool]:
    """The whole request body, and whether the client vanished before its end."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body), True
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), False


async def answer(send, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _count_instances(type_names: set[str]) -> dict[str, int]:
    counts = dict.fromkeys(type_names, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts and type(obj).__module__.startswith("palfrey"):
            counts[name] += 1
    return counts


def debug_counts() -> dict[str, int]:
    """What a vanished client could leave behind: connections and request cycles of the
    compiled core, asyncio tasks, open file descriptors and resident memory."""
    gc.collect()
    counts = _count_instances({"HttpProtocol", "RequestCycle", "WebSocketProtocol"})
    counts["tasks"] = len(asyncio.all_tasks())
    counts["fds"] = len(os.listdir("/proc/self/fd"))
    with open("/proc/self/statm") as statm:
        counts["rss_kib"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return counts


async def r_echo(scope, receive, send, q):
    body, _ = await read_all(receive)
    data = {
        "method": scope["method"],
        "target": target_of(scope),
        "http_version": scope["http_version"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }
    await answer(send, json.dumps(data).encode(), b"application/json")


async def r_slow(scope, receive, send, q):
    await read_all(receive)
    await asyncio.sleep(float(q.get("t", "1")))
    await answer(send, SLOW_BODY)


async def r_stream(scope, receive, send, q):
    await read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(int(q.get("n", "16"))):
        await send({"type": "http.response.body", "body": b"%04d" % i + b"x" * 1020,
                    "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def r_upload(scope, receive, send, q):
    body, _ = await read_all(receive)
    await answer(send, b"%d" % len(body))


async def r_debug(scope, receive, send, q):
    await read_all(receive)
    # This request's own task and cycle are alive while it runs: report them as such.
    await answer(send, json.dumps(debug_counts()).encode(), b"application/json")


async def r_ok(scope, receive, send, q):
    await read_all(receive)
    await answer(send, b"ok")


ROUTES = {"/echo": r_echo, "/slow": r_slow, "/stream": r_stream, "/upload": r_upload,
          "/debug": r_debug}


async def ws_echo(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": message.get("bytes"),
                        "text": message.get("text")})  # fmt: skip
        else:
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        return await ws_echo(scope, receive, send)
    qs = parse_qs(scope["query_string"].decode("latin-1"))
    q = {k: v[-1] for k, v in qs.items()}
    await ROUTES.get(scope["path"], r_ok)(scope, receive, send, q)


async def echo(scope, receive, send):
    """Every path is /echo: for the differential corpus, whose targets vary."""
    if scope["type"] == "lifespan":
        return await app(scope, receive, send)
    await r_echo(scope, receive, send, {})
