"""Read the request body as it arrives; stream the response without a content-length."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client left: nothing to answer
        size += len(message["body"])
        if not message["more_body"]:
            break
    # No content-length: HTTP/1.1 clients get chunked transfer encoding.
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"received %d bytes\n" % size, "more_body": True})
    await send({"type": "http.response.body", "body": b"done\n"})
