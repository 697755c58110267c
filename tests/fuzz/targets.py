"""The fuzz targets. Each takes raw bytes and raises AssertionError on a broken invariant.

    protocol   the bytes are one read of a connection: check_invariants on what comes out
    split      the first bytes choose split points, the rest is the input: fed whole and fed
               in those pieces, the client must see exactly the same thing
    websocket  split points as for split, the rest is what a client sends after a WebSocket
               handshake: the app must receive what wsproto alone reads from those bytes,
               and the echoes must be well-formed server frames
    response   the bytes are what the app sends (status, headers, body messages) for a
               request they also choose: the client must read exactly that (response.py)

Each runs the compiled protocol in-process (tests/support/harness.py). Neither needs atheris:
the pytest replay and the random engine call them directly.
"""

from __future__ import annotations

from tests.fuzz.apps import LIMITS, new_driver
from tests.fuzz.response import response_target
from tests.fuzz.websocket import WebSocketEcho, check_echoes, wsproto_reading
from tests.support.harness import Harness, Outcome, check_invariants

MAX_SPLITS = 8

_driver: Harness | None = None
_ws_driver: WebSocketEcho | None = None


def driver() -> Harness:
    global _driver
    if _driver is None:
        _driver = new_driver()
    return _driver


def ws_driver() -> WebSocketEcho:
    global _ws_driver
    if _ws_driver is None:
        _ws_driver = WebSocketEcho(LIMITS)
    return _ws_driver


def protocol_target(data: bytes) -> None:
    outcome = driver().run_connection([data])
    responses = check_invariants(outcome)
    coverage_hint(outcome, [r.status for r in responses])


def decode_split_input(data: bytes) -> tuple[bytes, list[bytes]]:
    """First byte: how many cuts (mod MAX_SPLITS + 1); then two bytes per cut, big-endian,
    taken modulo the payload length; the rest is the payload."""
    if not data:
        return b"", []
    cuts = data[0] % (MAX_SPLITS + 1)
    header_end = 1 + 2 * cuts
    payload = data[header_end:]
    raw = data[1:header_end]
    positions = sorted(
        {int.from_bytes(raw[i : i + 2], "big") % (len(payload) + 1) for i in range(0, len(raw), 2)}
    )
    pieces, start = [], 0
    for cut in [*positions, len(payload)]:
        if cut > start:
            pieces.append(payload[start:cut])
            start = cut
    return payload, pieces


def split_target(data: bytes) -> None:
    payload, pieces = decode_split_input(data)
    whole = driver().run_connection([payload])
    split = driver().run_connection(pieces)
    check_invariants(whole)
    check_invariants(split)
    assert same_outcome(whole, split), describe_difference(whole, split, pieces)


def websocket_target(data: bytes) -> None:
    payload, pieces = decode_split_input(data)
    result = ws_driver().run_connection(pieces)
    check_echoes(result)
    expected = wsproto_reading(payload)
    assert result.reading == expected, (
        f"in {len(pieces)} pieces ({[len(p) for p in pieces]}) the app got {result.reading!r}, "
        f"wsproto alone reads {expected!r}"
    )


# KNOWN CORE ISSUE: a header line that is both over a limit and malformed gets 400 or 431
# depending on where the reads end, because llhttp hands the span to the limit check only at
# the end of the token or of the read. (The request target no longer does: see
# _parse_error_status and tests/fuzz/test_fuzz.py.) Both are a rejection and a close; the
# fuzzer tolerates this one difference so that it can keep looking for others.
LIMIT_OR_INVALID = {400, 431}


def same_outcome(whole: Outcome, split: Outcome, tolerate_known: bool = True) -> bool:
    if whole.comparable() == split.comparable():
        return True
    if not tolerate_known:
        return False
    a, b = _last_rejection(whole.out), _last_rejection(split.out)
    if a is None or b is None or {a[1], b[1]} == {a[1]} or not {a[1], b[1]} <= LIMIT_OR_INVALID:
        return False
    return a[0] == b[0] and whole.comparable()[1:] == split.comparable()[1:]


def _last_rejection(out: bytes) -> tuple[bytes, int] | None:
    """(output before the last response, its status) when that status is a rejection."""
    start = out.rfind(b"HTTP/1.1 ")
    if start < 0:
        return None
    digits = out[start + 9 : start + 12]
    if not digits.isdigit():
        return None  # "HTTP/1.1 " inside an echoed body
    status = int(digits)
    return (out[:start], status) if status in LIMIT_OR_INVALID else None


def describe_difference(whole: Outcome, split: Outcome, pieces: list[bytes]) -> str:
    return (
        f"the result depends on how the input is split into {len(pieces)} pieces "
        f"({[len(p) for p in pieces]}):\n whole: {whole.comparable()!r}\n split: {split.comparable()!r}"
    )


def coverage_hint(outcome: Outcome, statuses: list[int]) -> int:
    """Gives atheris something to steer by: the compiled core is not instrumented, so the
    only coverage it sees is this (instrumented) function's branches, one per outcome kind."""
    kind = 0
    for status in statuses[:4]:
        kind <<= 3
        if status == 100:
            kind |= 1
        elif status == 200:
            kind |= 2
        elif status == 400:
            kind |= 3
        elif status == 413:
            kind |= 4
        elif status == 414:
            kind |= 5
        elif status == 431:
            kind |= 6
        elif status == 501:
            kind |= 7
    if outcome.closed:
        kind |= 1 << 20
    if outcome.errors:
        kind |= 1 << 21
    if len(statuses) > 1:
        kind |= 1 << 22
    if len(statuses) > 3:
        kind |= 1 << 23
    return kind


TARGETS = {"protocol": protocol_target, "split": split_target, "websocket": websocket_target,
           "response": response_target}
