"""The app of the getting-started guide: every HTTP request gets a greeting."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # this app has nothing to do at startup and no WebSocket routes
    body = b"Hello, world!"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
