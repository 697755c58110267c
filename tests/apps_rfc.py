"""Apps for tests/test_http_rfc_musts.py: responses whose framing fields the server must fix.

Routes:
    /?status=N   status N with the app's own content-length: 4 (and a 4-byte body unless
                 the status allows none)
    /coded       200 with the app's own transfer-encoding: chunked, the body in 2 pieces
"""

from __future__ import annotations

from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/coded":
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"transfer-encoding", b"chunked")],
        })
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await send({"type": "http.response.body", "body": b"second"})
        return
    status = int(query.get("status", ["200"])[0])
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-length", b"4"), (b"x-app", b"yes")],
    })
    await send({"type": "http.response.body", "body": b"" if status in (204, 304) else b"body"})
