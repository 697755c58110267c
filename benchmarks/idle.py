"""Scenario idle-conns: resident memory per idle connection (item 4 of issue 16).

For each server: start it (the plain app), open and close a few hundred connections (warm-up),
read the tree's RSS, open N connections that each make one request (HTTP: keep-alive GET /;
WebSocket: the upgrade to the echo app's /ws) and then stay idle, wait until the RSS settles,
and report (RSS after - RSS before) / N in KiB. HTTP at 10,000 connections, WebSocket at 1,000.

The floor: the same measurement against a server that is nothing but the event loop's
transport and a Protocol answering a fixed 200 (`python -m benchmarks.idle --floor uvloop`),
so that a server's own per-connection state is its figure minus the floor.

The client (`python -m benchmarks.idle --client`) is one epoll process; the harness raises
RLIMIT_NOFILE to the hard limit first, and the servers inherit it.

    python -m benchmarks --scenarios idle-conns --servers palfrey,uvicorn,granian
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import procstat, servers

HTTP_CONNECTIONS = 10_000
WS_CONNECTIONS = 1_000
BATCH = 256  # connections opened at once (below every server's listen backlog)
HELLO_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
SETTLE_S = 1.0
HTTP_FOR = ("palfrey", "uvicorn", "granian", "nginx", "hypercorn")
# Idle keep-alive connections must outlive the measurement: Palfrey, Uvicorn and Hypercorn
# close them after 5 s by default (granian keeps them; nginx's config says 600 s).
KEEP_ALIVE = {"palfrey": ["--timeout-keep-alive", "3600"], "uvicorn": ["--timeout-keep-alive", "3600"],
              "hypercorn": ["--keep-alive", "3600"]}
WS_FOR = ("palfrey", "uvicorn", "uvicorn-wsproto", "granian", "hypercorn")


def raise_fd_limit(want: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `want` (never past the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- the floor server ---------------------------------------------------------------------------

_FIXED = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, world!"


def floor_server(port: int, loop_name: str) -> None:
    """A Protocol that keeps nothing per connection but what the transport keeps, answering
    each request head it sees with a fixed 200 (requests are one recv each here)."""
    import asyncio

    if loop_name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    class Floor(asyncio.Protocol):
        __slots__ = ("transport",)

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(_FIXED * data.count(b"\r\n\r\n"))
            if b"onnection: close" in data:  # the harness's probe
                self.transport.close()

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Floor, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _floor_spec(loop_name: str) -> servers.ServerSpec:
    def argv(at: servers.Launch) -> list[str]:
        return [at.python, "-m", "benchmarks.idle", "--floor", loop_name, "--port", str(at.port)]

    return servers.ServerSpec(
        f"floor-{loop_name}", argv,
        lambda: None if loop_name == "asyncio" or servers._has_module("uvloop") else "uvloop is missing",
        lambda: servers._module_version(loop_name) or f"Python {sys.version.split()[0]}",
        note=f"{loop_name} transport + a Protocol answering a fixed 200: the floor")


FLOORS = {"floor-uvloop": _floor_spec("uvloop"), "floor-asyncio": _floor_spec("asyncio")}


# -- the client ---------------------------------------------------------------------------------


def open_idle(port: int, count: int, websocket: bool, timeout: float = 120.0) -> tuple[list[socket.socket], int]:
    """Open `count` connections, one request each, answered; returns (sockets, failures).
    Every connection then stays open and silent."""
    ws_request = (b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                  + base64.b64encode(os.urandom(16)) + b"\r\n\r\n")
    request = ws_request if websocket else HELLO_REQUEST
    done_marker = b"\r\n\r\n" if websocket else servers.HELLO
    poller = select.epoll()
    opened: list[socket.socket] = []
    failures = 0
    deadline = time.monotonic() + timeout
    while len(opened) + failures < count and time.monotonic() < deadline:
        batch: dict[int, list] = {}
        for _ in range(min(BATCH, count - len(opened) - failures)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            batch[s.fileno()] = [s, b"", False]  # socket, bytes received, request sent
            poller.register(s.fileno(), select.EPOLLOUT)
        while batch and time.monotonic() < deadline:
            for fd, ev in poller.poll(1.0):
                entry = batch.get(fd)
                if entry is None:
                    continue
                s = entry[0]
                try:
                    if ev & (select.EPOLLERR | select.EPOLLHUP) and not ev & select.EPOLLIN:
                        raise ConnectionError("refused or reset")
                    if not entry[2]:
                        s.send(request)
                        entry[2] = True
                        poller.modify(fd, select.EPOLLIN)
                        continue
                    data = s.recv(4096)
                    if not data:
                        raise ConnectionError("closed")
                    entry[1] += data
                    if done_marker in entry[1]:
                        if websocket and not entry[1].startswith(b"HTTP/1.1 101"):
                            raise ConnectionError(entry[1][:60])
                        poller.unregister(fd)
                        opened.append(s)
                        del batch[fd]
                except (OSError, ConnectionError):
                    poller.unregister(fd)
                    s.close()
                    failures += 1
                    del batch[fd]
        for fd, entry in batch.items():  # timed out
            poller.unregister(fd)
            entry[0].close()
            failures += 1
    poller.close()
    return opened, failures + max(0, count - len(opened) - failures)


def client_main(port: int, count: int, websocket: bool) -> int:
    raise_fd_limit(count + 64)
    socks, failures = open_idle(port, count, websocket)
    print(f"READY {len(socks)} {failures}", flush=True)
    sys.stdin.readline()  # the harness writes a line when it has measured
    print(f"OPEN {still_open(socks)}", flush=True)
    for s in socks:
        s.close()
    return 0


def still_open(socks: list[socket.socket]) -> int:
    """How many of the connections the server has not closed (no EOF waiting to be read)."""
    open_ = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            open_ += bool(data)  # unexpected bytes: still open
        except BlockingIOError:
            open_ += 1  # nothing to read: open and idle
        except OSError:
            pass  # reset
    return open_


# -- the measurement ----------------------------------------------------------------------------


def _settled_rss(pid: int, limit_s: float = 10.0) -> int:
    """The tree's RSS once two readings SETTLE_S apart agree within 0.5 %."""
    last = procstat.tree_rss_kib(pid)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        now = procstat.tree_rss_kib(pid)
        if abs(now - last) <= 0.005 * max(now, 1):
            return now
        last = now
    return last


def measure(spec: servers.ServerSpec, count: int, websocket: bool, opts, log) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"palfrey-bench-idle-{spec.name}-") as tmpdir:
        # Granian admits at most --backpressure (default: the backlog, 1024) connections at
        # once; lifted here, as a user holding many idle connections would.
        env = {"GRANIAN_BACKPRESSURE": str(count + 1024)} if spec.kind == "granian" else None
        server = servers.RunningServer(spec, opts.server_cpu, Path(tmpdir), opts.startup_timeout,
                                       env=env, extra=KEEP_ALIVE.get(spec.kind))
        with server:
            warm, bad = open_idle(server.port, 200, websocket)  # first-use allocations
            for s in warm:
                s.close()
            time.sleep(0.5)
            before = _settled_rss(server.pid)
            argv = [sys.executable, "-m", "benchmarks.idle", "--client", "--port", str(server.port),
                    "-n", str(count), *(["--ws"] if websocket else [])]
            if opts.client_cpu is not None:
                argv = ["taskset", "-c", opts.client_cpu, *argv]
            client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      cwd=servers.REPO, start_new_session=True,
                                      env={**os.environ, "PYTHONPATH": str(servers.REPO)})
            servers.LIVE[client.pid] = client
            try:
                line = client.stdout.readline().split()
                if len(line) != 3 or line[0] != "READY":
                    raise RuntimeError(f"idle client failed: {line}")
                opened, failed = int(line[1]), int(line[2])
                after = _settled_rss(server.pid)
                alive = server.proc.poll() is None
                client.stdin.write("measured\n")
                client.stdin.flush()
                line = client.stdout.readline().split()
                still = int(line[1]) if len(line) == 2 and line[0] == "OPEN" else None
            finally:
                try:
                    client.stdin.close()
                except OSError:
                    pass
                servers.stop_process(client, grace=20)
    per_conn = (after - before) / opened if opened else None
    result = {"connections": opened, "failed": failed, "rss_before_kib": before,
              "rss_after_kib": after, "kib_per_connection": None if per_conn is None else round(per_conn, 2),
              "server_alive": alive, "still_open": still}
    log(f"  {spec.name:<16} {'WebSocket' if websocket else 'HTTP':<9} {opened:>6} open ({failed} failed): "
        f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB = "
        f"{'-' if per_conn is None else f'{per_conn:.2f}'} KiB per connection; {still} still open after")
    return result


def run_phase(opts, server_names: list[str], log) -> dict:
    """{"http": {server: {...}}, "websocket": {...}, "failures": [...]}"""
    limit = raise_fd_limit(HTTP_CONNECTIONS * 2 + 256)
    http_n = min(opts.idle_http, limit - 256)
    ws_n = min(opts.idle_ws, limit - 256)
    out: dict = {"http": {}, "websocket": {}, "failures": [], "fd_limit": limit,
                 "http_connections": http_n, "ws_connections": ws_n}
    specs = {**{n: servers.SERVERS[n] for n in server_names}, **FLOORS}
    for name, spec in specs.items():
        kind = spec.kind
        for websocket, wanted, key, n in ((False, HTTP_FOR, "http", http_n), (True, WS_FOR, "websocket", ws_n)):
            if not (kind in wanted or (name.startswith("floor-") and not websocket)):
                continue
            why = spec.missing()
            if why:
                log(f"[idle-conns] {name}: skipped: {why}")
                continue
            log(f"[idle-conns] {name}: {n} idle {'WebSockets' if websocket else 'keep-alive connections'}")
            try:
                out[key][name] = measure(spec, n, websocket, opts, log)
            except RuntimeError as exc:
                out["failures"].append(f"idle-conns, {name}, {key}: {exc}")
                log(f"  FAILED: {exc}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--floor", choices=("uvloop", "asyncio"), help="run the floor server")
    p.add_argument("--client", action="store_true", help="open idle connections until stdin closes")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-n", type=int, default=HTTP_CONNECTIONS)
    p.add_argument("--ws", action="store_true", help="WebSocket upgrades to /ws instead of GET /")
    opts = p.parse_args(argv)
    if opts.floor:
        floor_server(opts.port, opts.floor)
        return 0
    if opts.client:
        return client_main(opts.port, opts.n, opts.ws)
    p.error("--floor or --client")
    return 2


if __name__ == "__main__":
    sys.exit(main())
