"""103 Early Hints, then a file as the response body by http.response.pathsend: each used
only when the server advertises it in scope["extensions"], as the ASGI spec asks."""

from pathlib import Path

PAGE = Path(__file__).resolve()  # the file served: this one


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    extensions = scope.get("extensions") or {}
    if "http.response.early_hint" in extensions:
        # The browser may start fetching the stylesheet before the page arrives.
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(PAGE.stat().st_size).encode()),
            ],
        }
    )
    if "http.response.pathsend" in extensions:
        await send({"type": "http.response.pathsend", "path": str(PAGE)})  # sendfile(2)
    else:
        await send({"type": "http.response.body", "body": PAGE.read_bytes()})
