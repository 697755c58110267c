"""Request bodies, Expect: 100-continue, http.disconnect."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import uuid

import httpx
import pytest

from tests import apps
from tests.support.client import ConnectionClosed, RawConn, raw_request, simple_get
from tests.support.common import wait_until
from tests.support.harness import Harness, check_invariants
from tests.support.server import wait_for_note

H = b"Host: example.org\r\n"


def report(server, rid: str, timeout: float = 5.0, key: str | None = None, value=None):
    """Poll /report?id=rid until the app has recorded something (optionally key == value)."""

    def probe():
        r = httpx.get(server.url(f"/report?id={rid}"), timeout=5)
        data = r.json()
        if data is None:
            return None
        if key is not None and data.get(key) != value:
            return None
        return data

    return wait_until(probe, timeout, 0.05)


def test_empty_body(server):
    resp, conn = raw_request(server.port, simple_get("/body-info"))
    with conn:
        info = json.loads(resp.body)
        assert info["length"] == 0
        assert info["messages"] == [
            {"type": "http.request", "len": 0, "more_body": False, "body_type": "bytes"}
        ]


def test_small_body_single_message(server):
    req = b"POST /body-info HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
    resp, conn = raw_request(server.port, req)
    with conn:
        info = json.loads(resp.body)
        assert info["length"] == 5
        assert info["sha256"] == hashlib.sha256(b"hello").hexdigest()
        assert info["messages"][-1]["more_body"] is False
        assert all(m["type"] == "http.request" for m in info["messages"])
        assert all(m["body_type"] == "bytes" for m in info["messages"])


def test_large_body_httpx(server):
    data = random.Random(7).randbytes(1 << 20)
    r = httpx.post(server.url("/body-info"), content=data, timeout=10)
    info = r.json()
    assert info["length"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    msgs = info["messages"]
    assert msgs[-1]["more_body"] is False
    assert all(m["more_body"] is True for m in msgs[:-1])


def test_large_body_echo(server):
    data = random.Random(8).randbytes(300_000)
    r = httpx.post(server.url("/echo"), content=data, timeout=10)
    assert r.status_code == 200 and r.content == data


def large_chunked_request() -> tuple[bytes, bytes]:
    """(the request, its body): 1 MiB in chunks of 1 to 70,000 bytes, to /body-info."""
    rng = random.Random(9)
    data = rng.randbytes(1 << 20)
    parts = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 70_000)
        parts.append(b"%x\r\n" % len(data[pos : pos + n]) + data[pos : pos + n] + b"\r\n")
        pos += n
    req = (
        b"POST /body-info HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(parts)
        + b"0\r\n\r\n"
    )
    return req, data


def test_large_chunked_body_raw(any_loop_server):
    req, data = large_chunked_request()
    with RawConn(any_loop_server.port, timeout=10) as conn:
        # Odd-sized writes; the kernel decides the reads (see the next test for exact ones).
        for i in range(0, len(req), 9973):
            conn.send(req[i : i + 9973])
        resp = conn.read_response()
        info = json.loads(resp.body)
        assert info["length"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()


def test_large_chunked_body_in_odd_reads():
    # Reads of 9973 bytes, in-process: chunk headers straddle reads at known places.
    req, data = large_chunked_request()
    with Harness(apps.app) as harness:
        (resp,) = check_invariants(
            harness.run_connection([req[i : i + 9973] for i in range(0, len(req), 9973)])
        )
    info = json.loads(resp.body)
    assert info["length"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()


def test_large_body_slow_reader(any_loop_server):
    # The app sleeps between receive() calls: reading must pause and resume without loss.
    data = random.Random(10).randbytes(4 << 20)
    r = httpx.post(any_loop_server.url("/body-info?delay=0.002"), content=data, timeout=30)
    info = r.json()
    assert info["length"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()


def test_body_arrives_in_pieces():
    # The head, then the body in two reads (in-process: each piece is one read).
    reads = [b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n", b"hello", b" world"]
    with Harness(apps.app) as harness:
        (resp,) = check_invariants(harness.run_connection(reads))
        assert resp.body == b"hello world"


def test_unread_body_is_skipped(server):
    # The app answers without reading the body; the next request on the connection still works.
    with RawConn(server.port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Content-Length: 10\r\n\r\n0123456789"
            + b"POST / HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            + simple_get("/echo-path/third")
        )
        assert conn.read_response().body == b"Hello, world!"
        assert conn.read_response().body == b"Hello, world!"
        assert conn.read_response().body == b"/echo-path/third"


# -- Expect: 100-continue -------------------------------------------------------------------


@pytest.mark.parametrize("expect", [b"100-continue", b"100-Continue"])
def test_expect_continue_when_app_reads(any_loop_server, expect):
    with RawConn(any_loop_server.port) as conn:
        conn.send(
            b"POST /expect-read HTTP/1.1\r\n"
            + H
            + b"Content-Length: 5\r\nExpect: "
            + expect
            + b"\r\n\r\n"
        )
        interim = conn.read_until(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello")
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"got:hello"


def test_expect_continue_chunked(server):
    with RawConn(server.port) as conn:
        conn.send(
            b"POST /expect-read HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        assert conn.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"3\r\nabc\r\n0\r\n\r\n")
        assert conn.read_response().body == b"got:abc"


def test_expect_continue_not_sent_when_app_does_not_read(server):
    with RawConn(server.port) as conn:
        conn.send(
            b"POST /expect-noread HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"no read"
        assert b"100 Continue" not in conn.received, conn.received


def test_no_100_without_expect(server):
    with RawConn(server.port) as conn:
        conn.send(b"POST /expect-read HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello")
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"got:hello"
        assert b"100 Continue" not in conn.received


def test_expect_continue_body_already_sent(server):
    # A client that does not wait for the 100: still correct (a 100 may or may not precede).
    with RawConn(server.port) as conn:
        conn.send(
            b"POST /expect-read HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\nhello" + simple_get("/echo-path/next")
        )
        resp = conn.read_response()
        if resp.status == 100:
            resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"got:hello"
        assert conn.read_response().body == b"/echo-path/next"


def test_expect_continue_httpx(server):
    r = httpx.post(
        server.url("/expect-read"),
        content=b"payload",
        headers={"Expect": "100-continue"},
        timeout=5,
    )
    assert r.status_code == 200 and r.content == b"got:payload"


# -- disconnect -----------------------------------------------------------------------------


def test_disconnect_after_body(any_loop_server):
    server = any_loop_server
    rid = uuid.uuid4().hex
    conn = RawConn(server.port)
    conn.send(
        f"POST /disconnect?id={rid} HTTP/1.1\r\n".encode() + H + b"Content-Length: 5\r\n\r\nhello"
    )
    assert report(server, rid, key="phase", value="waiting"), "app never got the body"
    conn.close()
    data = report(server, rid, key="phase", value="done")
    assert data, f"app did not see a disconnect: {report(server, rid)}"
    assert data["body"] == "hello"
    assert data["message"] == {"type": "http.disconnect"}
    # send() after the disconnect is a silent no-op.
    assert data["send_error"] is None


def test_disconnect_mid_body(server):
    rid = uuid.uuid4().hex
    conn = RawConn(server.port)
    conn.send(
        f"POST /body-info?id={rid} HTTP/1.1\r\n".encode()
        + H
        + b"Content-Length: 100000\r\n\r\n"
        + b"x" * 1000
    )
    # The app has part of the body (how much depends on the server's reads).
    assert server.wait_for_log(rf"^APP body-info {rid} received \d+$", "stderr", 5)
    conn.close()
    # The server survives and keeps serving.
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200


def test_receive_after_response_is_disconnect(server):
    rid = uuid.uuid4().hex
    with RawConn(server.port) as conn:
        conn.send(f"GET /receive-after-response?id={rid} HTTP/1.1\r\n".encode() + H + b"\r\n")
        resp = conn.read_response()
        assert resp.body == b"done"
        data = report(server, rid)
        assert data == {"message": {"type": "http.disconnect"}}, data


INCOMPLETE = [
    b"GET / HTTP/1.1\r\nHost: exa",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nonly-part",
]


def test_incomplete_request_then_eof(server):
    mark = server.mark()
    for data in INCOMPLETE:
        with RawConn(server.port) as conn:
            conn.send(data)
            conn.sock.shutdown(socket.SHUT_WR)  # the kernel may hand both over in one go
            rest = conn.read_until_close(5)
            assert b"HTTP/1.1 200" not in rest, rest
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200
    assert not any("Traceback" in x for x in server.since(mark)), server.since(mark)


@pytest.mark.parametrize("data", INCOMPLETE, ids=["head", "body"])
def test_incomplete_request_read_then_eof(data):
    # In-process, the read and the end of the connection come apart, the app (if any) waiting
    # in between: no answer, no error, nothing left behind.
    with Harness(apps.app) as harness:
        outcome = harness.run_connection([data])
    assert b"HTTP/1.1 200" not in outcome.out, outcome.out
    assert not outcome.errors and not outcome.leaks, outcome


def test_client_gone_during_slow_app_no_error(server):
    mark = server.mark()
    c1 = RawConn(server.port)
    c1.send(simple_get("/slow?t=0.4&id=gone-fin"))
    c2 = RawConn(server.port)
    c2.send(simple_get("/slow?t=0.4&id=gone-rst"))
    wait_for_note(server, "slow gone-fin started")
    wait_for_note(server, "slow gone-rst started")
    c1.close()  # FIN
    c2.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c2.close()  # RST
    # Both apps answer into a closed connection, then return: whatever the server logs about
    # that is written before the next response's access line.
    wait_for_note(server, "slow gone-fin finished")
    wait_for_note(server, "slow gone-rst finished")
    r = httpx.get(server.url("/"), timeout=5)
    assert r.status_code == 200
    server.catch_up()
    bad = [x for x in server.since(mark) if x.startswith("ERROR") or "Traceback" in x]
    assert bad == [], server.since(mark)


def test_big_unread_body_then_pipelined_request(server):
    with RawConn(server.port, timeout=10) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Content-Length: 1000000\r\n\r\n"
            + b"x" * 1000000
            + simple_get("/echo-path/n")
        )
        assert conn.read_response().status == 200
        # Either the next request is answered or the connection is closed; never a hang.
        try:
            r2 = conn.read_response()
        except ConnectionClosed as exc:
            assert conn.eof, exc
        else:
            assert r2.body == b"/echo-path/n"


@pytest.mark.palfrey_only  # Uvicorn sends the 100 to HTTP/1.0 clients too.
def test_expect_continue_http10_ignored():
    # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored. The
    # head and the body come in two reads (in-process), the app waiting for the body between.
    head = b"POST /expect-read HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    with Harness(apps.app) as harness:
        outcome = harness.run_connection([head, b"hello"])
    (resp,) = check_invariants(outcome)
    assert resp.status == 200 and resp.body == b"got:hello", resp
    assert b"100 Continue" not in outcome.out, outcome.out


def test_expect_continue_waits_for_pipelined_predecessor(server):
    # The 100 for the second request must not overtake the first response.
    with RawConn(server.port) as conn:
        conn.send(
            simple_get("/slow?t=0.3")
            + b"POST /expect-read HTTP/1.1\r\n"
            + H
            + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        first = conn.read_response()
        assert first.status == 200 and first.body == b"slow done", first
        assert conn.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello")
        assert conn.read_response().body == b"got:hello"


def test_empty_chunked_body_single_message(server):
    req = b"POST /body-info HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    resp, conn = raw_request(server.port, req)
    with conn:
        info = json.loads(resp.body)
        assert info["length"] == 0
        assert info["messages"][-1] == {
            "type": "http.request", "len": 0, "more_body": False, "body_type": "bytes",
        }  # fmt: skip
        assert all(m["type"] == "http.request" for m in info["messages"])


def test_http10_post_body(server):
    resp, conn = raw_request(server.port, b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd")
    with conn:
        assert resp.status == 200 and resp.body == b"abcd"
        assert conn.wait_closed(5)
