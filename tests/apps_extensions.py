"""Apps for tests/test_asgi_extensions.py: the ASGI extensions Palfrey advertises.

Routes of ``app``:
    /files/<name>        Starlette's StaticFiles over $PALFREY_TEST_FILES (pathsend when the
                         server advertises it)
    /zerocopy?name=N&offset=O&count=C&shrink=S
                         http.response.zerocopysend of that file (content-length: count);
                         with shrink=S the file is cut to S bytes first (a file that shrinks
                         while it is sent)
    /hints               103 Early Hints with two Link values, then 200
    /tls                 scope["extensions"] as JSON
    /extensions          the names in scope["extensions"]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs

from starlette.staticfiles import StaticFiles

FILES = Path(os.environ.get("PALFREY_TEST_FILES", "/nonexistent"))
static = StaticFiles(directory=FILES, check_dir=False)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.startswith("/files/"):
        scope = dict(scope, path=path[len("/files"):], root_path="")
        await static(scope, receive, send)
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/zerocopy":
        file_path = FILES / query["name"]
        offset = int(query.get("offset", "0"))
        count = int(query.get("count", str(file_path.stat().st_size - offset)))
        with open(file_path, "rb") as file:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % count)]})
            if "shrink" in query:
                os.truncate(file_path, int(query["shrink"]))
            await send({"type": "http.response.zerocopysend", "file": file, "offset": offset,
                        "count": count})
        return
    if path == "/hints":
        await send({"type": "http.response.early_hint",
                    "links": [b"</style.css>; rel=preload; as=style",
                              b"</script.js>; rel=preload; as=script"]})
        await _json(send, {"ok": True})
        return
    if path == "/tls":
        await _json(send, scope["extensions"])
        return
    await _json(send, sorted(scope.get("extensions", {})))


async def _json(send, value) -> None:
    body = json.dumps(value).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
