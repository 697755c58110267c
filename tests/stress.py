"""Hostile and heavy clients against a running Palfrey (loopback only), for the hardening
tests and for the long runs reported in the notes:

    python -m tests.stress slowloris --seconds 20 --connections 200
    python -m tests.stress soak --seconds 1800 --limit-concurrency 64   # the 30-minute soak
    python -m tests.stress shutdown --requests 50

Each command starts its own server (tests.apps_hardening:app, 127.0.0.1, a free port),
stops it by PID and prints one JSON object with the figures. Every loop here is bounded in
time and in count; every socket read has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

from tests.apps_hardening import SLOW_BODY

HOST = "127.0.0.1"
READ_TIMEOUT = 10.0


# -- a minimal asyncio HTTP/1.1 client -------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def read_reply(reader: asyncio.StreamReader, timeout: float = READ_TIMEOUT) -> Reply:
    """One response (content-length or chunked); raises on timeout or early EOF."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), timeout)
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = await asyncio.wait_for(_read_chunked(reader), timeout)
    else:
        body = b""
    return Reply(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    for _ in range(1_000_000):  # bounded: no test body has this many chunks
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    raise AssertionError("too many chunks")


def request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: stress\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def abort(writer: asyncio.StreamWriter) -> None:
    """Vanish: close with RST (SO_LINGER 0), as a crashed client or a dropped network does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def get(port: int, path: str, timeout: float = READ_TIMEOUT) -> Reply:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    try:
        writer.write(request("GET", path, close=True))
        return await read_reply(reader, timeout)
    finally:
        writer.close()


# -- server side figures (from /proc, by PID) -----------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# What a connection leaves behind if it leaks: the core's objects, the app tasks, descriptors.
LIVE_KEYS = ("HttpProtocol", "RequestCycle", "WebSocketProtocol", "tasks", "proc_fds")


async def debug_counts(port: int) -> dict[str, int]:
    return json.loads((await get(port, "/debug")).body)


async def wait_for_baseline(port: int, pid: int, baseline: dict, timeout: float) -> dict:
    """Poll until the server's live objects and fds are back to ``baseline`` (bounded);
    return the last counts seen."""
    deadline = time.monotonic() + timeout
    counts = {}
    while time.monotonic() < deadline:
        counts = await debug_counts(port)
        counts["proc_fds"] = open_fds(pid)
        if all(counts[k] <= baseline[k] for k in LIVE_KEYS):
            return counts
        await asyncio.sleep(0.2)
    return counts


# -- slowloris -------------------------------------------------------------------------------------------


@dataclass
class SlowlorisResult:
    connections_opened: int = 0
    closed_by_server: int = 0
    got_408: int = 0
    held_too_long: int = 0  # open longer than the header timeout + slack
    cut_by_end_of_attack: int = 0
    connect_failures: int = 0
    probes: int = 0
    probe_failures: int = 0
    probe_latency_max_ms: float = 0.0
    probe_latency_median_ms: float = 0.0


async def _slow_header_client(port: int, deadline: float, header_timeout: float,
                              result: SlowlorisResult, reconnect: bool) -> None:  # fmt: skip
    slack = 3.0  # the core checks deadlines once a second
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        except (TimeoutError, OSError):
            result.connect_failures += 1
            await asyncio.sleep(0.5)
            continue
        result.connections_opened += 1
        opened = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: slowloris\r\nX-Slow: ")
        received = b""
        closed = False
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(4096), 1.0)
            except TimeoutError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                closed = True
                break
            if data:
                received += data
                continue
            try:
                writer.write(b"a")  # one more header byte a second, never the end of the head
                await writer.drain()
            except OSError:
                closed = True
                break
        if closed:
            result.closed_by_server += 1
            result.got_408 += received.startswith(b"HTTP/1.1 408 ")
            result.held_too_long += time.monotonic() - opened > header_timeout + slack
        else:
            result.cut_by_end_of_attack += 1
            result.held_too_long += time.monotonic() - opened > header_timeout + slack
        writer.close()
        if not reconnect:
            return


async def _honest_prober(port: int, deadline: float, bound: float,
                         result: SlowlorisResult) -> list[float]:  # fmt: skip
    latencies = []
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            reply = await get(port, "/", timeout=bound)
            ok = reply.status == 200 and reply.body == b"ok"
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            ok = False
        latencies.append(time.monotonic() - started)
        result.probes += 1
        result.probe_failures += not ok
        await asyncio.sleep(0.25)
    return latencies


async def slowloris(port: int, connections: int, seconds: float, header_timeout: float,
                    probe_bound: float = 1.0, reconnect: bool = True) -> SlowlorisResult:  # fmt: skip
    """``connections`` clients each trickle one header byte a second for ``seconds``
    (reconnecting when cut off, if ``reconnect``), while an honest client asks for / every
    0.25 s, each answer bounded by ``probe_bound`` seconds."""
    result = SlowlorisResult()
    deadline = time.monotonic() + seconds
    attackers = [_slow_header_client(port, deadline, header_timeout, result, reconnect)
                 for _ in range(connections)]  # fmt: skip
    await asyncio.sleep(0)
    *_, latencies = await asyncio.gather(
        *attackers, _honest_prober(port, deadline, probe_bound, result)
    )
    if latencies:
        ordered = sorted(latencies)
        result.probe_latency_max_ms = round(ordered[-1] * 1000, 1)
        result.probe_latency_median_ms = round(ordered[len(ordered) // 2] * 1000, 1)
    return result


# -- soak --------------------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    seconds: float = 0.0
    requests_ok: int = 0  # honest requests answered correctly (WebSocket echoes included)
    aborted_mid_request: int = 0
    aborted_mid_response: int = 0
    by_kind: dict = field(default_factory=dict)  # client kind -> runs completed
    unexpected_errors: list[str] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # t, fds, rss_kib
    baseline: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    # Least-squares slopes over the samples after the first fifth (warm-up): per minute.
    fds_per_min: float = 0.0
    rss_kib_per_min: float = 0.0


async def _keep_alive_gets(port: int, result: SoakResult, rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for i in range(rng.randint(5, 30)):
            writer.write(request("GET", f"/echo?i={i}"))
            reply = await read_reply(reader)
            if reply.status != 200 or json.loads(reply.body)["target"] != f"/echo?i={i}":
                raise AssertionError(f"keep-alive GET {i}: {reply}")
            result.requests_ok += 1
    finally:
        writer.close()


async def _upload(port: int, result: SoakResult, rng: random.Random) -> None:
    body = rng.randbytes(rng.randint(0, 300_000))
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request("POST", "/upload", body))
        reply = await read_reply(reader)
        if reply.status != 200 or reply.body != b"%d" % len(body):
            raise AssertionError(f"upload of {len(body)}: {reply.status} {reply.body[:80]!r}")
        result.requests_ok += 1
    finally:
        writer.close()


async def _pipelined(port: int, result: SoakResult, rng: random.Random) -> None:
    n = rng.randint(2, 16)
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"".join(request("GET", f"/echo?p={i}") for i in range(n)))
        for i in range(n):
            reply = await read_reply(reader)
            if reply.status != 200 or json.loads(reply.body)["target"] != f"/echo?p={i}":
                raise AssertionError(f"pipelined {i} of {n}: {reply}")
            result.requests_ok += 1
    finally:
        writer.close()


async def _slow_upload(port: int, result: SoakResult, rng: random.Random) -> None:
    """An upload in pieces with pauses in between (a slow but honest client)."""
    pieces = [rng.randbytes(rng.randint(1, 20_000)) for _ in range(rng.randint(2, 8))]
    size = sum(map(len, pieces))
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request("POST", "/upload")[:-2].replace(b"Content-Length: 0",
                     b"Content-Length: %d" % size) + b"\r\n")  # fmt: skip
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.3)
        reply = await read_reply(reader)
        if reply.status != 200 or reply.body != b"%d" % size:
            raise AssertionError(f"slow upload of {size}: {reply.status} {reply.body[:80]!r}")
        result.requests_ok += 1
    finally:
        writer.close()


async def _websocket(port: int, result: SoakResult, rng: random.Random) -> None:
    reader, writer = await ws_open(port)
    try:
        for i in range(rng.randint(1, 50)):
            await ws_echo_once(reader, writer, rng.randbytes(rng.randint(0, 125)))
            result.requests_ok += 1
        await ws_close(reader, writer)
    finally:
        writer.close()


async def _stream(port: int, result: SoakResult, rng: random.Random) -> None:
    n = rng.randint(1, 200)
    reply = await get(port, f"/stream?n={n}")
    if reply.status != 200 or len(reply.body) != n * 1024:
        raise AssertionError(f"stream of {n}: {reply.status}, {len(reply.body)} bytes")
    result.requests_ok += 1


async def _vanish_mid_request(port: int, result: SoakResult, rng: random.Random) -> None:
    _, writer = await asyncio.open_connection(HOST, port)
    declared = rng.randint(10_000, 1_000_000)
    writer.write(request("POST", "/upload", b"")[:-2].replace(b"Content-Length: 0",
                 b"Content-Length: %d" % declared) + b"\r\n")  # fmt: skip
    writer.write(rng.randbytes(rng.randint(0, declared - 1)))
    await writer.drain()
    await asyncio.sleep(rng.random() * 0.05)
    abort(writer) if rng.random() < 0.5 else writer.close()
    result.aborted_mid_request += 1


async def _vanish_mid_response(port: int, result: SoakResult, rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    path = rng.choice(["/stream?n=3000", "/slow?t=0.3"])
    writer.write(request("GET", path))
    await writer.drain()
    if path.startswith("/stream"):
        await asyncio.wait_for(reader.read(rng.randint(1, 20_000)), READ_TIMEOUT)
    abort(writer) if rng.random() < 0.5 else writer.close()
    result.aborted_mid_response += 1


SOAK_MIX = [(_keep_alive_gets, 4), (_pipelined, 2), (_upload, 2), (_slow_upload, 1),
            (_stream, 2), (_websocket, 2), (_vanish_mid_request, 1),
            (_vanish_mid_response, 1)]  # fmt: skip


async def _soak_worker(port: int, deadline: float, result: SoakResult, seed: int) -> None:
    rng = random.Random(seed)
    kinds = [k for k, weight in SOAK_MIX for _ in range(weight)]
    while time.monotonic() < deadline:
        kind = rng.choice(kinds)
        try:
            await asyncio.wait_for(kind(port, result, rng), 30)
            result.by_kind[kind.__name__] = result.by_kind.get(kind.__name__, 0) + 1
        except Exception as exc:  # noqa: BLE001 -- every failure is counted and reported, none is fatal
            result.unexpected_errors.append(f"{kind.__name__}: {type(exc).__name__}: {exc}"[:300])


async def soak(port: int, pid: int, seconds: float, workers: int = 16,
               sample_every: float = 5.0) -> SoakResult:  # fmt: skip
    result = SoakResult(seconds=seconds)
    result.baseline = await debug_counts(port)
    result.baseline["proc_fds"] = open_fds(pid)
    started = time.monotonic()
    deadline = started + seconds

    async def sampler() -> None:
        while time.monotonic() < deadline:
            result.samples.append({"t": round(time.monotonic() - started, 1),
                                   "fds": open_fds(pid), "rss_kib": rss_kib(pid)})  # fmt: skip
            await asyncio.sleep(sample_every)

    await asyncio.gather(sampler(), *(_soak_worker(port, deadline, result, seed)
                                      for seed in range(workers)))  # fmt: skip
    result.after = await wait_for_baseline(port, pid, result.baseline, timeout=15)
    result.samples.append({"t": round(time.monotonic() - started, 1), "fds": open_fds(pid),
                           "rss_kib": rss_kib(pid), "after_load": True})  # fmt: skip
    steady = [x for x in result.samples if not x.get("after_load") and x["t"] >= seconds / 5]
    result.fds_per_min = round(slope_per_min(steady, "fds"), 3)
    result.rss_kib_per_min = round(slope_per_min(steady, "rss_kib"), 1)
    return result


def slope_per_min(samples: list[dict], key: str) -> float:
    """Least-squares slope of ``key`` against ``t`` (seconds), per minute; 0 for < 2 samples."""
    if len(samples) < 2:
        return 0.0
    ts = [x["t"] for x in samples]
    ys = [x[key] for x in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else 0.0


# -- churn: many short connections, then nothing may be left ------------------------------------------

WS_KEY = b"c3RyZXNzc3RyZXNzc3RyZQ=="  # any 16 bytes, base64


def ws_handshake(path: str = "/ws") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: stress\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n").encode() + (
            b"Sec-WebSocket-Key: " + WS_KEY + b"\r\n\r\n")  # fmt: skip


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, RFC 6455 5.3), payload under 126 bytes."""
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))  # fmt: skip


async def ws_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(ws_handshake())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    if not head.startswith(b"HTTP/1.1 101 "):
        raise AssertionError(f"no 101: {head[:80]!r}")
    return reader, writer


async def ws_echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       payload: bytes) -> None:  # fmt: skip
    writer.write(ws_frame(0x2, payload))
    head = await asyncio.wait_for(reader.readexactly(2), READ_TIMEOUT)
    echoed = await asyncio.wait_for(reader.readexactly(head[1] & 0x7F), READ_TIMEOUT)
    if head[0] != 0x82 or echoed != payload:
        raise AssertionError(f"bad echo {head!r} {echoed[:40]!r}")


async def ws_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The closing handshake from the client side: close frame, the server's, then EOF."""
    writer.write(ws_frame(0x8, struct.pack("!H", 1000)))
    head = await asyncio.wait_for(reader.readexactly(2), READ_TIMEOUT)
    await asyncio.wait_for(reader.readexactly(head[1] & 0x7F), READ_TIMEOUT)
    if head[0] != 0x88:
        raise AssertionError(f"expected a close frame, got {head!r}")
    await asyncio.wait_for(reader.read(), READ_TIMEOUT)
    writer.close()


async def _churn_one(port: int, i: int) -> None:
    """Connection ``i``: one of five ways to open and end a connection, in turn."""
    way = i % 5
    if way == 0:  # request, response, orderly close
        reply = await get(port, f"/echo?i={i}")
        if reply.status != 200:
            raise AssertionError(f"GET: {reply.status}")
    elif way == 1:  # keep-alive request answered, then the client vanishes (RST)
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request("GET", "/"))
        await read_reply(reader)
        abort(writer)
    elif way == 2:  # half a request, then gone
        _, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\nab")
        await writer.drain()
        abort(writer)
    elif way == 3:  # WebSocket: echo, closing handshake
        reader, writer = await ws_open(port)
        await ws_echo_once(reader, writer, b"%d" % i)
        await ws_close(reader, writer)
    else:  # WebSocket: echo, then the client vanishes without a close frame
        reader, writer = await ws_open(port)
        await ws_echo_once(reader, writer, b"%d" % i)
        abort(writer)


async def churn(port: int, total: int, concurrency: int = 32) -> list[str]:
    """Open and end ``total`` connections, ``concurrency`` at a time (HTTP and WebSocket,
    orderly and abrupt: ``_churn_one``); returns the errors (none expected)."""
    errors: list[str] = []
    next_i = iter(range(total))

    async def worker() -> None:
        for i in next_i:
            try:
                await asyncio.wait_for(_churn_one(port, i), 30)
            except Exception as exc:  # noqa: BLE001 -- counted, the run goes on
                errors.append(f"{i} ({i % 5}): {type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


# -- graceful shutdown under load --------------------------------------------------------------------


@dataclass
class ShutdownResult:
    in_flight: int = 0
    completed: int = 0
    lost: int = 0
    new_connections_refused: int = 0
    new_connections_hung: int = 0
    new_connections_other: int = 0
    exit_code: int | None = None
    failures: list[str] = field(default_factory=list)


async def _in_flight_request(port: int, slow_seconds: float, sent: asyncio.Event,
                             counter: list[int]) -> bytes:  # fmt: skip
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request("GET", f"/slow?t={slow_seconds}"))
        await writer.drain()
        counter[0] += 1
        if counter[0] == counter[1]:
            sent.set()
        reply = await read_reply(reader, timeout=slow_seconds + 15)
        if reply.status != 200 or reply.body != SLOW_BODY:
            raise AssertionError(f"{reply.status} {reply.body[:80]!r}")
        return reply.headers.get(b"connection", b"")
    finally:
        writer.close()


async def _try_new_connection(port: int) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 2.0)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "hung"
    try:
        writer.write(request("GET", "/"))
        data = await asyncio.wait_for(reader.read(100), 2.0)
        return "refused" if data == b"" else "other"  # accepted then closed unanswered: not hung
    except TimeoutError:
        return "hung"
    except OSError:
        return "refused"
    finally:
        writer.close()


async def graceful_shutdown(server, requests: int, slow_seconds: float) -> ShutdownResult:
    """``requests`` connections each wait on /slow; once the app holds all of them, SIGTERM;
    then new connections are tried while the old ones finish."""
    result = ShutdownResult()
    sent = asyncio.Event()
    counter = [0, requests]
    tasks = [asyncio.ensure_future(_in_flight_request(server.port, slow_seconds, sent, counter))
             for _ in range(requests)]  # fmt: skip
    await asyncio.wait_for(sent.wait(), 15)
    # All sent; wait (bounded) until the server's app holds every one of them.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (await debug_counts(server.port))["RequestCycle"] >= requests + 1:
            break
        await asyncio.sleep(0.05)
    result.in_flight = (await debug_counts(server.port))["RequestCycle"] - 1
    server.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)  # let the listener close
    for outcome in await asyncio.gather(*(_try_new_connection(server.port) for _ in range(10))):
        if outcome == "refused":
            result.new_connections_refused += 1
        elif outcome == "hung":
            result.new_connections_hung += 1
        else:
            result.new_connections_other += 1
    for task in tasks:
        try:
            connection = await task
            result.completed += 1
            if connection != b"close":
                result.failures.append(f"response without connection: close ({connection!r})")
        except Exception as exc:  # noqa: BLE001 -- a lost request, whatever the way
            result.lost += 1
            result.failures.append(f"{type(exc).__name__}: {exc}"[:200])
    result.exit_code = await asyncio.get_running_loop().run_in_executor(
        None, server.wait_exit, slow_seconds + 15
    )
    return result


# -- the command line ------------------------------------------------------------------------------------


def _start(*args: str):
    from tests.support.server import ServerProcess

    return ServerProcess("tests.apps_hardening:app", ("--no-access-log", *args)).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("slowloris")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--header-timeout", type=float, default=5)
    p = sub.add_parser("soak")
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--sample-every", type=float, default=10)
    p.add_argument("--limit-concurrency", type=int, default=64,
                   help="the server's; above --workers, so honest clients never get a 503")
    p = sub.add_parser("shutdown")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--slow", type=float, default=3)
    args = parser.parse_args(argv)
    if args.command == "slowloris":
        server = _start("--timeout-request-header", str(args.header_timeout))
        try:
            out = asdict(asyncio.run(slowloris(server.port, args.connections, args.seconds,
                                               args.header_timeout)))  # fmt: skip
        finally:
            server.stop()
    elif args.command == "soak":
        server = _start("--limit-concurrency", str(args.limit_concurrency))
        try:
            out = asdict(asyncio.run(soak(server.port, server.pid, args.seconds, args.workers,
                                          args.sample_every)))  # fmt: skip
            out["server_errors"] = [line for line in server.lines()
                                    if re.match(r"(ERROR|CRITICAL)", line) or "Traceback" in line]  # fmt: skip
        finally:
            server.stop()
    else:
        server = _start("--timeout-graceful-shutdown", str(args.slow + 10))
        try:
            out = asdict(asyncio.run(graceful_shutdown(server, args.requests, args.slow)))
        finally:
            server.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
