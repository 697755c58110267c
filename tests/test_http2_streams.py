"""Streams (SPEC.md section 8): concurrent, each its own ASGI request cycle, a slow one never
delaying another; responses as the app sent them (large, streamed, trailers), HEAD/204/304
without DATA, connection-specific fields dropped, names lower-cased, default headers."""

from __future__ import annotations

import uuid

import pytest
from hyperframe.frame import DataFrame

from tests.apps_h2 import grpc_message
from tests.support.h2 import (
    CONNECTION_SPECIFIC,
    ON_HYPERCORN,
    RUN_ALL,
    H2Client,
    RawH2,
    h2_server,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
    report,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


def assert_overlapped(server, ids: list[str]) -> None:
    """Every app started before the first one ended (they ran at the same time)."""
    states = [report(server, i) for i in ids]
    assert all(s and s["end"] is not None for s in states), states
    assert max(s["start"] for s in states) < min(s["end"] for s in states), states


def test_three_sleeping_streams_overlap(h2_server):  # noqa: F811
    ids = [f"overlap-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with H2Client(h2_server.port) as client:
        sids = [client.request("GET", f"/sleep?id={i}&t=1") for i in ids]
        for sid, rid in zip(sids, ids, strict=True):
            stream = client.response(sid, timeout=10)
            assert stream.status == 200 and bytes(stream.data) == f"slept {rid}".encode()
    assert_overlapped(h2_server, ids)


def test_slow_stream_does_not_delay_another(h2_server):  # noqa: F811
    rid = f"slow-{uuid.uuid4().hex[:8]}"
    with H2Client(h2_server.port) as client:
        slow = client.request("GET", f"/sleep?id={rid}&t=3")
        fast = client.response(client.request("GET", "/hello"))
        assert fast.status == 200 and bytes(fast.data) == b"Hello, world!"
        # The fast stream finished while the slow one had not even started its response.
        assert client.streams[slow].headers is None, client.streams[slow]
        client.reset(slow)


def test_fifty_streams_each_their_own_cycle(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        sids = {client.request("GET", f"/echo-path/{n}?i={n}"): n for n in range(50)}
        for sid, n in sids.items():
            stream = client.response(sid)
            assert stream.status == 200 and bytes(stream.data) == f"/echo-path/{n}?i={n}".encode()


def test_interleaved_uploads_each_echoed_whole(h2_server):  # noqa: F811
    bodies = [bytes([65 + i]) * 100_000 for i in range(3)]
    with H2Client(h2_server.port) as client:
        sids = [client.request("POST", "/echo", end_stream=False) for _ in bodies]
        piece = 10_000
        for offset in range(0, 100_000, piece):
            for sid, body in zip(sids, bodies, strict=True):
                client.send_body(sid, body[offset:offset + piece],
                                 end_stream=offset + piece >= len(body))
        for sid, body in zip(sids, bodies, strict=True):
            stream = client.response(sid)
            assert stream.status == 200 and bytes(stream.data) == body, stream


def test_large_response_arrives_whole(h2_server):  # noqa: F811
    size = 3_000_000
    with H2Client(h2_server.port) as client:
        stream = client.get(f"/big?size={size}", timeout=20)
    block = bytes(range(256)) * 256
    assert stream.status == 200 and stream.get("content-length") == str(size).encode()
    assert bytes(stream.data) == (block * (size // len(block) + 1))[:size]


def test_streamed_response(h2_server):  # noqa: F811
    with H2Client(h2_server.port, validate=False) as client:
        stream = client.get("/stream?n=5")
    assert stream.status == 200
    assert bytes(stream.data) == b"".join(b"chunk-%d\n" % i for i in range(5))
    assert stream.get("transfer-encoding") is None, stream.headers


@pytest.mark.parametrize(("method", "code"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_bodyless_responses_carry_no_data(h2_server, method, code):  # noqa: F811
    # Frame level: h2 itself rejects a 304 whose content-length has no body behind it.
    with RawH2(h2_server.port) as raw:
        raw.send_request(1, f"/bodyless?code={code}", method=method)
        assert raw.wait_for(lambda: raw.stream_done(1)), raw.describe()
        assert raw.status(1) == code and 1 in raw.ended and 1 not in raw.resets, raw.describe()
        data = [f for f in raw.frames if isinstance(f, DataFrame) and f.stream_id == 1]
        assert b"".join(f.data for f in data) == b"", data
        if not ON_HYPERCORN or RUN_ALL:
            # No DATA frame at all, not even an empty one: END_STREAM rides on the HEADERS
            # (Hypercorn sends an empty DATA frame with END_STREAM).
            assert data == [], data
        headers = dict(raw.response_headers(1))
    if method == "HEAD":
        assert headers.get(b"content-length") == b"16", headers
    if code == 204:
        assert b"content-length" not in headers, headers


def test_connection_specific_fields_dropped(h2_server):  # noqa: F811
    # validate=False: h2 would refuse the response itself; we want to see what came.
    with H2Client(h2_server.port, validate=False) as client:
        stream = client.get("/conn-headers")
    assert stream.status == 200 and bytes(stream.data) == b"ok", stream
    names = [name for name, _ in stream.headers]
    assert not set(names) & set(CONNECTION_SPECIFIC), names
    assert stream.get("x-kept") == b"yes"


def test_header_names_lowercased_values_kept(h2_server):  # noqa: F811
    with H2Client(h2_server.port, validate=False) as client:
        stream = client.get("/headers-out")
    assert stream.status == 200, stream
    names = [name for name, _ in stream.headers]
    assert all(name == name.lower() for name in names), names
    assert stream.get("x-mixed-case") == b"Value With Spaces"
    assert stream.get_all("x-dup") == [b"one", b"two"]


def test_date_header(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        stream = client.get("/hello")
    assert stream.get("date", ) is not None and stream.get("date").endswith(b" GMT"), stream


@palfrey_h2_only
def test_server_header(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        assert client.get("/hello").get_all("server") == [b"palfrey"]


def test_trailers_grpc_style(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        stream = client.response(client.request(
            "POST", "/grpc", body=grpc_message(b"ping"),
            headers=[("content-type", "application/grpc"), ("te", "trailers")]))
    assert stream.status == 200, stream
    assert stream.get("content-type") == b"application/grpc"
    assert bytes(stream.data) == grpc_message(b"echo:ping")
    assert stream.trailers is not None, stream
    assert (b"grpc-status", b"0") in stream.trailers and (b"grpc-message", b"OK") in stream.trailers
    assert "http.response.trailers" in report(h2_server, "grpc")["extensions"]


@palfrey_h2_only
def test_trailers_without_te_trailers(h2_server):  # noqa: F811
    """SPEC 2 asks for `TE: trailers` on HTTP/1.1 only: an HTTP/2 body always can end with
    trailers (the client reads frames, not a chunked body)."""
    with H2Client(h2_server.port) as client:
        stream = client.response(client.request("POST", "/grpc", body=grpc_message(b"x")))
    assert stream.status == 200 and stream.trailers is not None, stream
    assert (b"grpc-status", b"0") in stream.trailers
