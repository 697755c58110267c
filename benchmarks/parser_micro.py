"""Micro-benchmark of the request path without the kernel: bytes in -> scope -> app -> bytes out.

    python -m benchmarks.parser_micro            # table on stdout
    python -m benchmarks.parser_micro --json     # one JSON line (used by python -m benchmarks)

Palfrey's parser has no standalone Python API, so its compiled ``HttpProtocol`` is driven
directly, as uvloop would: ``get_buffer(-1)``, copy the request into the returned memoryview,
``buffer_updated(n)``, against a fake transport. That measures parse + scope build + Task
creation + the app's two ``send()`` calls + response encoding. For a fair split the same
requests go through:

    palfrey          palfrey._parser.HttpProtocol, the full path above
    uvicorn          uvicorn's HttpToolsProtocol (httptools + Python), the same full path
    httptools+scope  httptools.HttpRequestParser + the same scope dict built in Python
                     (no Task, no response): the parse-and-scope part alone
    httptools        httptools.HttpRequestParser with header callbacks only
    task+app         asyncio Task running the same app with no-op receive/send: the floor
                     that Task creation and loop scheduling put under both full paths

All on uvloop (asyncio if absent), 64 connections each given one request per batch, the loop
run between batches until every response is out; ns per request, median of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import time
import urllib.parse

CONNECTIONS = 64

CHROME_GET = (
    b"GET /search?q=palfrey+asgi&lang=en HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24", "Google Chrome";v="131"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-User: ?1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n"
    b"\r\n"
)
_POST_BODY = b'{"name": "palfrey", "count": 3, "tags": ["fast", "strict"]}'
SMALL_POST = (
    b"POST /api/items HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: python-httpx/0.28.1\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_POST_BODY)).encode() + b"\r\n"
    b"\r\n" + _POST_BODY
)
REQUESTS = {"chrome GET (17 headers)": CHROME_GET, "small POST (JSON body)": SMALL_POST}

SERVER = ("127.0.0.1", 8000)
CLIENT = ("127.0.0.1", 51234)


# -- the app and a transport that goes nowhere -----------------------------------------------------

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": b"Hello, world!"}


class Recorder:
    """The app: records the scope, reads the body of a POST, answers 13 bytes."""

    def __init__(self) -> None:
        self.done = 0
        self.scope = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        if scope["method"] == "POST":
            await receive()
        await send(_START)
        await send(_BODY)
        self.done += 1


class FakeTransport:
    """Just enough of asyncio.Transport for both protocols; keeps the last bytes written."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data) -> None:
        if self.keep:
            self.out.append(bytes(data))

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return {"sockname": SERVER, "peername": CLIENT}.get(name, default)


# -- the drivers -----------------------------------------------------------------------------------


async def _settle(app: Recorder, target: int) -> None:
    """Run the loop until `target` responses are complete, then twice more to flush."""
    for _ in range(10000):
        if app.done >= target:
            break
        await asyncio.sleep(0)
    else:
        raise RuntimeError(f"only {app.done} of {target} responses completed")
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def make_palfrey(loop, app: Recorder, keep: bool):
    from palfrey._parser import HttpProtocol, ServerContext

    # Keyword arguments as in src/palfrey/_parser.pyi; values as Palfrey's defaults.
    ctx = ServerContext(
        app=app, loop=loop, app_state={}, root_path="",
        default_headers=[(b"server", b"palfrey")], date_header=True, access_log=False,
        error_logger=logging.getLogger("palfrey.error"),
        access_logger=logging.getLogger("palfrey.access"),
        limit_concurrency=None, timeout_keep_alive=5.0,
        timeout_request_header=10.0, timeout_request_body=30.0, limit_header_size=65536,
        limit_header_line_size=8192, limit_header_count=100, limit_target_size=8192,
        limit_body_size=None, ws_protocol=None, h2_protocol=None, tls_server_cert=None,
        access_log_format=None,
    )
    ctx.tick(loop.time())  # builds the cached Date line, as the server's first tick does
    conns, transports = [], []
    for _ in range(CONNECTIONS):
        proto = HttpProtocol(ctx)
        transports.append(FakeTransport(keep))
        proto.connection_made(transports[-1])
        conns.append(proto)

    def feed(payload: bytes) -> None:
        n = len(payload)
        for proto in conns:
            buf = proto.get_buffer(-1)
            buf[:n] = payload
            proto.buffer_updated(n)

    return transports, feed


def make_uvicorn(loop, app: Recorder, keep: bool):
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    # proxy_headers off: the micro-benchmark compares the protocol layers, not middleware.
    config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False,
                            proxy_headers=False, log_level="warning")
    config.load()
    state = ServerState()
    conns, transports = [], []
    for _ in range(CONNECTIONS):
        proto = HttpToolsProtocol(config, state, {}, _loop=loop)
        transports.append(FakeTransport(keep))
        proto.connection_made(transports[-1])
        conns.append(proto)

    def feed(payload: bytes) -> None:
        for proto in conns:
            proto.data_received(payload)

    return transports, feed


class ScopeBuilder:
    """httptools callbacks collecting what a scope needs, then the scope dict in Python."""

    def __init__(self, build_scope: bool) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.build_scope = build_scope
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.scope = None
        self.parse_url = httptools.parse_url

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.build_scope:
            return
        parsed = self.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        p = self.parser
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": p.get_http_version(),
            "server": SERVER,
            "client": CLIENT,
            "scheme": "http",
            "method": p.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "state": {},
        }

    def feed(self, payload: bytes) -> None:
        self.parser.feed_data(payload)


# -- timing ----------------------------------------------------------------------------------------


async def time_protocol(make, payload: bytes, batches: int) -> float:
    """ns per request through a full protocol (palfrey or uvicorn)."""
    loop = asyncio.get_running_loop()
    app = Recorder()
    _, feed = make(loop, app, False)
    feed(payload)  # warm: first request on every connection
    await _settle(app, CONNECTIONS)
    app.done = 0
    gc.collect()
    started = time.perf_counter_ns()
    for i in range(1, batches + 1):
        feed(payload)
        await _settle(app, i * CONNECTIONS)
    return (time.perf_counter_ns() - started) / (batches * CONNECTIONS)


async def time_task_floor(payload: bytes, batches: int) -> float:
    """ns per request for Task + app alone, with a prebuilt scope and no-op receive/send."""
    loop = asyncio.get_running_loop()
    app = Recorder()
    builder = ScopeBuilder(True)
    builder.feed(payload)
    scope = builder.scope

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    gc.collect()
    started = time.perf_counter_ns()
    for i in range(1, batches + 1):
        for _ in range(CONNECTIONS):
            loop.create_task(app(dict(scope), receive, send))
        await _settle(app, i * CONNECTIONS)
    return (time.perf_counter_ns() - started) / (batches * CONNECTIONS)


def time_httptools(payload: bytes, count: int, build_scope: bool) -> float:
    builder = ScopeBuilder(build_scope)
    gc.collect()
    feed = builder.feed
    started = time.perf_counter_ns()
    for _ in range(count):
        feed(payload)
    return (time.perf_counter_ns() - started) / count


# -- correctness first ----------------------------------------------------------------------------


def _comparable(scope: dict) -> dict:
    return {k: v for k, v in scope.items() if k not in ("state",)}


async def check(payload: bytes, have_palfrey: bool, have_uvicorn: bool) -> dict:
    """One request through each implementation: same scope, one 200 with the body each."""
    loop = asyncio.get_running_loop()
    builder = ScopeBuilder(True)
    builder.feed(payload)
    reference = _comparable(builder.scope)
    problems = {}
    for name, make, ok in (("palfrey", make_palfrey, have_palfrey), ("uvicorn", make_uvicorn, have_uvicorn)):
        if not ok:
            continue
        app = Recorder()
        transports, feed = make(loop, app, True)
        for _ in range(2):  # twice: the second request on a kept-alive connection
            feed(payload)
            await _settle(app, app.done + CONNECTIONS)
        got = _comparable(app.scope)
        if name == "uvicorn":
            got["headers"] = list(got["headers"])
        if got != reference:
            diff = {k: (got.get(k), reference.get(k)) for k in set(got) | set(reference)
                    if got.get(k) != reference.get(k)}
            problems[name] = f"scope differs from the httptools reference: {diff}"
        for transport in transports:
            out = b"".join(transport.out)
            if out.count(b"HTTP/1.1 200 OK\r\n") != 2 or out.count(b"Hello, world!") != 2:
                problems[name] = f"expected 2 responses on each connection, got {out[:300]!r}"
                break
    return problems


# -- main ------------------------------------------------------------------------------------------

COLUMNS = ["palfrey", "uvicorn", "httptools+scope", "httptools", "task+app"]


async def measure(repeats: int, batches: int) -> dict:
    have_palfrey = have_uvicorn = True
    missing = []
    try:
        import palfrey._parser  # noqa: F401
    except ImportError as exc:
        have_palfrey = False
        missing.append(f"palfrey._parser: {exc}")
    try:
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        have_uvicorn = False
        missing.append(f"uvicorn/httptools: {exc}")
    cases: dict[str, dict] = {}
    problems: dict[str, dict] = {}
    for case, payload in REQUESTS.items():
        found = await check(payload, have_palfrey, have_uvicorn)
        if found:
            problems[case] = found
        samples: dict[str, list[float]] = {c: [] for c in COLUMNS}
        for _ in range(repeats):
            if have_palfrey and "palfrey" not in found:
                samples["palfrey"].append(await time_protocol(make_palfrey, payload, batches))
            if have_uvicorn:
                if "uvicorn" not in found:
                    samples["uvicorn"].append(await time_protocol(make_uvicorn, payload, batches))
                samples["httptools+scope"].append(time_httptools(payload, batches * CONNECTIONS, True))
                samples["httptools"].append(time_httptools(payload, batches * CONNECTIONS, False))
                samples["task+app"].append(await time_task_floor(payload, batches))
        cases[case] = {c: (round(statistics.median(v), 1) if v else None) for c, v in samples.items()}
        cases[case]["bytes"] = len(payload)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return {
        "columns": COLUMNS,
        "cases": cases,
        "repeats": repeats,
        "requests_per_repeat": batches * CONNECTIONS,
        "loop": loop_name,
        "problems": problems,
        "missing": missing,
        "note": (
            "palfrey and uvicorn: bytes -> parse -> scope -> Task -> app (2 sends) -> response "
            "bytes, through the protocol object with a fake transport (no kernel); "
            "httptools+scope: parse and the same scope dict in Python, no Task, no response; "
            "httptools: parse only; task+app: Task + the same app with no-op receive/send "
            f"(the floor under both full paths). {CONNECTIONS} connections, one request each "
            f"per batch, loop: {loop_name}."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.parser_micro", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    p.add_argument("--quick", action="store_true", help="fewer repeats and requests")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--batches", type=int, default=None, help="batches of 64 requests per repeat")
    opts = p.parse_args(argv)
    repeats = opts.repeats or (3 if opts.quick else 7)
    batches = opts.batches or (100 if opts.quick else 400)
    logging.basicConfig(level=logging.WARNING)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(measure(repeats, batches))
    if opts.json:
        print(json.dumps(result))
    else:
        print(f"ns per request, median of {repeats} x {batches * CONNECTIONS} requests, loop {result['loop']}")
        print(f"{'request':<26}" + "".join(f"{c:>17}" for c in COLUMNS))
        for case, row in result["cases"].items():
            print(f"{case:<26}" + "".join(
                f"{'-' if row[c] is None else format(row[c], ',.0f'):>17}" for c in COLUMNS))
        print()
        print(result["note"])
    for case, found in result["problems"].items():
        for name, what in found.items():
            print(f"PROBLEM {case} / {name}: {what}", file=sys.stderr)
    for what in result["missing"]:
        print(f"skipped: {what}", file=sys.stderr)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
