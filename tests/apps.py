"""Small ASGI apps for the black-box tests.

``app`` is a router on the request path (with ``root_path`` stripped); the other names are
single-purpose apps. Apps that observe something the client cannot see on the wire record it
in ``STATE`` (keyed by the ``id`` query parameter) and ``/report?id=X`` returns it as JSON;
given an ``id``, /slow and /body-info also write ``APP ...`` lines on stderr (``note``) for a
test to wait on (``server.wait_for_log``), where a request to /report could not get through.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import time
from urllib.parse import parse_qs


class ArgsFormatter(logging.Formatter):
    """For a --log-config test: shows the logger name and the raw record args."""

    def format(self, record: logging.LogRecord) -> str:
        return f"ARGS {record.name} {record.args!r}"


# Side channel: what an earlier request's app observed.
STATE: dict[str, dict] = {}


def note(text: str) -> None:
    """``APP <text>`` on stderr, in one write: lines of concurrent requests never interleave."""
    os.write(2, f"APP {text}\n".encode())


def jsonable(value):
    """Scope values as JSON: bytes become latin-1 strings, tuples become lists."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def scope_types(scope) -> dict:
    types = {k: type(v).__name__ for k, v in scope.items()}
    headers = scope.get("headers")
    if headers is not None:
        types["headers.items"] = sorted({type(h).__name__ for h in headers})
        types["headers.parts"] = sorted({type(p).__name__ for h in headers for p in h})
    return types


def query(scope) -> dict[str, str]:
    qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[-1] for k, v in qs.items()}


async def read_body(receive) -> tuple[bytes, int]:
    body = bytearray()
    messages = 0
    while True:
        message = await receive()
        messages += 1
        if message["type"] == "http.disconnect":
            # Client gone (or the server refused the rest of the body): stop reading.
            return bytes(body), messages
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), messages


async def respond(
    send,
    status: int = 200,
    body: bytes = b"",
    content_type: bytes = b"text/plain",
    headers: list | None = None,
    content_length: bool = True,
) -> None:
    hdrs = [(b"content-type", content_type)]
    if content_length:
        hdrs.append((b"content-length", str(len(body)).encode()))
    hdrs += headers or []
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def respond_json(send, data, status: int = 200, headers: list | None = None) -> None:
    await respond(send, status, json.dumps(data).encode(), b"application/json", headers)


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["lifespan"] = "started"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --------------------------------------------------------------------------------------------
# Route handlers: (scope, receive, send, q) where q is the parsed query string.
# --------------------------------------------------------------------------------------------


async def r_hello(scope, receive, send, q):
    await respond(send, 200, b"Hello, world!")


async def r_echo_path(scope, receive, send, q):
    # The path (and query) the server gave us, for pipelining/order checks.
    body = scope["path"].encode("utf-8")
    if scope["query_string"]:
        body += b"?" + scope["query_string"]
    await respond(send, 200, body)


async def r_scope(scope, receive, send, q):
    body, _ = await read_body(receive)
    data = jsonable({k: v for k, v in scope.items()})
    data["_types"] = scope_types(scope)
    data["_body"] = body.decode("latin-1")
    # Mutating the state must not leak into later requests (shallow copy per request).
    if isinstance(scope.get("state"), dict):
        scope["state"]["mutated_by_request"] = True
    await respond_json(send, data)


async def r_echo(scope, receive, send, q):
    body, _ = await read_body(receive)
    await respond(send, 200, body, b"application/octet-stream")


async def r_body_info(scope, receive, send, q):
    h = hashlib.sha256()
    length = 0
    messages = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            messages.append({"type": message["type"]})
            break
        chunk = message.get("body", b"")
        h.update(chunk)
        length += len(chunk)
        messages.append(
            {
                "type": message["type"],
                "len": len(chunk),
                "more_body": message.get("more_body", False),
                "body_type": type(chunk).__name__,
            }
        )
        if q.get("id") and len(messages) == 1:
            note(f"body-info {q['id']} received {length}")
        if not message.get("more_body", False):
            break
        if q.get("delay"):
            await asyncio.sleep(float(q["delay"]))
    await respond_json(send, {"length": length, "sha256": h.hexdigest(), "messages": messages})


async def r_stream(scope, receive, send, q):
    # No content-length: chunked on HTTP/1.1. An empty more_body=True message in the
    # middle must not terminate the chunked body.
    n = int(q.get("n", "5"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for i in range(n):
        await send({"type": "http.response.body", "body": b"chunk-%d\n" % i, "more_body": True})
        if i == 1:
            await send({"type": "http.response.body", "body": b"", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def r_no_cl(scope, receive, send, q):
    # No content-length, two body messages.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world", "more_body": False})


async def r_big(scope, receive, send, q):
    # A large response body in several sends, with content-length.
    size = int(q.get("size", str(1 << 20)))
    block = bytes(range(256)) * 256  # 64 KiB
    data = (block * (size // len(block) + 1))[:size]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    for i in range(0, size, 100_000):
        await send({"type": "http.response.body", "body": data[i : i + 100_000], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def r_status(scope, receive, send, q):
    code = int(q.get("code", "200"))
    await send({"type": "http.response.start", "status": code, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def r_headers_out(scope, receive, send, q):
    await respond(
        send,
        200,
        b"ok",
        headers=[
            (b"X-Mixed-Case", b"Value With Spaces"),
            (b"x-dup", b"one"),
            (b"x-dup", b"two"),
            (b"x-tab", b"a\tb"),
            (b"x-latin", b"caf\xe9 \x80"),
        ],
    )


async def r_odd(scope, receive, send, q):
    # Legal but unusual message shapes.
    kind = q["kind"]
    if kind == "minimal":
        # No "headers" key, body messages without "body"/"more_body" keys.
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})
    elif kind == "list-headers":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [[b"content-length", b"2"], [b"x-list", b"yes"]],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif kind == "bytearray-body":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]}
        )
        await send({"type": "http.response.body", "body": bytearray(b"abc"), "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
    elif kind == "many-headers":
        # A ~1 MB response head: the output buffer has to grow.
        headers = [(b"x-h%d" % i, bytes([97 + i % 26]) * 500) for i in range(2000)]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"2"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
    elif kind == "big-chunked":
        # Large chunks without content-length: chunk framing of 100 000-byte pieces.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(20):
            await send(
                {"type": "http.response.body", "body": bytes([65 + i]) * 100_000, "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif kind == "empty-cl":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})


BAD_FRAMING = {
    # kind: (status, headers, body)
    "cl-not-a-number": (200, [(b"content-length", b"abc")], b"abc"),
    "cl-negative": (200, [(b"content-length", b"-1")], b""),
    "cl-two-values": (200, [(b"content-length", b"3"), (b"content-length", b"5")], b"abc"),
    "cl-and-te": (200, [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")], b"abc"),
    "cl-and-te-gzip": (200, [(b"content-length", b"3"), (b"transfer-encoding", b"gzip")], b"abc"),
    "body-on-204": (204, [], b"abc"),
    "body-on-304": (304, [], b"abc"),
}


async def r_bad_framing(scope, receive, send, q):
    status, headers, body = BAD_FRAMING[q["kind"]]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except Exception as exc:
        STATE[q.get("id", q["kind"])] = {"error": type(exc).__name__, "message": str(exc)}
        raise
    STATE[q.get("id", q["kind"])] = {"error": None}


async def r_resp_headers(scope, receive, send, q):
    # Response headers straight from the query string: /resp-headers?Name=value&...
    from urllib.parse import parse_qsl

    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def r_app_chunked(scope, receive, send, q):
    # The app itself declares transfer-encoding: chunked; the server frames it once.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"transfer-encoding", b"chunked")],
        }
    )
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await send({"type": "http.response.body", "body": b"def", "more_body": False})


async def r_server_header(scope, receive, send, q):
    await respond(send, 200, b"ok", headers=[(b"server", b"my-app/1.0")])


async def r_connection_close(scope, receive, send, q):
    await respond(send, 200, b"closing", headers=[(b"connection", b"close")])


async def r_slow(scope, receive, send, q):
    t = float(q.get("t", "1"))
    rid = q.get("id")
    if rid:
        STATE[rid] = {"started": time.time()}
        note(f"slow {rid} started")
    try:
        await asyncio.sleep(t)
        await respond(send, 200, b"slow done")
    finally:
        if rid:
            note(f"slow {rid} finished")


async def r_raise_before(scope, receive, send, q):
    raise ValueError("boom-before-start")


async def r_raise_after(scope, receive, send, q):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("boom-after-start")


async def r_return_without_response(scope, receive, send, q):
    return None


async def r_return_incomplete(scope, receive, send, q):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def r_return_value(scope, receive, send, q):
    await respond(send, 200, b"ok")
    return 42


async def r_cl_too_long(scope, receive, send, q):
    # Declares 10 bytes, sends 5.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"12345", "more_body": False})


async def r_cl_too_short(scope, receive, send, q):
    # Declares 3 bytes, sends 10.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]}
    )
    await send({"type": "http.response.body", "body": b"1234567890", "more_body": False})


BAD_HEADERS = {
    "value-crlf": (b"x-test", b"ok\r\ninjected: yes"),
    "value-lf": (b"x-test", b"ok\ninjected: yes"),
    "value-cr": (b"x-test", b"ok\rinjected: yes"),
    "value-nul": (b"x-test", b"ok\x00injected: yes"),
    "name-space": (b"injected yes", b"v"),
    "name-colon": (b"injected:yes", b"v"),
    "name-crlf": (b"x\r\ninjected: yes", b"v"),
    "name-empty": (b"", b"injected-empty-name"),
    "name-nonascii": (b"injected-\xe9", b"v"),
}


async def r_bad_header(scope, receive, send, q):
    kind = q["kind"]
    name, value = BAD_HEADERS[kind]
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"2"), (name, value)],
            }
        )
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
    except Exception as exc:
        STATE[q.get("id", kind)] = {"error": type(exc).__name__, "message": str(exc)}
        raise
    STATE[q.get("id", kind)] = {"error": None}


async def r_expect_read(scope, receive, send, q):
    # Reads the body before starting the response: a 100 Continue is due.
    body, _ = await read_body(receive)
    await respond(send, 200, b"got:" + body)


async def r_expect_noread(scope, receive, send, q):
    # Answers without reading: no 100 Continue.
    await respond(send, 200, b"no read")


async def r_disconnect(scope, receive, send, q):
    # Read the body, then wait for the client to go away; then try to send (must be a no-op).
    rid = q["id"]
    body, _ = await read_body(receive)
    STATE[rid] = {"body": body.decode("latin-1"), "phase": "waiting"}
    try:
        message = await asyncio.wait_for(receive(), timeout=float(q.get("timeout", "10")))
    except TimeoutError:
        STATE[rid] = {"body": body.decode("latin-1"), "message": None, "phase": "timeout"}
        return
    send_error = None
    try:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
    except Exception as exc:  # noqa: BLE001 - recorded for the test
        send_error = f"{type(exc).__name__}: {exc}"
    STATE[rid] = {
        "body": body.decode("latin-1"),
        "message": jsonable(message),
        "send_error": send_error,
        "phase": "done",
    }


async def r_receive_after_response(scope, receive, send, q):
    # After the response is complete, receive() must report http.disconnect (not hang).
    rid = q["id"]
    await read_body(receive)
    await respond(send, 200, b"done")
    try:
        message = await asyncio.wait_for(receive(), timeout=5)
        STATE[rid] = {"message": jsonable(message)}
    except TimeoutError:
        STATE[rid] = {"message": None}


async def r_order(scope, receive, send, q):
    # Bad message order must raise RuntimeError inside the app.
    kind = q["kind"]
    rid = q.get("id", kind)
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    body = {"type": "http.response.body", "body": b"ok", "more_body": False}
    try:
        if kind == "body-before-start":
            await send(body)
        elif kind == "two-starts":
            await send(start)
            await send(start)
        elif kind == "after-complete":
            await send(start)
            await send(body)
            await send(body)
        elif kind == "unknown-type":
            await send({"type": "http.response.bogus"})
    except Exception as exc:
        STATE[rid] = {"error": type(exc).__name__, "message": str(exc)}
        if kind == "after-complete":
            return
        raise
    STATE[rid] = {"error": None}


async def r_hold(scope, receive, send, q):
    # Sleep before reading: the server must stop reading the socket meanwhile (bounded
    # buffering), so the first message after the nap is small.
    await asyncio.sleep(float(q.get("t", "1")))
    sizes = []
    h = hashlib.sha256()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        sizes.append(len(message.get("body", b"")))
        h.update(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await respond_json(
        send,
        {
            "first": sizes[0] if sizes else None,
            "max": max(sizes or [0]),
            "total": sum(sizes),
            "sha256": h.hexdigest(),
        },
    )


async def r_flood(scope, receive, send, q):
    # Writes many MiB as fast as send() lets it; records progress in STATE so the test can
    # see whether send() waits while the client is not reading.
    rid = q["id"]
    mib = int(q.get("mib", "48"))
    block = b"f" * (1 << 20)
    STATE[rid] = {"sent": 0, "done": False}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(mib << 20).encode())],
        }
    )
    for i in range(mib):
        await send({"type": "http.response.body", "body": block, "more_body": i < mib - 1})
        STATE[rid] = {"sent": (i + 1) << 20, "done": i == mib - 1}


REQUEST_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_var", default=None
)


async def r_context(scope, receive, send, q):
    # Task semantics frameworks rely on: a current task, the same one across awaits, and
    # contextvars isolated per request.
    task = asyncio.current_task()
    seen = REQUEST_VAR.get()
    REQUEST_VAR.set(q.get("set", "x"))
    await asyncio.sleep(0)
    same_task = asyncio.current_task() is task
    await respond_json(
        send,
        {
            "has_task": task is not None,
            "same_task": same_task,
            "seen": seen,
            "var_now": REQUEST_VAR.get(),
        },
    )


async def r_anyio_stream(scope, receive, send, q):
    # Starlette's StreamingResponse pattern: one task streams, another waits for disconnect,
    # inside an anyio task group and cancel scope.
    import anyio

    n = int(q.get("n", "5"))

    async def listen_for_disconnect(tg) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        tg.cancel_scope.cancel()

    async def stream(tg) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i in range(n):
            await send({"type": "http.response.body", "body": b"part-%d;" % i, "more_body": True})
            await anyio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        tg.cancel_scope.cancel()

    with anyio.move_on_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen_for_disconnect, tg)
            await stream(tg)


async def r_report(scope, receive, send, q):
    await respond_json(send, STATE.get(q["id"]))


async def r_state(scope, receive, send, q):
    await respond_json(send, jsonable(dict(scope.get("state", {}))))


ROUTES = {
    "/": r_hello,
    "/hello": r_hello,
    "/scope": r_scope,
    "/echo": r_echo,
    "/body-info": r_body_info,
    "/stream": r_stream,
    "/no-cl": r_no_cl,
    "/big": r_big,
    "/status": r_status,
    "/headers-out": r_headers_out,
    "/server-header": r_server_header,
    "/app-chunked": r_app_chunked,
    "/odd": r_odd,
    "/resp-headers": r_resp_headers,
    "/bad-framing": r_bad_framing,
    "/connection-close": r_connection_close,
    "/slow": r_slow,
    "/raise-before": r_raise_before,
    "/raise-after": r_raise_after,
    "/return-without-response": r_return_without_response,
    "/return-incomplete": r_return_incomplete,
    "/return-value": r_return_value,
    "/cl-too-long": r_cl_too_long,
    "/cl-too-short": r_cl_too_short,
    "/bad-header": r_bad_header,
    "/expect-read": r_expect_read,
    "/expect-noread": r_expect_noread,
    "/disconnect": r_disconnect,
    "/receive-after-response": r_receive_after_response,
    "/order": r_order,
    "/report": r_report,
    "/context": r_context,
    "/anyio-stream": r_anyio_stream,
    "/hold": r_hold,
    "/flood": r_flood,
    "/state": r_state,
}


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if path.startswith("/echo-path"):
        handler = r_echo_path
    else:
        handler = ROUTES.get(path)
    if handler is None:
        await respond(send, 404, b"not found: " + path.encode("utf-8"))
        return
    return await handler(scope, receive, send, query(scope))


async def hello(scope, receive, send) -> None:
    """Plain hello world; no lifespan support (exercises lifespan 'auto')."""
    if scope["type"] != "http":
        raise RuntimeError("http only")
    await respond(send, 200, b"Hello, world!")


async def scope_app(scope, receive, send) -> None:
    """Returns the scope (and body) as JSON for any path."""
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    await r_scope(scope, receive, send, query(scope))
