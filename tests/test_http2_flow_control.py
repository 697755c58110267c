"""Flow control both ways (SPEC.md section 8): send() waits while the client's window is
closed and the body still arrives whole; the request body's window is refilled only as the app
reads (a sleeping app closes the client's window, nothing is lost), and one stream's slow app
does not hold up another stream's upload."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest

from tests.support.h2 import (
    INITIAL_WINDOW_SIZE,
    H2Client,
    Usage,
    figure,
    h2_server,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
    wait_report,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]

MIB = 1 << 20


# Hypercorn 0.18's send() does not wait: its app had sent 6 MiB into a 1 KiB window.
@palfrey_h2_only
def test_tiny_client_window_send_waits_and_body_arrives_whole(h2_server):  # noqa: F811
    rid = f"tiny-{uuid.uuid4().hex[:8]}"
    usage = Usage(h2_server.pid)
    with H2Client(h2_server.port, settings={INITIAL_WINDOW_SIZE: 1024}, auto_ack=False) as client:
        sid = client.request("GET", f"/flood?id={rid}&mib=16")
        client.wait(lambda: len(client.streams[sid].data) >= 1024, what="the first 1024 bytes")
        # The window is spent: the app's send() of its first MiB must not return. Give it
        # half a second to (wrongly) get ahead.
        state = wait_report(h2_server, rid, lambda s: s["sent"] > MIB, timeout=0.5)
        assert state is not None and state["sent"] <= MIB, state
        assert len(client.streams[sid].data) == 1024  # (h2 raises on more than the window)
        client.auto_ack = True
        client.open_window(sid, 64 * MIB)
        stream = client.response(sid, timeout=30)
    assert stream.status == 200 and len(stream.data) == 16 * MIB, stream
    assert bytes(stream.data) == b"f" * (16 * MIB)
    usage.measure()
    figure("tiny-window", peak_rss_growth_mib=round(usage.peak_growth_mib, 1))
    assert usage.peak_growth_mib < 100


def test_large_upload_to_a_sleeping_app_closes_the_window_loses_nothing(h2_server):  # noqa: F811
    body = random.Random(12).randbytes(4 * MIB)
    with H2Client(h2_server.port) as client:
        client.wait_settings()
        sid = client.request("POST", "/upload?t=1", end_stream=False)
        sent = 0
        closed_at = None
        while sent < len(body):
            n = client.send_available(sid, body[sent:])
            sent += n
            if n == 0:
                # The window is closed: the server lets it open only as the app reads.
                if closed_at is None:
                    closed_at = sent
                client.wait(lambda: client.conn.local_flow_control_window(sid) > 0, 10,
                            "the window to open again")
            client.pump(0)
        stream = client.response(sid, timeout=20)
    assert stream.status == 200, stream
    result = stream.json()
    assert result["total"] == len(body), result
    assert result["sha256"] == hashlib.sha256(body).hexdigest(), result
    figure("upload-window", closed_after_bytes=closed_at, app_reads=result["reads"],
           largest_read=result["max"])
    # The client's window closed while the app slept, after about a window or two (the
    # 64 KiB high water per stream), not after the server had buffered the upload.
    assert closed_at is not None and closed_at <= MIB, closed_at


def test_slow_app_does_not_hold_up_another_upload(h2_server):  # noqa: F811
    """Stream A's app sleeps without reading; A's body takes all the window it gets. Stream
    B's upload must still go through (the connection window is not left spent by A)."""
    with H2Client(h2_server.port) as client:
        client.wait_settings()
        slow = client.request("POST", "/upload?t=3", end_stream=False)
        client.send_available(slow, b"a" * MIB, end_stream=False)
        body = b"b" * 200_000
        fast = client.request("POST", "/echo", end_stream=False)
        client.send_body(fast, body, timeout=5)
        stream = client.response(fast)
        assert stream.status == 200 and bytes(stream.data) == body, stream
        assert client.streams[slow].headers is None, client.streams[slow]
        client.reset(slow)
