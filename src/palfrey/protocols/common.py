"""What every protocol shares, defined once: HTTP/1.1 (the compiled core), WebSocket, HTTP/2.

- ``TOKEN_CHARS`` / ``is_token``: RFC 9110 5.6.2 ``tchar``, for field names (ours, the app's,
  --header values) and the parameter tokens of proxy headers.
- ``STATUS_PHRASES``: the reason phrase of each status code 100-599 (RFC 9110 15), "" if none.
- ``ERROR_MESSAGES`` / ``error_body`` / ``error_fields``: the bodies and fields of the answers
  the server gives on its own (400, 408, 413, 414, 431, 500, 501, 503), text/plain.
- ``http_date``: the ``date`` field value (RFC 9110 5.6.7 IMF-fixdate).
- ``client_text`` / ``access_target`` / ``log_access`` / ``log_access_formatted``: the client
  and target as log lines show them, and the access-log record, Uvicorn's shape or
  --access-log-format's.
- ``linger_and_close``: how the server closes a connection the client may still be sending on.
- ``tls_extension``: the ASGI ``tls`` scope extension of a TLS connection.

The compiled core builds its C tables from these at import; nothing here is on a per-request
path except ``log_access`` (only when the access log is on).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.parse
import weakref
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from palfrey.logging import AccessLogFormat

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


def error_fields(
    default_fields: list[tuple[bytes, bytes]], body: bytes
) -> list[tuple[bytes, bytes]]:
    """The fields of the server's own answer carrying ``body`` (after the server's default
    fields: server, date, --header)."""
    return [*default_fields, (b"content-type", ERROR_CONTENT_TYPE),
            (b"content-length", b"%d" % len(body))]


def http_date(timestamp: float) -> bytes:
    """``timestamp`` (seconds since the epoch) as an IMF-fixdate, e.g.
    ``b"Sun, 06 Nov 1994 08:49:37 GMT"`` (RFC 9110 5.6.7)."""
    return formatdate(timestamp, usegmt=True).encode("ascii")


def client_text(client: tuple[str, int] | list | None) -> str:
    """``"127.0.0.1:52738"``: a scope's ``client`` as log lines show it; "" when there is
    none (a unix socket)."""
    return "%s:%d" % tuple(client) if client else ""


def access_target(scope: dict) -> tuple[str, str]:
    """``("127.0.0.1:52738", "/path?query")``: the client and the request target as the log
    lines show them (Uvicorn's shape; the client is "" on a unix socket)."""
    path = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path = path + "?" + scope["query_string"].decode("ascii")
    return (client_text(scope.get("client")), path)


def log_access(logger: logging.Logger, scope: dict, status: int) -> None:
    """One access-log record: ``127.0.0.1:52738 - "GET /?a=1 HTTP/1.1" 200``, written when
    the response starts.

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


def log_access_formatted(
    logger: logging.Logger,
    log_format: AccessLogFormat,
    scope: dict,
    status: int,
    response_headers: Any = (),
    response_bytes: int = 0,
    started: float = 0.0,
) -> None:
    """One access-log record in --access-log-format's shape, written when the response is
    over. ``started``: time.perf_counter() at the first byte of the request head (0: not
    measured); the record's ``access_log_format`` attribute tells formatters the message
    is the whole line."""
    seconds = time.perf_counter() - started if started else None
    logger.info(
        "%s",
        log_format.render(scope, status, response_headers, response_bytes, seconds),
        extra={"access_log_format": True},
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


# -- the ASGI TLS extension (scope["extensions"]["tls"]) ------------------------------------------

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# SSLContext -> {OpenSSL cipher name: IANA id}; a server has one or two contexts. Weak keys:
# a context's map goes with it (an id() could be reused by a later context).
_CIPHER_IDS: weakref.WeakKeyDictionary[ssl.SSLContext, dict[str, int]] = (
    weakref.WeakKeyDictionary()
)


def _cipher_id(context: ssl.SSLContext, name: str) -> int | None:
    ids = _CIPHER_IDS.get(context)
    if ids is None:
        # get_ciphers() gives OpenSSL's id: 0x0300XXXX, the low 16 bits are IANA's.
        ids = _CIPHER_IDS[context] = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return ids.get(name)


def _distinguished_name(subject: tuple) -> str:
    """An X.509 subject as getpeercert() gives it, as an RFC 4514 string (last RDN first)."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
             "domainComponent": "DC", "userId": "UID", "streetAddress": "STREET"}
    rdns = []
    for rdn in reversed(subject):
        parts = []
        for key, value in rdn:
            escaped = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
            if escaped[:1] in ("#", " "):
                escaped = "\\" + escaped
            if escaped.endswith(" "):
                escaped = escaped[:-1] + "\\ "
            parts.append(f"{short.get(key, key)}={escaped}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def tls_extension(ssl_object: ssl.SSLObject, server_cert: str | None) -> dict:
    """The ASGI TLS extension for a connection (asgiref "TLS Extension"): ``server_cert``
    (PEM, given), ``client_cert_chain`` (PEM strings, the client's first), ``client_cert_name``
    (RFC 4514), ``client_cert_error`` (None: an invalid certificate fails the handshake),
    ``tls_version`` (0x0303 for TLS 1.2...) and ``cipher_suite`` (the IANA id)."""
    chain: list[str] = []
    name = None
    verified = getattr(ssl_object, "get_verified_chain", None)  # Python 3.13
    if verified is not None:
        # The public 3.13 method gives DER bytes (the private _ssl one gave Certificates).
        chain = [ssl.DER_cert_to_PEM_cert(cert) if isinstance(cert, bytes)
                 else cert.public_bytes(ssl._ssl.ENCODING_PEM) for cert in verified() or ()]
    if not chain:
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            chain = [ssl.DER_cert_to_PEM_cert(leaf)]
    if chain:
        peer = ssl_object.getpeercert()
        if peer and peer.get("subject"):
            name = _distinguished_name(peer["subject"])
    cipher = ssl_object.cipher()
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_id(ssl_object.context, cipher[0]) if cipher else None,
    }
