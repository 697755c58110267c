"""What every protocol shares, defined once: HTTP/1.1 (the compiled core), WebSocket, HTTP/2.

- ``TOKEN_CHARS`` / ``is_token``: RFC 9110 5.6.2 ``tchar``, for field names (ours, the app's,
  --header values) and the parameter tokens of proxy headers.
- ``STATUS_PHRASES``: the reason phrase of each status code 100-599 (RFC 9110 15), "" if none.
- ``ERROR_MESSAGES`` / ``error_body``: the bodies of the answers the server gives on its own
  (400, 408, 413, 414, 431, 500, 501, 503), text/plain.
- ``http_date``: the ``date`` field value (RFC 9110 5.6.7 IMF-fixdate).
- ``access_target`` / ``log_access``: the client and target as log lines show them, and the
  access-log record, Uvicorn's shape.
- ``linger_and_close``: how the server closes a connection the client may still be sending on.

The compiled core builds its C tables from these at import; nothing here is on a per-request
path except ``log_access`` (only when the access log is on).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus

# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN_SET = frozenset(TOKEN_CHARS)


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 9110 token (a valid field name)."""
    return bool(text) and _TOKEN_SET.issuperset(text)


def _status_phrases() -> dict[int, str]:
    phrases = {}
    for code in range(100, 600):
        try:
            phrases[code] = HTTPStatus(code).phrase
        except ValueError:
            phrases[code] = ""
    return phrases


STATUS_PHRASES: dict[int, str] = _status_phrases()

# The answers the server writes without the app: status -> text/plain body. The same words
# as Uvicorn's where Uvicorn has the case (400, 500, 503).
ERROR_MESSAGES: dict[int, str] = {
    400: "Invalid HTTP request received.",
    408: "Request timeout.",
    413: "Request body too large.",
    414: "Request target too long.",
    431: "Request header fields too large.",
    500: "Internal Server Error",
    501: "Unsupported transfer coding.",
    503: "Service Unavailable",
}

ERROR_CONTENT_TYPE = b"text/plain; charset=utf-8"


def error_body(status: int) -> bytes:
    """The body of the server's own answer with ``status`` (a key of ERROR_MESSAGES)."""
    return ERROR_MESSAGES[status].encode("ascii")


def http_date(timestamp: float) -> bytes:
    """``timestamp`` (seconds since the epoch) as an IMF-fixdate, e.g.
    ``b"Sun, 06 Nov 1994 08:49:37 GMT"`` (RFC 9110 5.6.7)."""
    return formatdate(timestamp, usegmt=True).encode("ascii")


def access_target(scope: dict) -> tuple[str, str]:
    """``("127.0.0.1:52738", "/path?query")``: the client and the request target as the log
    lines show them (Uvicorn's shape; the client is "" on a unix socket)."""
    client = scope.get("client")
    path = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path = path + "?" + scope["query_string"].decode("ascii")
    return ("%s:%d" % tuple(client) if client else "", path)


def log_access(logger: logging.Logger, scope: dict, status: int) -> None:
    """One access-log record: ``127.0.0.1:52738 - "GET /?a=1 HTTP/1.1" 200``.

    ``record.args`` is ``(client, method, path?query, http_version, status)`` as Uvicorn's,
    so formatters written for Uvicorn keep working; logging.py adds the status phrase."""
    client, target = access_target(scope)
    logger.info(
        '%s - "%s %s HTTP/%s" %d',
        client,
        scope["method"],
        target,
        scope["http_version"],
        status,
    )


# A connection the server closes while the client may still be sending: closed at once, the
# unread input makes the kernel answer with a reset, which can destroy the last response
# before the client reads it (RFC 9112 9.6). So: half-close, read and discard, then close
# (nginx's lingering_close), bounded in time.
LINGER_SECONDS = 30.0  # in all (nginx: lingering_time)
LINGER_IDLE_SECONDS = 5.0  # without input (nginx: lingering_timeout)


class _Lingering(asyncio.Protocol):
    """Takes over a half-closed transport: discards input until EOF or a deadline."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.deadline = loop.time() + LINGER_SECONDS
        self.timer = loop.call_later(LINGER_IDLE_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        self.timer.cancel()
        remaining = self.deadline - self.loop.time()
        if remaining <= 0:
            self.transport.close()
        else:
            self.timer = self.loop.call_later(min(LINGER_IDLE_SECONDS, remaining), self.transport.close)

    def eof_received(self) -> bool:
        return False  # the client is done too: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


def linger_and_close(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``transport`` after what is written has gone, without resetting the client:
    half-close (FIN), discard what still arrives for at most LINGER_SECONDS (and no longer
    than LINGER_IDLE_SECONDS without input), then close. The transport's protocol is
    replaced: the caller sees nothing of the connection any more (no connection_lost).
    A transport that cannot half-close (TLS) is closed at once."""
    if transport.is_closing():
        return
    if not transport.can_write_eof():
        transport.close()
        return
    transport.set_protocol(_Lingering(transport, loop))
    transport.write_eof()
    transport.resume_reading()
