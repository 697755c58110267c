"""Errors on one stream stay on that stream (SPEC.md section 8): an app error before the
response starts is a 500 on that stream only; after it starts, the stream is reset; a
Content-Length that disagrees with the body is a stream error (RST_STREAM) and logged; the
client's RST_STREAM, or the connection's loss, is http.disconnect to the app (send() after it
a no-op); a malformed request is a stream or connection error, never served."""

from __future__ import annotations

import uuid

import pytest

from tests.support.h2 import (
    ON_HYPERCORN,
    PROTOCOL_ERROR,
    H2Client,
    RawH2,
    assert_served,
    h2_server,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
    request_headers,
    wait_report,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


def test_app_error_before_start_is_500_on_that_stream_only(h2_server):  # noqa: F811
    mark = h2_server.mark()
    rid = f"err-{uuid.uuid4().hex[:8]}"
    with H2Client(h2_server.port) as client:
        slow = client.request("GET", f"/sleep?id={rid}&t=0.5")
        bad = client.request("GET", "/raise-before")
        good = client.request("GET", "/hello")
        failed = client.response(bad)
        assert failed.status == 500, failed
        if not ON_HYPERCORN:  # (Hypercorn's 500 has no body)
            assert bytes(failed.data) == b"Internal Server Error", failed
            assert failed.get("content-type").startswith(b"text/plain"), failed.headers
        assert client.response(good).status == 200
        assert client.response(slow).status == 200
        # The connection carries on.
        assert client.get("/hello").status == 200 and client.goaway is None
    if not ON_HYPERCORN:
        assert h2_server.wait_for_log("Exception in ASGI application", "stderr", 5, mark)


# Hypercorn 0.18 leaves that stream open, neither ended nor reset.
@palfrey_h2_only
def test_app_error_after_start_resets_that_stream(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        bad = client.request("GET", "/raise-after")
        good = client.request("GET", "/hello")
        failed = client.response(bad)
        # Headers and "partial" went out; the 100 promised bytes never will.
        assert failed.reset is not None and not failed.ended, failed
        assert len(failed.data) < 100
        assert client.response(good).status == 200
        assert client.get("/hello").status == 200 and client.goaway is None


# Hypercorn 0.18 sends what the app sent and never resets the stream.
@palfrey_h2_only
@pytest.mark.parametrize(("path", "declared"), [("/cl-too-long", 10), ("/cl-too-short", 3)])
def test_content_length_mismatch_is_a_stream_error(h2_server, path, declared):  # noqa: F811
    mark = h2_server.mark()
    # Frame level: h2 would raise on a body longer than its content-length.
    with RawH2(h2_server.port) as raw:
        raw.send_request(1, path)
        raw.send_request(3, "/hello")
        assert raw.wait_for(lambda: raw.stream_done(1) and raw.stream_done(3)), raw.describe()
        assert 1 in raw.resets and 1 not in raw.ended, raw.describe()
        assert len(raw.data.get(1, b"")) <= declared, raw.data
        assert raw.status(3) == 200 and 3 in raw.ended, raw.describe()
        assert raw.goaway is None, raw.describe()
    if not ON_HYPERCORN:
        assert h2_server.wait_for_log(r"^ERROR:", "stderr", 5, mark), h2_server.since(mark)


def test_client_reset_is_disconnect_and_send_after_is_a_noop(h2_server):  # noqa: F811
    rid = f"rst-{uuid.uuid4().hex[:8]}"
    with H2Client(h2_server.port) as client:
        sid = client.request("POST", f"/disconnect?id={rid}", body=b"abc")
        state = wait_report(h2_server, rid, lambda s: s.get("phase") == "waiting")
        assert state and state["phase"] == "waiting", state
        client.reset(sid)
        state = wait_report(h2_server, rid, lambda s: s.get("phase") == "done")
        # The connection is still fine.
        assert client.get("/hello").status == 200
    assert state["phase"] == "done", state
    assert state["body"] == "abc" and state["message"]["type"] == "http.disconnect", state
    assert state["send_error"] is None, state


# Hypercorn 0.18 never tells those apps (they still wait 5 s later).
@palfrey_h2_only
def test_connection_loss_is_disconnect_on_every_stream(h2_server):  # noqa: F811
    ids = [f"lost-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    client = H2Client(h2_server.port)
    for rid in ids:
        client.request("POST", f"/disconnect?id={rid}", body=b"x")
    for rid in ids:
        assert wait_report(h2_server, rid, lambda s: s.get("phase") == "waiting")
    client.close()
    for rid in ids:
        state = wait_report(h2_server, rid, lambda s: s.get("phase") == "done")
        assert state["phase"] == "done" and state["message"]["type"] == "http.disconnect", state


MALFORMED = {
    "missing-path": [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost")],
    "uppercase-name": request_headers("/hello", extra=[(b"X-Upper", b"1")]),
    "connection-field": request_headers("/hello", extra=[(b"connection", b"keep-alive")]),
    "te-not-trailers": request_headers("/hello", extra=[(b"te", b"gzip")]),
    "pseudo-after-regular": [(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"http"),
                             (b":authority", b"localhost"), (b":path", b"/hello")],
    "unknown-pseudo": request_headers("/hello", extra=[(b":foo", b"bar")]),
    "empty-path": [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                   (b":path", b"")],
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_request_is_refused(h2_server, kind):  # noqa: F811
    """RFC 9113 8.1.1: malformed -> stream error PROTOCOL_ERROR (a connection error is
    accepted too); the app never answers it."""
    with RawH2(h2_server.port) as raw:
        raw.send(raw.headers_frame(1, MALFORMED[kind]))
        raw.wait_for(lambda: raw.stream_done(1) or raw.goaway is not None or raw.eof)
        assert raw.status(1) is None, raw.describe()
        assert (raw.resets.get(1) == PROTOCOL_ERROR
                or (raw.goaway is not None and raw.goaway.error_code == PROTOCOL_ERROR)), \
            raw.describe()
    assert_served(h2_server)
