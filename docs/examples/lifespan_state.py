"""Lifespan: set up once at startup, share it with every request through scope["state"]."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "Hello from the lifespan"  # e.g. a database pool
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                scope["state"].clear()  # close what startup opened
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = scope["state"]["greeting"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
