"""Defences against the known HTTP/2 attacks (SPEC.md section 8, RFC 9113 10.5), each sent as
raw frames (hyperframe + hpack) to a fresh server. Each must end in RST_STREAM or GOAWAY
(ENHANCE_YOUR_CALM or PROTOCOL_ERROR) before the attack is over, the server's peak RSS may grow
by less than 100 MiB, and a new connection is served afterwards. Each test prints one
``H2-FIGURE`` line (pytest -s): what was sent before the server ended it, its CPU and RSS.

The volumes are the contract: no legitimate client sends them on one connection.
- rapid reset (CVE-2023-44487): 20,000 HEADERS+RST_STREAM pairs;
- CONTINUATION flood (CVE-2024-27316): CONTINUATION frames without END_HEADERS, 10 MB;
- HPACK bomb: one 4 KB header indexed 20,000 times (80 MB decoded) in one block;
- SETTINGS, PING (never reading the ACKs), WINDOW_UPDATE, empty DATA and empty CONTINUATION
  floods (CVE-2019-9512, -9515, -9518): 100,000 frames each;
- zero-window hold and data dribble (CVE-2019-9517, -9511): the apps' send() waits;
- too many streams: the 101st concurrent stream is refused (RFC 9113 5.1.2).
"""

from __future__ import annotations

import uuid

import pytest
from hpack.hpack import encode_integer

from tests.support.h2 import (
    COMPRESSION_ERROR,
    ENHANCE_YOUR_CALM,
    INITIAL_WINDOW_SIZE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RawH2,
    Usage,
    assert_served,
    continuation_frame,
    data_frame,
    figure,
    h2_servers,  # noqa: F401 - fixture
    ping_frame,
    report,
    request_headers,
    rst_frame,
    settings_frame,
    window_update_frame,
)
from tests.support.h2 import (
    palfrey_h2_only as defence,  # Hypercorn has not all of them: H2_TEST_ALL=1 to see
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]

CALM = (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)
MIB = 1 << 20
FLOOD = 100_000


@pytest.fixture
def target(h2_servers):  # noqa: F811
    """A fresh server, and its resource use measured from here. (A bounded graceful
    shutdown: apps an attack left waiting must not hold up the teardown.)"""
    server = h2_servers("--timeout-graceful-shutdown", "2")
    server.usage = Usage(server.pid)
    return server


def ended_early(raw: RawH2, sent: int, total: int) -> bool:
    """GOAWAY(ENHANCE_YOUR_CALM or PROTOCOL_ERROR), or the connection closed or reset by the
    server (no GOAWAY of another kind) before all ``total`` units of the attack were sent."""
    if raw.goaway is not None:
        return raw.goaway.error_code in CALM
    return (raw.eof or raw.send_error == "closed") and sent < total


def settle(raw: RawH2, timeout: float = 5.0) -> None:
    """After the flood: read (bounded) until GOAWAY or close."""
    raw.wait_for(lambda: raw.goaway is not None or raw.eof, timeout)


def check_after(server, name: str, raw: RawH2, **values: object) -> None:
    usage = server.usage.measure()
    figure(name, **values, outcome=raw.describe(), server_cpu_s=round(usage.cpu, 2),
           peak_rss_growth_mib=round(usage.peak_growth_mib, 1))
    assert usage.peak_growth_mib < 100, usage.peak_growth_mib
    assert_served(server)


@defence
def test_rapid_reset(target):
    total = 20_000
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        first = raw.header_block(request_headers("/hello"))
        again = raw.header_block(request_headers("/hello"))  # all indexed from here on

        def pairs():
            for i in range(total):
                sid = 2 * i + 1
                yield (raw.headers_frame(sid, first if i == 0 else again).serialize()
                       + rst_frame(sid).serialize())

        sent = raw.flood(pairs())
        settle(raw)
        goaway = raw.goaway
        check_after(target, "rapid-reset", raw, pairs_sent=sent, of=total)
        assert ended_early(raw, sent, total), raw.describe()
        # Before the end: the server stopped taking streams before the last pair.
        assert goaway is None or goaway.last_stream_id < 2 * total - 1, raw.describe()


@defence
def test_reset_after_the_answer_begins(target):
    # Rapid reset paced by the answers: each stream is reset in a later read, once its DATA
    # has arrived (the same-read guard does not apply). The WINDOW_UPDATEs owed for that DATA
    # are free, the resets are not: the budget runs out all the same.
    rounds, batch, window = 100, 90, 1024  # under the 100 concurrent streams
    with RawH2(target.port, settings={INITIAL_WINDOW_SIZE: window}) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        sent = 0
        for round_ in range(rounds):
            sids = [2 * (round_ * batch + i) + 1 for i in range(batch)]
            if not raw.send([raw.headers_frame(sid, request_headers("/big?size=100000"))
                             for sid in sids]):
                break
            raw.wait_for(lambda: raw.goaway is not None or all(s in raw.data for s in sids))
            # The resets, and the connection's window back for the next round.
            frames = [*(rst_frame(s) for s in sids), window_update_frame(0, batch * window)]
            if raw.goaway is not None or raw.eof or not raw.send(frames):
                break
            sent += batch
        settle(raw)
        check_after(target, "reset-after-answer", raw, resets_sent=sent, of=rounds * batch)
        assert raw.goaway is not None and raw.goaway.error_code in CALM, raw.describe()
        assert sent < rounds * batch, raw.describe()


def literal_field(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + bytes(encode_integer(len(name), 7)) + name + \
        bytes(encode_integer(len(value), 7)) + value


@defence
def test_continuation_flood(target):
    limit = 10_000_000
    field = literal_field(b"x-flood", b"a" * 16_000)  # one field per CONTINUATION frame
    frame = continuation_frame(1, field).serialize()
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        raw.send(raw.headers_frame(1, request_headers("/hello"), end_headers=False))
        sent = raw.flood([frame] * (limit // len(frame) + 1))
        settle(raw)
        check_after(target, "continuation-flood", raw, frames_sent=sent)
        assert ended_early(raw, sent, limit // len(frame) + 1), raw.describe()
        assert raw.bytes_sent < limit, raw.describe()
        assert raw.status(1) is None


@defence
def test_empty_continuation_flood(target):
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        raw.send(raw.headers_frame(1, request_headers("/hello"), end_headers=False))
        sent = raw.flood([continuation_frame(1, b"").serialize()] * FLOOD)
        settle(raw)
        check_after(target, "empty-continuation-flood", raw, frames_sent=sent, of=FLOOD)
        assert ended_early(raw, sent, FLOOD), raw.describe()
        assert raw.status(1) is None


@defence
def test_hpack_bomb(target):
    copies = 20_000
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        # 4038 bytes in the dynamic table (name + value + 32): the only entry, index 62.
        raw.send_request(1, "/hello", extra=[(b"x-bomb", b"a" * 4000)])
        assert raw.wait_for(lambda: raw.stream_done(1)) and raw.status(1) == 200, raw.describe()
        # :method GET, :scheme http, :path /, :authority localhost (not indexed), then the
        # bomb: 20,000 one-byte references to entry 62, 80 MB once decoded.
        block = b"\x82\x86\x84" + b"\x01\x09localhost" + b"\xbe" * copies
        raw.send([raw.headers_frame(3, block[:16384], end_stream=True, end_headers=False),
                  continuation_frame(3, block[16384:], end_headers=True)])
        raw.wait_for(lambda: raw.stream_done(3) or raw.goaway is not None or raw.eof)
        check_after(target, "hpack-bomb", raw, decoded_mb=copies * 4038 // 1_000_000)
        # 431, or a stream or connection error: never served.
        assert raw.status(3) in (None, 431), raw.describe()
        assert (raw.status(3) == 431 or 3 in raw.resets
                or (raw.goaway is not None
                    and raw.goaway.error_code in (*CALM, COMPRESSION_ERROR))), raw.describe()


@defence
@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood_never_reading(target, kind):
    """SETTINGS or PING frames that each call for an ACK, from a client that never reads
    them (a small receive buffer, nothing read until the end)."""
    frame = (settings_frame() if kind == "settings" else ping_frame(b"flooding")).serialize()
    with RawH2(target.port, rcvbuf=4096) as raw:
        sent = raw.flood([frame] * FLOOD, read=False)
        settle(raw)
        check_after(target, f"{kind}-flood", raw, frames_sent=sent, of=FLOOD)
        assert ended_early(raw, sent, FLOOD), raw.describe()


@defence
def test_window_update_flood(target):
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        sent = raw.flood([window_update_frame(0, 1).serialize()] * FLOOD)
        settle(raw)
        check_after(target, "window-update-flood", raw, frames_sent=sent, of=FLOOD)
        assert ended_early(raw, sent, FLOOD), raw.describe()


@defence
def test_empty_data_flood(target):
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        raw.send(raw.headers_frame(1, request_headers("/echo", "POST"), end_stream=False))
        sent = raw.flood([data_frame(1, b"").serialize()] * FLOOD, stop=lambda: 1 in raw.resets)
        raw.wait_for(lambda: raw.goaway is not None or raw.eof or 1 in raw.resets)
        check_after(target, "empty-data-flood", raw, frames_sent=sent, of=FLOOD)
        assert raw.resets.get(1) in CALM or ended_early(raw, sent, FLOOD), raw.describe()


def open_flood_streams(raw: RawH2, count: int, mib: int) -> tuple[list[int], list[str]]:
    ids = [f"hold-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    sids = [2 * i + 1 for i in range(count)]
    raw.send([raw.headers_frame(sid, request_headers(f"/flood?id={rid}&mib={mib}"))
              for sid, rid in zip(sids, ids, strict=True)])
    return sids, ids


@defence
def test_zero_window_hold(target):
    """Ten streams asking for 16 MiB each from a client whose window stays 0: the apps'
    send() waits (what they have handed over stays under 1 MiB each) and memory is bounded.
    (SPEC 8 names no timeout for a window that never opens: not asserted here.)"""
    with RawH2(target.port, settings={INITIAL_WINDOW_SIZE: 0}) as raw:
        sids, ids = open_flood_streams(raw, 10, 16)
        raw.wait_for(lambda: False, 1.0)  # read whatever comes for a second
        states = [report(target, rid) for rid in ids]
        received = sum(len(raw.data.get(sid, b"")) for sid in sids)
        check_after(target, "zero-window-hold", raw,
                    app_sent_mib=[round((s or {}).get("sent", 0) / MIB, 1) for s in states])
        assert received == 0, raw.describe()
        assert all(s is not None and s["sent"] <= MIB for s in states), states


@defence
def test_data_dribble(target):
    """Windows opened one byte at a time on ten 16 MiB streams: the server sends what the
    windows allow, the apps' send() waits, memory is bounded."""
    rounds = 200
    with RawH2(target.port, settings={INITIAL_WINDOW_SIZE: 0}) as raw:
        sids, ids = open_flood_streams(raw, 10, 16)
        raw.wait_for(lambda: raw.remote_settings)
        for _ in range(rounds):
            if not raw.send([window_update_frame(sid, 1) for sid in sids]
                            + [window_update_frame(0, len(sids))]):
                break
            raw.poll(0.005)
        raw.wait_for(lambda: False, 0.5)
        states = [report(target, rid) for rid in ids]
        received = {sid: bytes(raw.data.get(sid, b"")) for sid in sids}
        check_after(target, "data-dribble", raw, rounds=rounds,
                    bytes_received=sum(map(len, received.values())),
                    app_sent_mib=[round((s or {}).get("sent", 0) / MIB, 1) for s in states])
        for data in received.values():
            assert len(data) <= rounds and data == b"f" * len(data), raw.describe()
        if raw.goaway is not None:
            # Ended as a flood of WINDOW_UPDATEs: then the apps' send() became a no-op (the
            # client is gone), which is why their counters ran on without memory behind them.
            assert raw.goaway.error_code in CALM, raw.describe()
        else:
            assert all(s is not None and s["sent"] <= MIB for s in states), states


@defence
def test_too_many_streams(target):
    """101 streams at once against the default MAX_CONCURRENT_STREAMS of 100."""
    with RawH2(target.port) as raw:
        raw.wait_for(lambda: raw.remote_settings)
        sids = [2 * i + 1 for i in range(101)]
        raw.send([raw.headers_frame(sid, request_headers(f"/sleep?id=tms{sid}&t=1"))
                  for sid in sids])
        last = sids[-1]
        raw.wait_for(lambda: last in raw.resets or raw.goaway is not None or raw.eof)
        if raw.goaway is None:
            assert raw.resets.get(last) in (REFUSED_STREAM, PROTOCOL_ERROR), raw.describe()
            # The 100 within the limit are served.
            assert raw.wait_for(lambda: all(raw.stream_done(s) for s in sids[:-1]), 10)
            assert all(raw.status(s) == 200 for s in sids[:-1]), raw.describe()
        else:
            assert raw.goaway.error_code == PROTOCOL_ERROR, raw.describe()
        assert raw.status(last) is None
        check_after(target, "too-many-streams", raw)

