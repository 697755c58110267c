"""Answers with what the app is told about the client: its address and the scheme."""


async def app(scope, receive, send):
    client = scope["client"][0] if scope["client"] else "-"
    answer = f"client={client} scheme={scope['scheme']}\n"
    if scope["type"] == "http":
        body = answer.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": answer})
        await send({"type": "websocket.close"})
