"""Randomised (fixed seed) requests, fragmented at random points, checked against the scope
the test itself expects. Aimed at buffer-boundary bugs in the compiled parser: the pieces are
fed in-process, one read each (tests/support/harness.py); the last test writes them over a real
socket on each event loop."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from tests import apps
from tests.support.client import RawConn
from tests.support.harness import Harness, check_invariants

KNOWN_NAMES = [
    "Host",
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Cookie",
    "Content-Type",
    "Referer",
    "Authorization",
    "Cache-Control",
    "X-Request-Id",
    "X-Forwarded-For",
    "Origin",
    "If-None-Match",
    "Connection",
]
TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VALUE_CHARS = string.ascii_letters + string.digits + " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
# obs-text (0x80-0xFF) is legal in field values and must pass through untouched.
VALUE_CHARS += "".join(map(chr, range(0x80, 0x100)))
PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/"


@pytest.fixture(scope="module")
def scope_harness():
    with Harness(apps.scope_app) as harness:
        yield harness


def random_request(rng: random.Random, big: bool = False) -> tuple[bytes, dict]:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
    segments = []
    for _ in range(rng.randint(1, 4)):
        seg = "".join(rng.choice(PATH_CHARS.replace("/", "")) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.3:
            seg += "%" + rng.choice(["20", "41", "C3%A9", "2F", "25"])
        segments.append(seg)
    raw_path = "/" + "/".join(segments)
    query = ""
    if rng.random() < 0.6:
        query = "&".join(
            f"{rng.choice('abcxyz')}={rng.randint(0, 999)}" for _ in range(rng.randint(1, 4))
        )
    target = raw_path + ("?" + query if query else "")
    headers = [("host", "example.org")]
    n_headers = rng.randint(0, 36 if big else 12)
    for _ in range(n_headers):
        if rng.random() < 0.5:
            name = rng.choice(KNOWN_NAMES[1:-1])
        else:
            name = "X-" + "".join(rng.choice(TOKEN_CHARS) for _ in range(rng.randint(1, 20)))
        name = rng.choice([name, name.lower(), name.upper()])
        length = rng.randint(0, 1500 if big else 60)
        value = "".join(rng.choice(VALUE_CHARS) for _ in range(length)).strip(" ")
        headers.append((name, value))
    body = b""
    chunked = False
    if method != "GET" and rng.random() < 0.8:
        body = rng.randbytes(rng.randint(0, 20000 if big else 300))
        chunked = rng.random() < 0.4
    lines = [f"{method} {target} HTTP/1.1"] + [f"{n}: {v}" for n, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = bytearray()
        pos = 0
        while pos < len(body):
            n = rng.randint(1, 5000)
            piece = body[pos : pos + n]
            payload += b"%x\r\n" % len(piece) + piece + b"\r\n"
            pos += n
        payload += b"0\r\n\r\n"
    else:
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + bytes(payload)
    expected_headers = [[n.lower(), v] for n, v in headers]
    if chunked:
        expected_headers.append(["transfer-encoding", "chunked"])
    elif body or method != "GET":
        expected_headers.append(["content-length", str(len(body))])
    expected = {
        "method": method,
        "path": unquote(raw_path),
        "raw_path": raw_path,
        "query_string": query,
        "headers": expected_headers,
        "_body": body.decode("latin-1"),
    }
    return data, expected


def split_randomly(rng: random.Random, data: bytes, max_parts: int) -> list[bytes]:
    n = rng.randint(1, max_parts)
    cuts = sorted(rng.sample(range(1, len(data)), min(n - 1, len(data) - 1)))
    parts, prev = [], 0
    for c in cuts + [len(data)]:
        parts.append(data[prev:c])
        prev = c
    return parts


def check(scope: dict, expected: dict, label) -> None:
    got = {k: scope[k] for k in expected}
    assert got == expected, label


def scope_of(harness: Harness, reads: list[bytes]) -> dict:
    (resp,) = check_invariants(harness.run_connection(reads))
    assert resp.status == 200, resp
    return json.loads(resp.body)


def test_random_requests_fragmented(scope_harness):
    rng = random.Random(20240601)
    for i in range(150):
        data, expected = random_request(rng)
        check(scope_of(scope_harness, split_randomly(rng, data, 6)), expected, (i, data[:300]))


def test_random_big_requests_fragmented(scope_harness):
    # Header sections of tens of KiB and bodies of tens of KiB, cut at random points, so that
    # names, values and chunk headers straddle the server's reads.
    rng = random.Random(77)
    for i in range(40):
        data, expected = random_request(rng, big=True)
        check(scope_of(scope_harness, split_randomly(rng, data, 12)), expected, i)


def pipelined_batches(rng: random.Random) -> Iterator[tuple[int, list[bytes], list[dict]]]:
    """8 batches of 15 requests, each batch cut into up to 20 pieces; big requests in every
    other batch. Yields (batch, pieces, expected scopes)."""
    for batch in range(8):
        reqs = [random_request(rng, big=batch % 2 == 1) for _ in range(15)]
        yield batch, split_randomly(rng, b"".join(r for r, _ in reqs), 20), [e for _, e in reqs]


def test_random_pipelined_batches(scope_harness):
    rng = random.Random(4242)
    for batch, pieces, expected in pipelined_batches(rng):
        # Half the pieces arrive with the one before them, half in a read of their own.
        reads: list[bytes] = []
        for j, piece in enumerate(pieces):
            if j and rng.random() < 0.5:
                reads.append(piece)
            elif reads:
                reads[-1] += piece
            else:
                reads.append(piece)
        responses = check_invariants(scope_harness.run_connection(reads))
        assert len(responses) == len(expected), (batch, len(responses))
        for i, (resp, scope) in enumerate(zip(responses, expected, strict=True)):
            assert resp.status == 200, (batch, i, resp)
            check(json.loads(resp.body), scope, (batch, i))


def test_random_pipelined_batches_over_a_socket(any_loop_scope_server):
    # The same batches written in pieces over a real socket, on each event loop: the pauses
    # are a client writing in bursts, the kernel decides the reads.
    rng = random.Random(4242)
    for batch, pieces, expected in pipelined_batches(rng):
        with RawConn(any_loop_scope_server.port, timeout=10) as conn:
            for j, piece in enumerate(pieces):
                if j and rng.random() < 0.5:
                    time.sleep(0.001)
                conn.send(piece)
            for i, scope in enumerate(expected):
                resp = conn.read_response()
                assert resp.status == 200, (batch, i, resp)
                check(json.loads(resp.body), scope, (batch, i))
