"""A cheap WebSocket echo load generator for scenario (v): ``python -m benchmarks.wsclient``.

wrk cannot speak WebSocket, so this is the client side of the ws-echo scenarios: one process
(pin it with taskset, as wrk), N connections on one epoll loop, each keeping K messages in
flight. The frame is built and masked once (RFC 6455 5.3 wants a fresh mask per frame; a
server cannot tell and does the same unmasking work) and sent again for every echo that
comes back. Echoes are counted by size: every answer is one unmasked frame of the same
length, and the run is shorter than the servers' 20 s ping interval, so no other frame
arrives. The last line is ``WS_JSON {...}`` with the count, the duration and the client's
own CPU time.

    python -m benchmarks.wsclient --port 8000 --path /ws -c 16 -k 8 -d 10
    python -m benchmarks.wsclient --port 8000 --path /ws -c 16 -k 1 -n 5000   # exactly 5000
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import select
import socket
import sys
import time

HANDSHAKE_TIMEOUT = 5.0


def masked_frame(payload: bytes, text: bool) -> bytes:
    """One FIN frame, client-to-server (masked), payload shorter than 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    opcode = 0x1 if text else 0x2
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def open_websocket(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    # No Sec-WebSocket-Extensions: the servers must not compress (permessage-deflate is
    # measured by nobody here; every server would pay zlib the same way).
    sock.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head[:100]!r}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise ConnectionError("data after the 101 response")
    sock.setblocking(False)
    return sock


def run(port: int, path: str, connections: int, in_flight: int, duration: float,
        size: int, text: bool, count: int | None = None) -> dict:
    """Echo for `duration` seconds, or (`count`) until exactly that many echoes came back
    (bounded by `duration` all the same)."""
    payload = (b"x" * size)
    frame = masked_frame(payload, text)
    answer = 2 + size  # server frames are not masked
    socks = [open_websocket(port, path) for _ in range(connections)]
    by_fd = {s.fileno(): s for s in socks}
    carry = dict.fromkeys(by_fd, 0)
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    deadline = started + duration
    sent = 0
    for s in socks:
        k = in_flight if count is None else max(0, min(in_flight, count - sent))
        s.send(frame * k)
        sent += k
    received = 0
    errors = 0
    now = started
    while now < deadline and (count is None or received < count):
        for fd, _ in poller.poll(0.5):
            sock = by_fd[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                errors += 1
                poller.unregister(fd)
                continue
            total = carry[fd] + len(data)
            n, carry[fd] = divmod(total, answer)
            if n:
                received += n
                if count is not None:
                    n = max(0, min(n, count - sent))
                    sent += n
                if n:
                    sock.send(frame * n)  # a few dozen bytes: fits the socket buffer
        now = time.monotonic()
    elapsed = now - started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    for s in socks:
        s.close()
    return {"messages": received, "duration_us": int(elapsed * 1e6), "client_cpu_s": cpu,
            "errors": {"closed": errors}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/ws")
    p.add_argument("-c", "--connections", type=int, default=16)
    p.add_argument("-k", "--in-flight", type=int, default=1, help="messages in flight per connection")
    p.add_argument("-d", "--duration", type=float, default=None,
                   help="seconds (default 10; with -n: the limit, default 600)")
    p.add_argument("-n", "--count", type=int, default=None,
                   help="stop after exactly this many echoes (instruction counts)")
    p.add_argument("--size", type=int, default=16, help="payload bytes (< 126)")
    p.add_argument("--binary", action="store_true", help="binary frames (default: text)")
    opts = p.parse_args(argv)
    duration = opts.duration or (10.0 if opts.count is None else 600.0)
    result = run(opts.port, opts.path, opts.connections, opts.in_flight, duration,
                 opts.size, not opts.binary, opts.count)
    print("WS_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
