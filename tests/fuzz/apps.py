"""What the HTTP fuzz targets run: the fuzz app behind small limits, in the in-process harness."""

from __future__ import annotations

import json
from typing import Any

from tests.support.harness import Harness

# Small limits, so that random inputs reach the 413/414/431 paths as well.
LIMITS = {
    "limit_header_size": 2048,
    "limit_header_line_size": 512,
    "limit_header_count": 20,
    "limit_target_size": 256,
    "limit_body_size": 1024,
}


async def fuzz_app(scope, receive, send) -> None:
    """Echo app with a few shapes chosen by the path's second byte, all deterministic."""
    kind = scope["raw_path"][1:2]
    if kind == b"e":
        raise RuntimeError("fuzz app error")  # -> 500, or a close once started
    body = bytearray()
    if kind != b"n":  # /n answers without reading the body
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
    data = json.dumps(
        {
            "m": scope["method"],
            "p": scope["raw_path"].decode("latin-1"),
            "q": scope["query_string"].decode("latin-1"),
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "b": body.decode("latin-1"),
        }
    ).encode()
    if kind == b"s":  # chunked, in pieces
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(0, len(data), 64):
            await send({"type": "http.response.body", "body": data[i : i + 64], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def new_driver(app: Any = fuzz_app) -> Harness:
    """``app`` (the fuzz app by default) behind the small limits, as nothing but the core sees
    it (no proxy-headers middleware); the access log is not built."""
    return Harness(app, proxy_headers=False, **LIMITS)
