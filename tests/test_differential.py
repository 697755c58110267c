"""Differential parsing: the same raw requests to a real Palfrey (over a socket) and to h11.

The corpus (tests/differential_corpus.py, from RFC 9112) is fed to Palfrey, whose app echoes
each request it accepts as JSON, and to ``h11.Connection(h11.SERVER)``. Each side's result is
a list of events: ("request", what the parser saw) per request accepted, then possibly
("reject",) (any 4xx/5xx from Palfrey, RemoteProtocolError from h11) or ("incomplete",) (a
408 from Palfrey's 1 s header/body timeouts; h11 wanting more data). A disagreement fails the
test unless it is in DISAGREEMENTS with its reason; an entry that no longer disagrees fails
too, so the list stays true.

Not disagreements, but what ASGI cannot show, so both sides are reduced to it: an absolute-form
target is seen as its path and query (SPEC 2), an empty query (`/a?`) as no query, trailers
not at all, and for HEAD only the method (the response has no body to echo into).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import h11
import pytest

from tests.differential_corpus import CASES
from tests.support.client import ConnectionClosed, RawConn, ReadTimeout

pytestmark = pytest.mark.palfrey_only

Event = tuple

# Palfrey is strict on purpose (SPEC 2: llhttp strict mode, limits Uvicorn lacks); h11 is
# lenient in places RFC 9112 lets a server choose. Every case where the two differ, and why.
DISAGREEMENTS: dict[str, str] = {
    # -- request line ----------------------------------------------------------------------------
    "method-custom-token": "llhttp knows only registered methods (RFC 9110 16.1); h11 takes "
    "any token (RFC 9112 3.1). An unknown method gets 400 from Palfrey.",
    "method-lowercase": "Methods are case-sensitive (RFC 9110 9.1), so `get` is an unknown "
    "method: 400 from Palfrey (as method-custom-token); h11 takes any token.",
    "version-1.2": "RFC 9112 2.6 lets a server treat 1.x as 1.1; Palfrey serves 1.0 and 1.1 only "
    "(400), so no app sees a version it was not written for. h11 accepts it.",
    "version-2.0": "A major version other than 1 is not HTTP/1.1 (RFC 9112 2.6; a server may "
    "answer 505): Palfrey refuses it (400), h11 accepts any digit.",
    "request-line-double-space": "RFC 9112 3 lets a recipient parse the request line on "
    "whitespace boundaries; llhttp accepts `GET  /`, h11 follows the single-SP grammar.",
    "leading-empty-line": "RFC 9112 2.2: a server SHOULD ignore at least one empty line before "
    "the request line; Palfrey does, h11 refuses it.",
    "leading-two-empty-lines": "As leading-empty-line (RFC 9112 2.2).",
    "h2-preface": "The HTTP/2 preface on an HTTP/1 port is refused at once (SPEC 2); h11 parses "
    "`PRI * HTTP/2.0` as a request, then refuses the `SM` line.",
    "connect-authority-form": "Palfrey refuses CONNECT (400: an ASGI app cannot take over the "
    "socket for a tunnel); h11 accepts it as a protocol switch (RFC 9112 3.2.3).",
    "get-asterisk": "RFC 9112 3.2.4: the asterisk-form is only for OPTIONS; Palfrey refuses it "
    "with any other method (400, SPEC 2), h11 accepts it.",
    # -- target and Host ---------------------------------------------------------------------------
    "target-fragment": "A fragment is not part of a request target (RFC 9112 3.2.1); llhttp "
    "accepts it and Palfrey leaves it out of the scope, h11 keeps it in the target.",
    "target-no-slash": "origin-form must start with / (RFC 9112 3.2.1); llhttp refuses `abc`, "
    "h11 passes any non-space bytes.",
    "target-over-8k": "Palfrey's --limit-target-size (8 KiB, SPEC 2 beyond Uvicorn) -> 414 (RFC "
    "9112 3); h11 has no target limit.",
    "target-over-16k": "As target-over-8k; h11 checks its 16 KiB head limit only on data it "
    "buffers while waiting, so a head that arrives whole passes.",
    # -- fields --------------------------------------------------------------------------------------
    "field-obs-fold": "RFC 9112 5.2 lets a server reject obs-fold with 400 or unfold it; Palfrey "
    "rejects (SPEC 2), h11 unfolds.",
    "field-obs-fold-tab": "As field-obs-fold.",
    "field-value-ctl": "CTLs are not allowed in a field value (RFC 9110 5.5); llhttp strict "
    "refuses them, h11 lets them through.",
    "field-value-del": "As field-value-ctl (DEL is a CTL).",
    "field-count-101": "Palfrey's --limit-header-count (100) -> 431 (RFC 6585 5); h11 has no "
    "count limit.",
    "field-line-9k": "Palfrey's --limit-header-line-size (8 KiB, as nginx) -> 431; h11 allows "
    "up to its 16 KiB head limit.",
    "field-section-70k": "Palfrey's --limit-header-size (64 KiB) -> 431; h11's 16 KiB limit is "
    "checked only on data it buffers while waiting (see target-over-16k).",
    "line-ending-bare-lf": "RFC 9112 2.2 lets a recipient accept a bare LF; Palfrey (llhttp "
    "strict) refuses it, as SPEC 2 requires, h11 accepts it.",
    "line-ending-bare-lf-header": "As line-ending-bare-lf.",
    "head-end-bare-lf": "As line-ending-bare-lf.",
    "line-ending-bare-cr": "RFC 9112 2.2: a bare CR MUST be refused or replaced; Palfrey "
    "refuses at once, h11 keeps waiting for an LF (it never serves the request either).",
    # -- framing -------------------------------------------------------------------------------------
    "cl-list-same": "RFC 9112 6.3 step 5 lets a recipient accept `5, 5`; Palfrey refuses any "
    "Content-Length that is not one number (400), h11 accepts equal values.",
    "cl-duplicate-same": "As cl-list-same: Palfrey refuses a repeated Content-Length (SPEC 2).",
    "te-http10": "RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing; "
    "Palfrey refuses it (400, SPEC 2), h11 decodes the chunked body.",
    "te-and-cl": "RFC 9112 6.1: a server MAY reject a request with both Transfer-Encoding and "
    "Content-Length, and it is a smuggling vector; Palfrey rejects (SPEC 2), h11 lets TE win.",
    "cl-and-te": "As te-and-cl, fields in the other order.",
    "te-and-cl-zero": "As te-and-cl.",
    "te-case-insensitive": "Both accept; h11 lower-cases the Transfer-Encoding value it reports, "
    "Palfrey gives field values as received (SPEC 2: raw values).",
    "chunked-size-trailing-space": "llhttp strict refuses whitespace after the chunk size "
    "(RFC 9112 7.1 has none there without an extension); h11 accepts it.",
    "chunked-ext-bad-char": "A chunk extension is tokens and quoted strings (RFC 9112 7.1.1); "
    "llhttp refuses a CTL in it, h11 skips extensions unread.",
    "chunked-size-overflow": "A chunk size over 64 bits is refused at once by Palfrey (RFC 9112 "
    "7.1: anticipate overflow); h11 accepts it and waits for that much data.",
    "chunked-trailer-obs-fold": "As field-obs-fold, in the trailer section.",
}


# -- Palfrey over a socket -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_server(module_server_factory):
    # 1 s timeouts: an incomplete request gets its 408 (and an idle connection its close)
    # after 1-2.5 s instead of 10, so the whole corpus is answered in a few seconds.
    return module_server_factory(
        "tests.apps_hardening:echo",
        "--timeout-request-header", "1",
        "--timeout-request-body", "1",
        "--timeout-keep-alive", "1",
        "--no-access-log",
    )


def palfrey_events(port: int, data: bytes) -> list[Event]:
    events: list[Event] = []
    with RawConn(port, timeout=8.0) as conn:
        conn.try_send(data)
        while True:
            try:
                resp = conn.read_response(head=data.startswith(b"HEAD"))
            except ConnectionClosed:
                return events  # closed after the last answer (or refused with no answer)
            except ReadTimeout:
                return events + [("still-open",)]
            if resp.status == 100:
                continue
            if resp.status == 408:
                return events + [("incomplete",)]
            if resp.status >= 400:
                return events + [("reject",)]
            if data.startswith(b"HEAD"):
                events.append(("request", {"method": "HEAD"}))
            else:
                events.append(("request", json.loads(resp.body)))


@pytest.fixture(scope="module")
def palfrey_results(echo_server) -> dict[str, list[Event]]:
    """Every case on its own connection, all at once (the slow ones wait in parallel)."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = {name: pool.submit(palfrey_events, echo_server.port, data)
                   for name, data in CASES}  # fmt: skip
        return {name: future.result(timeout=30) for name, future in futures.items()}


# -- h11 in process ----------------------------------------------------------------------------------


def asgi_target(target: bytes) -> str:
    """What an ASGI scope can show of a target: path and query of an absolute-form target,
    no `?` for an empty query."""
    if not target.startswith((b"/", b"*")) and b"://" in target:
        after_scheme = target.split(b"://", 1)[1]
        cut = min((i for i in (after_scheme.find(b"/"), after_scheme.find(b"?")) if i >= 0),
                  default=len(after_scheme))  # fmt: skip
        target = after_scheme[cut:] or b"/"
        if target.startswith(b"?"):
            target = b"/" + target
    if target.endswith(b"?"):
        target = target[:-1]
    return target.decode("latin-1")


def h11_events(data: bytes) -> list[Event]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    events: list[Event] = []
    request: dict | None = None
    body = bytearray()
    for _ in range(100):  # bounded: no case holds that many events
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return events + [("reject",)]
        if event is h11.NEED_DATA:
            if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                return events
            return events + [("incomplete",)]
        if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return events
        if isinstance(event, h11.Request):
            request = {
                "method": event.method.decode("latin-1"),
                "target": asgi_target(event.target),
                "http_version": event.http_version.decode("latin-1"),
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in event.headers],
            }
            body.clear()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            request["body"] = body.decode("latin-1")
            if request["method"] == "HEAD":
                request = {"method": "HEAD"}
            events.append(("request", request))
            if request.get("method") == "CONNECT":
                return events  # h11 takes it as a tunnel: nothing HTTP follows
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE:
                return events
            conn.start_next_cycle()
    raise AssertionError("h11 produced more than 100 events")


# -- the comparison ------------------------------------------------------------------------------------


def short(events: list[Event], limit: int = 400) -> str:
    text = repr(events)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def test_corpus_is_large_enough_and_the_list_names_real_cases():
    names = [name for name, _ in CASES]
    assert len(names) >= 100 and len(set(names)) == len(names)
    assert not set(DISAGREEMENTS) - set(names), set(DISAGREEMENTS) - set(names)


@pytest.mark.parametrize("name,data", CASES, ids=[name for name, _ in CASES])
def test_palfrey_and_h11_agree(palfrey_results, name, data):
    ours = palfrey_results[name]
    theirs = h11_events(data)
    shown = f"Palfrey {short(ours)} / h11 {short(theirs)}"
    assert ("still-open",) not in ours, f"{name}: Palfrey neither answered nor closed: {ours}"
    if name in DISAGREEMENTS:
        assert ours != theirs, (
            f"{name} is listed as a disagreement but both give {short(ours)}: remove it from "
            "DISAGREEMENTS"
        )
    else:
        assert ours == theirs, f"{name}: {shown} (not in DISAGREEMENTS)"
