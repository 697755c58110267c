"""ASGI apps for the WebSocket tests (tests/test_websocket*.py), routed on the path.

What the client cannot see (the disconnect code the app received, what send() raised) is
written to stderr as one ``WSAPP ...`` line, which the tests wait for in the server log.
"""

from __future__ import annotations

import asyncio
import json
import sys


def report(text: str) -> None:
    print("WSAPP " + text, file=sys.stderr, flush=True)


async def echo_until_disconnect(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            report(f"disconnect code={message['code']} reason={message.get('reason', '')!r}")
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def ws_echo(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await echo_until_disconnect(receive, send)


async def ws_record(scope, receive, send):
    """Report every message instead of answering it."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            report(f"recorded disconnect code={message['code']}")
            return
        report(f"recorded text={message.get('text')!r} bytes={message.get('bytes')!r}")


async def ws_scope(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    shown = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path", "query_string")}
    shown["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    shown["raw_path"] = scope["raw_path"].decode("latin-1")
    shown["query_string"] = scope["query_string"].decode("latin-1")
    await send({"type": "websocket.send", "text": json.dumps(shown)})
    await echo_until_disconnect(receive, send)


async def ws_subprotocol(scope, receive, send):
    await receive()
    chosen = scope["subprotocols"][-1] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen,
                "headers": [(b"x-extra", b"yes")]})
    await echo_until_disconnect(receive, send)


async def ws_reject(scope, receive, send):
    await receive()
    await send({"type": "websocket.close"})


async def ws_deny(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")]})
    await send({"type": "websocket.http.response.body", "body": b"den", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"ied"})


async def ws_close_code(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
    message = await receive()
    report(f"after close {message['type']} code={message.get('code')}")


async def ws_raise(scope, receive, send):
    raise RuntimeError("boom before accept")


async def ws_send_wrong_type(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "bytes": 10})  # TypeError: not 10 NUL bytes


async def ws_two_senders(scope, receive, send):
    """Two tasks send while the client does not read; cancelling one must not stop the other."""
    await receive()
    await send({"type": "websocket.accept"})
    big = b"x" * (1 << 20)
    in_send = [False, False]

    async def sender(i: int) -> None:
        for _ in range(8):
            in_send[i] = True
            await send({"type": "websocket.send", "bytes": big})
            in_send[i] = False

    first, second = asyncio.ensure_future(sender(0)), asyncio.ensure_future(sender(1))
    # send() suspends only to wait for the transport to drain: both inside it at once means
    # both are waiting. Polled (bounded: 10 s), since the app cannot be told.
    for _ in range(1000):
        if all(in_send):
            break
        await asyncio.sleep(0.01)
    report(f"both senders waiting={all(in_send)}")
    first.cancel()
    try:
        await second
    except asyncio.CancelledError:
        report("second sender cancelled")
    else:
        report("second sender finished")


async def ws_send_after_disconnect(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    report(f"disconnect code={message['code']}")
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except OSError as exc:
        report(f"send raised {type(exc).__name__} OSError={isinstance(exc, OSError)}")
    else:
        report("send did not raise")


async def ws_slow_reader(scope, receive, send):
    """Accepts, then reads nothing until the client sends on a second channel: it is told
    to start by the text message "go" arriving... which it cannot see before reading. So it
    sleeps until the client has measured backpressure, bounded by 10 s, then drains."""
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.sleep(float(dict(_query(scope)).get("sleep", "3")))
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            report(f"slow reader got {count} messages")
            return
        count += 1


def _query(scope):
    for pair in scope["query_string"].decode().split("&"):
        if "=" in pair:
            yield tuple(pair.split("=", 1))


ROUTES = {
    "/echo": ws_echo,
    "/record": ws_record,
    "/send-wrong-type": ws_send_wrong_type,
    "/two-senders": ws_two_senders,
    "/scope": ws_scope,
    "/subprotocol": ws_subprotocol,
    "/reject": ws_reject,
    "/deny": ws_deny,
    "/close-code": ws_close_code,
    "/raise": ws_raise,
    "/send-after-disconnect": ws_send_after_disconnect,
    "/slow": ws_slow_reader,
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = b"plain http " + scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    else:
        route = ROUTES.get(scope["path"], ws_reject)
        await route(scope, receive, send)
