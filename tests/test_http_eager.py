"""Answers given inside the parser (issue 11, item 1; the re-entrancy rule at the top of
_HttpCore in _parser.pyx).

On Python 3.12+ an app task takes its first step inside on_headers_complete, that is inside
llhttp_execute: an app that never waits sends its whole response from there. The rule: inside
the parser the response goes into the connection's output buffer and nothing is written to the
transport (but by a close, which writes what the buffer holds first); the responses to one
read leave in one write once the parser has returned, and after a close nothing more is read
or written. The harness feeds each read itself, so the test sees what happened inside it.
"""

from __future__ import annotations

import sys

import pytest

from tests.support.harness import Connection, Harness, check_invariants, parse_responses

pytestmark = [
    pytest.mark.palfrey_only,
    pytest.mark.skipif(
        sys.version_info < (3, 12),
        reason="eager tasks (asyncio eager_start) need Python 3.12: before it the app's first "
        "step runs on the next loop pass, never inside the parser",
    ),
]

# What followed the close in tests/fuzz/corpus/regressions/eager-close-then-garbage.
GARBAGE = b"P\nHost: t: \r"


class ImmediateApp:
    """Answers at once, never waiting; notes, per request, whether it ran inside a read of
    the harness and how many writes the transport had seen when its response was sent."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.in_read = False
        self.calls: list[tuple[str, bool, int]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = scope["path"].encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        assert self.conn is not None
        self.calls.append((scope["path"], self.in_read, len(self.conn.transport.writes)))

    def read(self, data: bytes) -> None:
        """One read of the whole of ``data`` (it fits the input buffer), noting that it runs."""
        assert self.conn is not None
        self.in_read = True
        try:
            assert self.conn.read(data) == len(data)
        finally:
            self.in_read = False


@pytest.fixture
def app():
    immediate = ImmediateApp()
    with Harness(immediate) as harness:
        immediate.conn = harness.connect()
        yield immediate


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\n" + extra + b"\r\n"


def test_pipelined_answers_are_given_inside_the_read_and_leave_in_one_write(app):
    app.read(get("/1") + get("/2") + get("/3"))
    # Each app ran inside the read (inside llhttp_execute) and wrote nothing itself.
    assert app.calls == [("/1", True, 0), ("/2", True, 0), ("/3", True, 0)]
    transport = app.conn.transport
    assert len(transport.writes) == 1, transport.writes
    assert [r.body for r in parse_responses(transport.writes[0])] == [b"/1", b"/2", b"/3"]
    assert not transport.closed and not transport.paused
    app.conn.settle()
    assert len(transport.writes) == 1, "more written after the read's write"
    # The connection is still in order: the next request is answered the same way.
    app.read(get("/4"))
    assert app.calls[-1] == ("/4", True, 1)
    assert [r.body for r in parse_responses(transport.writes[1])] == [b"/4"]
    check_invariants(app.conn.finish())


def test_a_close_inside_the_read_ends_it_and_nothing_after_it_is_read_or_written(app):
    post = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"  # body never read
    app.read(get("/1") + post + get("/3", b"Connection: close\r\n") + GARBAGE)
    # The last answer's completion closed the connection, inside the read: the close wrote
    # the buffer (all three responses) before the app's send() returned.
    assert app.calls == [("/1", True, 0), ("/2", True, 0), ("/3", True, 1)]
    transport = app.conn.transport
    assert transport.closed
    assert len(transport.writes) == 1, transport.writes  # the close wrote the buffer, once
    responses = parse_responses(transport.writes[0])
    assert [(r.status, r.body) for r in responses] == [(200, b"/1"), (200, b"/2"), (200, b"/3")]
    assert responses[2].header(b"connection") == b"close"
    app.conn.settle()
    outcome = app.conn.finish()
    assert outcome.writes == transport.writes[:1] and outcome.writes_after_close == 0
    # The garbage after the close was never parsed: no 400, no warning about it.
    assert not [message for _, message in outcome.log if "Invalid HTTP request" in message]
    check_invariants(outcome)


def test_the_regression_input_gets_its_three_answers_in_order():
    # corpus/regressions/eager-close-then-garbage, with an app that reads the body of the
    # POST (so that one waits) and answers the others at once; one read.
    async def app(scope, receive, send):
        body = b""
        if scope["method"] == "POST":
            message = await receive()
            body = message["body"]
        answer = scope["path"].encode() + b":" + body
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    data = (
        get("/a")
        + b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        + get("/n", b"Connection: close\r\n")
        + GARBAGE
    )
    with Harness(app) as harness:
        outcome = harness.run_connection([data])
    responses = check_invariants(outcome)
    answers = [(r.status, r.body) for r in responses]
    assert answers == [(200, b"/a:"), (200, b"/b:hi"), (200, b"/n:")]
    assert responses[-1].header(b"connection") == b"close"
    assert outcome.closed and outcome.writes_after_close == 0
    assert not outcome.errors and not outcome.leaks
