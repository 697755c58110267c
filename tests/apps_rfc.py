"""Apps for tests/test_http_rfc_musts.py: responses whose framing fields the server must fix.

Routes:
    /?status=N   status N with the app's own content-length: 4 (and a 4-byte body unless
                 the status allows none)
    /coded       200 with the app's own transfer-encoding: chunked, the body in 2 pieces
    /fields?te=V&cl=N...  200 with one transfer-encoding field per te and one content-length
                          field per cl, body "body"
    /odd?status=LITERAL   the status as a Python literal (200.0, "200"), body "body"
"""

from __future__ import annotations

import ast
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
    if scope["path"] in ("/fields", "/odd"):
        if scope["path"] == "/odd":
            status, headers = ast.literal_eval(query["status"][0]), []
        else:
            status, headers = 200, [
                (b"transfer-encoding" if name == "te" else b"content-length", value.encode())
                for name, values in query.items() for value in values
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"body"})
        return
    status = int(query.get("status", ["200"])[0])
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-length", b"4"), (b"x-app", b"yes")],
    })
    await send({"type": "http.response.body", "body": b"" if status in (204, 304) else b"body"})
