"""The HTTP/2 connection (SPEC.md section 8): PING answered; an idle connection (no open
stream) closed after --timeout-keep-alive with GOAWAY(NO_ERROR), an open stream keeping it;
graceful shutdown: GOAWAY with the last stream id first, in-flight streams complete, close,
exit 0 (bounded by --timeout-graceful-shutdown); --limit-concurrency and --limit-max-requests
count streams."""

from __future__ import annotations

import signal
import time
import uuid

import h2.events
import pytest

from tests.support.h2 import (
    NO_ERROR,
    REFUSED_STREAM,
    H2Client,
    RawH2,
    h2_server,  # noqa: F401 - fixture
    h2_servers,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
    request_headers,
    wait_report,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


@pytest.fixture(scope="module")
def keepalive_server(module_h2_servers):  # noqa: F811
    return module_h2_servers("--timeout-keep-alive", "1")


def test_ping_answered_with_the_same_payload(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        client.ping(b"h2-tests")
        client.ping(b"\x00\x01\x02\x03\x04\x05\x06\x07")
        client.wait(lambda: len(client.ping_acks) == 2, what="two PING ACKs")
    assert client.ping_acks == [b"h2-tests", b"\x00\x01\x02\x03\x04\x05\x06\x07"]


# Hypercorn 0.18 closes the idle connection without a GOAWAY.
@palfrey_h2_only
def test_idle_connection_closed_with_goaway_no_error(keepalive_server):
    with H2Client(keepalive_server.port) as client:
        assert client.get("/hello").status == 200
        assert client.wait_closed(5), "idle connection still open 5 s after a 1 s keep-alive"
    assert client.goaway is not None, "closed without GOAWAY"
    assert client.goaway.error_code == NO_ERROR and client.goaway.last_stream_id == 1, client.goaway


@palfrey_h2_only
def test_an_incomplete_header_block_meets_the_keep_alive_timeout(keepalive_server):
    """HEADERS without END_HEADERS and no CONTINUATION: not a stream yet, so the connection
    is idle and --timeout-keep-alive ends it (HTTP/2's counterpart of the header timeout)."""
    with RawH2(keepalive_server.port) as raw:
        raw.poll(1.0)  # the server's SETTINGS, acknowledged: no frame may follow the HEADERS
        block = raw.header_block(request_headers())
        raw.send(raw.headers_frame(1, block[:3], end_headers=False))
        deadline = time.monotonic() + 5
        while not raw.eof and time.monotonic() < deadline:
            raw.poll(0.5)
        assert raw.eof, "still open 5 s after a 1 s keep-alive"
        assert raw.goaway is not None and raw.goaway.error_code == NO_ERROR, raw.goaway


def test_open_stream_keeps_the_connection(keepalive_server):
    """A stream that lasts longer than the keep-alive timeout: the connection is not idle."""
    rid = f"ka-{uuid.uuid4().hex[:8]}"
    with H2Client(keepalive_server.port) as client:
        stream = client.get(f"/sleep?id={rid}&t=2", timeout=5)
        assert stream.status == 200 and bytes(stream.data) == f"slept {rid}".encode(), stream
        assert client.goaway is None, client.goaway


# Hypercorn 0.18 sends its GOAWAY only after the streams have ended.
@palfrey_h2_only
def test_graceful_shutdown_lets_streams_finish(h2_servers):  # noqa: F811
    server = h2_servers()
    ids = [f"gs-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with H2Client(server.port) as client:
        sids = [client.request("GET", f"/sleep?id={rid}&t=1.5") for rid in ids]
        for rid in ids:
            assert wait_report(server, rid, lambda s: s is not None), f"{rid} never started"
        server.send_signal(signal.SIGTERM)
        for sid, rid in zip(sids, ids, strict=True):
            stream = client.response(sid, timeout=10)
            assert stream.status == 200 and bytes(stream.data) == f"slept {rid}".encode(), stream
        assert client.goaway is not None, "no GOAWAY"
        assert client.goaway.last_stream_id >= max(sids), client.goaway
        # GOAWAY came first (so the client opens no more streams), the responses after it.
        order = [e for e in client.events if isinstance(e, (h2.events.ConnectionTerminated,
                                                            h2.events.StreamEnded))]
        assert isinstance(order[0], h2.events.ConnectionTerminated), order
        assert client.wait_closed(5), "connection not closed after the streams finished"
    assert server.wait_exit(10) == 0, server.stderr_text()


# Hypercorn 0.18 (--graceful-timeout 1) was still running 10 s after SIGTERM.
@palfrey_h2_only
def test_graceful_shutdown_bounded_by_its_timeout(h2_servers):  # noqa: F811
    server = h2_servers("--timeout-graceful-shutdown", "1")
    rid = f"gst-{uuid.uuid4().hex[:8]}"
    with H2Client(server.port) as client:
        sid = client.request("GET", f"/sleep?id={rid}&t=30")
        assert wait_report(server, rid, lambda s: s is not None)
        server.send_signal(signal.SIGTERM)
        rc = server.wait_exit(10)
        assert rc == 0, f"exit {rc} (None: still running 10 s after SIGTERM)"
        client.wait_closed(5)
        # Cancelled, as over HTTP/1.1: a 500 if nothing was sent yet, or the stream reset or
        # the connection closed; never the app's answer.
        stream = client.streams[sid]
        assert stream.status in (None, 500), stream
        assert client.eof, "connection still open after the server exited"

@palfrey_h2_only
def test_limit_max_requests_counts_streams(h2_servers):  # noqa: F811
    server = h2_servers("--limit-max-requests", "3")
    with H2Client(server.port) as client:
        for _ in range(3):
            assert client.get("/hello").status == 200
        assert client.wait_closed(10), "connection still open after the 3rd stream"
        assert client.goaway is not None, "closed without GOAWAY"
    assert server.wait_exit(10) == 0, server.stderr_text()


@palfrey_h2_only
def test_limit_concurrency_counts_streams(h2_servers):  # noqa: F811
    """4 sleeping streams on one connection with --limit-concurrency 2: some are refused
    (503 or RST_STREAM(REFUSED_STREAM)), the others served; the connection survives."""
    server = h2_servers("--limit-concurrency", "2")
    ids = [f"lc-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    with H2Client(server.port) as client:
        sids = [client.request("GET", f"/sleep?id={rid}&t=1") for rid in ids]
        streams = [client.response(sid, timeout=10) for sid in sids]
        served = [s for s in streams if s.status == 200]
        refused = [s for s in streams if s.status == 503 or s.reset == REFUSED_STREAM]
        assert len(served) + len(refused) == 4, streams
        assert served and refused, streams
        for stream in refused:
            if stream.status == 503:
                assert bytes(stream.data) == b"Service Unavailable", stream
        # (Same connection: a new one might still be counted against the limit.)
        assert client.get("/hello").status == 200 and client.goaway is None


@palfrey_h2_only
def test_a_refused_stream_still_sending_is_told_to_stop(h2_servers):  # noqa: F811
    """The 503 of --limit-concurrency on a stream whose body has not ended is followed by
    RST_STREAM(NO_ERROR) (RFC 9113 8.1), as 413/414/431 are: the client stops uploading."""
    server = h2_servers("--limit-concurrency", "1")  # the connection alone reaches it
    with H2Client(server.port) as client:
        refused = client.request("POST", "/echo", body=b"x" * 1000, end_stream=False)
        client.wait(lambda: client.streams[refused].reset is not None, 10, "the reset")
        stream = client.streams[refused]
        assert stream.status == 503 and stream.reset == 0, stream  # NO_ERROR
        assert client.goaway is None
