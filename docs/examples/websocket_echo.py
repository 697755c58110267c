"""A WebSocket echo at /echo; any other path is refused (403) by closing before accepting."""


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    if scope["path"] != "/echo":
        await send({"type": "websocket.close"})  # before accept: the client gets 403
        return
    await receive()  # {"type": "websocket.connect"}
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return  # message["code"]: 1000 normal, 1001 going away, 1012 server restart...
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
