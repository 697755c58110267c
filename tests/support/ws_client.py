"""A raw-socket WebSocket client for the tests: exact bytes out, frames parsed in (RFC 6455)."""

from __future__ import annotations

import base64
import os
import struct

from tests.support.client import RawConn
from tests.support.common import SOCK_TIMEOUT

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def handshake_request(path: str = "/echo", extra: bytes = b"", key: bytes | None = None) -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16))
    return (
        f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n".encode()
        + (b"Sec-WebSocket-Key: " + key + b"\r\n" if key else b"")
        + extra
        + b"\r\n"
    )


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def read_frame(conn: RawConn) -> tuple[int, bool, bytes]:
    """One server frame from ``conn``: (opcode, fin, payload); RSV bits are not checked."""
    head = conn.read_exact(2)
    fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
    assert not head[1] & 0x80, "a server frame must not be masked"
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.read_exact(8))[0]
    return opcode, fin, conn.read_exact(n) if n else b""


class WsConn(RawConn):
    """RawConn after a successful handshake; ``read_frame`` returns (opcode, fin, payload)."""

    def __init__(self, port: int = 0, path: str = "/echo", uds: str | None = None,
                 timeout: float = SOCK_TIMEOUT, after_handshake: bytes = b"",
                 extra_headers: bytes = b"") -> None:
        super().__init__(port, timeout=timeout, uds=uds)
        self.send(handshake_request(path, extra=extra_headers) + after_handshake)
        self.head = self.read_until(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def read_frame(self) -> tuple[int, bool, bytes]:
        return read_frame(self)

    def read_close(self) -> tuple[int, bytes]:
        """Skip data and ping frames until the close frame; its (code, reason)."""
        for _ in range(10000):
            opcode, _, payload = self.read_frame()
            if opcode == OP_CLOSE:
                if len(payload) < 2:
                    return 1005, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]
        raise AssertionError("no close frame")


