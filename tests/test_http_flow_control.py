"""Flow control seen from outside: bounded input buffering, send() waiting on a slow reader."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid

import httpx

from tests.support.client import RawConn, simple_get
from tests.support.common import wait_until

H = b"Host: example.org\r\n"


def test_input_buffering_is_bounded(server):
    # The app naps 1.5 s before reading a 16 MiB body. A server that keeps reading would hand
    # it (almost) everything in the first message; one that pauses at ~64 KiB gives a small one.
    size = 16 << 20
    data = bytes(range(256)) * (size // 256)
    conn = RawConn(server.port, timeout=20)
    errors: list[BaseException] = []

    def push() -> None:
        try:
            conn.send(b"POST /hold?t=1.5 HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % size)
            conn.send(data)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=push, daemon=True)
    t.start()
    try:
        resp = conn.read_response()
        t.join(20)
        assert not errors, errors
        info = json.loads(resp.body)
        assert info["total"] == size
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["first"] <= 1 << 20, f"first receive() after the nap had {info['first']} bytes"
    finally:
        conn.close()


def test_send_waits_for_slow_reader(server):
    rid = uuid.uuid4().hex
    mib = 48
    with RawConn(server.port, timeout=20) as conn:
        conn.send(simple_get(f"/flood?id={rid}&mib={mib}"))
        time.sleep(1.0)  # a client that does not read for a while (the behaviour under test)

        def progress():
            r = httpx.get(server.url(f"/report?id={rid}"), timeout=5).json()
            return r

        state = wait_until(progress, 5)
        assert state is not None, "the flood app never started"
        assert not state["done"], "send() never waited: the whole 48 MiB went into memory"
        assert state["sent"] <= 32 << 20, state
        # Now read it all: complete and correct.
        resp = conn.read_response()
        assert len(resp.body) == mib << 20
        assert resp.body.count(b"f") == mib << 20
    assert wait_until(lambda: progress()["done"], 5)
