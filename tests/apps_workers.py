"""Apps for the worker and reload tests: each response names the process that served it.

Routes of ``app``:
    /            the worker's pid
    /slow?s=N    logs ``SLOW-BEGIN <pid>`` (stderr), sleeps N seconds (without blocking
                 the loop), then answers the pid
    /block?s=N   blocks the event loop for N seconds (a hung worker), then answers the pid
    /post        reads the request body, then answers the pid and the body's length
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs


def _seconds(scope) -> float:
    qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return float(qs.get("s", ["0"])[-1])


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: unsupported, the server carries on
    path = scope["path"]
    if path == "/slow":
        # One write(2): lines from several workers share the pipe and must not interleave.
        os.write(2, f"SLOW-BEGIN {os.getpid()}\n".encode())
        await asyncio.sleep(_seconds(scope))
    elif path == "/block":
        time.sleep(_seconds(scope))  # noqa: ASYNC251  (a hung worker, on purpose)
    body = str(os.getpid()).encode()
    if path == "/post":
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body += b" %d" % size
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
