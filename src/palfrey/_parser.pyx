# cython: language_level=3, embedsignature=True
"""Palfrey's compiled hot path: socket reads, HTTP/1.1 parsing (llhttp), response encoding.

The layout of every object, with a comment per field, is in _parser.pxd; docstrings for the
public objects live in _parser.pyi. This module knows nothing of the CLI or of defaults:
every knob arrives through ServerContext.

    _shared.pxi     what every protocol shares: tables, field checks, framing, flow control
    _cycle.pxi      the ASGI request cycle (receive, send, the app runner), for HTTP/1.1 and 2
    this file       HTTP/1.1: llhttp callbacks and the connection (_HttpCore)
    _websocket.pxi  the WebSocket data path
"""

import asyncio
import os
import sys
import time
import urllib.parse

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
)
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from . cimport _llhttp as ll


cdef enum:
    # The loop reads into one buffer of this size shared by every connection of a server
    # (BufferedProtocol); llhttp consumes each read whole unless it pauses (pipelining), and
    # only then are the bytes left kept, copied, by the connection (`pending`).
    READ_BUFFER_SIZE = 65536
    # Stop reading when more request body than this waits for the app (SPEC 2: 64 KiB).
    BODY_HIGH_WATER = 65536
    # Bodies up to this size are copied next to the headers so a response leaves in one write;
    # larger ones follow what is gathered by reference, in the same writev, never copied.
    COPY_BODY_LIMIT = 4096
    # Output gathered for one write (pipelined responses, streamed chunks) is written out once
    # it reaches this size; it also bounds the output buffer's growth (twice this at most).
    GATHER_LIMIT = 16384

# At shutdown, what is on its way (a request head, or the first or next request of a
# connection) gets this long to arrive and be answered, instead of being cut off.
cdef double SHUTDOWN_GRACE = 1.0

# Python 3.12+ can run a task's first step at once: an app that never waits answers without a
# loop round-trip, with current_task() and contextvars as in any task. 3.11 schedules it.
cdef bint EAGER_TASKS = sys.version_info >= (3, 12)
cdef object Task = asyncio.Task

include "_shared.pxi"
include "_cycle.pxi"

cdef bytes CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
# RFC 9113 3.4: what an HTTP/2 client sends first, in cleartext with prior knowledge.
cdef bytes H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
cdef str HTTP_1_1 = "1.1"
cdef str HTTP_1_0 = "1.0"

# The server's own answers (SPEC 2), from the status line to the end of the body, but for
# the default fields (server, date, --header), which go after the status line.
cdef dict ERROR_RESPONSES = {
    status: (
        STATUS_LINES[status],
        b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
        % (ERROR_CONTENT_TYPE, len(error_body(status)), error_body(status)),
    )
    for status in (400, 408, 413, 414, 431, 500, 501, 503)
}


cdef list _build_method_names():
    # llhttp_method_name() aborts on an unknown number: ask only for the ones llhttp defines.
    names = [(<bytes>ll.llhttp_method_name(method)).decode("ascii") for method in range(ll.HTTP_QUERY + 1)]
    return names + [""] * (256 - len(names))

cdef list METHOD_NAMES = _build_method_names()


# Header names a request usually carries: the interned object is reused, nothing is allocated.
cdef bytes H_HOST = b"host"
cdef bytes H_UPGRADE = b"upgrade"
cdef bytes H_EXPECT = b"expect"
cdef bytes H_TRANSFER_ENCODING = b"transfer-encoding"
cdef bytes H_TE = b"te"
cdef tuple KNOWN_HEADER_NAMES = (
    H_HOST, b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"content-length", b"content-type", b"cookie", b"referer", b"origin", b"cache-control",
    b"pragma", H_UPGRADE, b"upgrade-insecure-requests", H_EXPECT, H_TRANSFER_ENCODING,
    b"authorization", b"if-none-match", b"if-modified-since", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip", b"forwarded",
    b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-dest", b"sec-fetch-user", b"sec-ch-ua",
    b"sec-ch-ua-mobile", b"sec-ch-ua-platform", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"dnt", H_TE, b"range", b"priority",
    b"x-requested-with", b"content-encoding", b"keep-alive", b"via", b"accept-charset",
)


cdef object _intern_header_name(const char* data, size_t length):
    cdef bytes known
    for known in KNOWN_HEADER_NAMES:
        if <size_t>PyBytes_GET_SIZE(known) == length and memcmp(PyBytes_AS_STRING(known), data, length) == 0:
            return known
    return PyBytes_FromStringAndSize(data, length)


cdef int _transfer_coding_status(bytes value):
    """The status for a request Transfer-Encoding list: 0 when it is plain `chunked`.

    A list whose last coding is not chunked leaves the body length unknown (RFC 9112 6.3: 400).
    llhttp rejects it too, but only after on_headers_complete, when an eager task could already
    have answered. Codings before a final chunked are ones we cannot decode (RFC 9112 6.1: 501);
    chunked twice is invalid (400).
    """
    # RFC 9110 5.6.1: empty list elements do not count.
    cdef list codings = [c.strip(b" \t") for c in value.lower().split(b",")]
    codings = [c for c in codings if c]
    if not codings or codings[-1] != b"chunked":
        return 400
    if codings.count(b"chunked") > 1:
        return 400
    if len(codings) > 1:
        return 501
    return 0


# ---------------------------------------------------------------------------------------------
# llhttp callbacks: C shims that never let an exception reach C (DESIGN: conventions).

cdef ll.llhttp_settings_t SETTINGS
ll.llhttp_settings_init(&SETTINGS)


cdef int _callback_failed(_HttpCore conn, BaseException exc) noexcept:
    try:
        conn.ctx.error_logger.error("Internal error while parsing a request", exc_info=exc)
        conn.reject_status = 500
    except BaseException:
        pass
    return -1


cdef int cb_on_message_begin(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_message_begin()
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_url(ll.llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_url(at, length)
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_url_complete(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_url_complete()
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_header_field(ll.llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_header_field(at, length)
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_header_field_complete(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_header_field_complete()
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_header_value(ll.llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_header_value(at, length)
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_header_value_complete(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_header_value_complete()
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_headers_complete(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_headers_complete()
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_body(ll.llhttp_t* parser, const char* at, size_t length) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_body(at, length)
    except BaseException as exc:
        return _callback_failed(conn, exc)

cdef int cb_on_message_complete(ll.llhttp_t* parser) noexcept:
    cdef _HttpCore conn = <_HttpCore>parser.data
    try:
        return conn._on_message_complete()
    except BaseException as exc:
        return _callback_failed(conn, exc)

SETTINGS.on_message_begin = cb_on_message_begin
SETTINGS.on_url = cb_on_url
SETTINGS.on_url_complete = cb_on_url_complete
SETTINGS.on_header_field = cb_on_header_field
SETTINGS.on_header_field_complete = cb_on_header_field_complete
SETTINGS.on_header_value = cb_on_header_value
SETTINGS.on_header_value_complete = cb_on_header_value_complete
SETTINGS.on_headers_complete = cb_on_headers_complete
SETTINGS.on_body = cb_on_body
SETTINGS.on_message_complete = cb_on_message_complete


# ---------------------------------------------------------------------------------------------
# The connection

cdef class _HttpCore(Responder):
    # One HTTP/1.1 connection: it parses requests, runs a RequestCycle for each and, as that
    # cycle's Responder, encodes the response. Fields: _parser.pxd.
    #
    # States (ConnState) and the timer each one runs (Deadline):
    #
    #   IDLE -----> HEAD -----> BODY -----> WAITING ----(response complete)----> IDLE
    #   keep-alive  header      body        none             \-> parse what follows
    #                 \           \--(response complete first: the rest of the body
    #                  \               is read and dropped, then)-------------> IDLE
    #                   \--(WebSocket handshake)--> UPGRADING --(handed over)--> CLOSED
    #   any state --(close by either side, a rejected request)-----------------> CLOSED
    #
    # A request is answered before the next one is parsed: the parser stops (HPE_PAUSED) at
    # the end of each request until its response is complete (WAITING), so pipelined requests
    # are answered strictly in order. While reading is paused because the app has not taken
    # the body yet, the body timer is off: the stall is ours, not the client's.
    #
    # Re-entrancy. On Python 3.12+ an app task takes its first step inside
    # _on_headers_complete, that is inside llhttp_execute: an app that never waits sends its
    # whole response from there, and so reaches response_complete() with in_parser set. The
    # rule: inside llhttp_execute, code may change this object's state, append to `out` and
    # close the connection (_close writes what `out` holds first; every callback returns -1
    # once the state is CLOSED, which stops the parser), but it must not call llhttp_execute
    # or llhttp_resume, and must not otherwise write to the transport: _parse's caller does
    # that once llhttp_execute has returned (buffer_updated flushes `out`, so the responses
    # to one read leave in one write).

    def __cinit__(self):
        _buffer_init(&self.scratch, 256)
        ll.llhttp_init(&self.parser, ll.HTTP_REQUEST, &SETTINGS)
        self.parser.data = <void*>self

    def __dealloc__(self):
        free(self.scratch.data)
        free(self.out.data)

    def __init__(self, ServerContext ctx):
        self.ctx = ctx
        self.loop = ctx.loop

    # -- asyncio protocol interface -------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.flow = FlowControl(transport, self.loop)
        self.registered = True
        self.ctx.connection_opened(self)
        self.server_addr = _local_address(transport)
        self.client_addr = _remote_address(transport)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.state = CONN_IDLE
        # A connection that never sends a request is closed like an idle keep-alive one.
        self._set_deadline(DEADLINE_KEEP_ALIVE, self.ctx.timeout_keep_alive)
        if self.ctx.h2_protocol is not None:
            if self.scheme == "https":
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                    self._hand_over(self.ctx.h2_protocol(self.ctx, transport, b"", None))
                    return
            else:
                self.h2_preface_possible = True  # RFC 9113 3.3: prior knowledge
        if self.ctx.shutting_down:
            self.shutdown()

    def get_buffer(self, Py_ssize_t sizehint):
        return self.ctx.read_view

    def buffer_updated(self, Py_ssize_t nbytes):
        if self.state == CONN_CLOSED:
            return
        if self.pending is None:
            self.in_data = self.ctx.read_data
            self.in_start = 0
            self.in_end = nbytes
        else:
            # Bytes from a pause are waiting: the new ones go after them.
            self.pending += self.ctx.read_view[:nbytes]
            self.in_data = PyByteArray_AS_STRING(self.pending)
            self.in_end = PyByteArray_GET_SIZE(self.pending)
        if self.h2_preface_possible and self._preface_arrived():
            self._keep_unparsed()  # a part of the preface, to be completed by the next read
            return
        if self.state == CONN_WAITING:
            # Pipelining: the next request waits, unparsed, until this response is done.
            self._pause_reading()
        else:
            self._parse()
        self._keep_unparsed()
        if self.out.length:
            self._flush()  # what apps answered during this read leaves in one write

    cdef void _keep_unparsed(self):
        """After a read is parsed: keep what is left (in `pending`) and let go of the shared
        read buffer, which the next connection's read overwrites."""
        cdef Py_ssize_t left = self.in_end - self.in_start
        if left <= 0 or self.state == CONN_CLOSED:
            self.pending = None
            self.in_data = NULL
            self.in_start = self.in_end = 0
            return
        if self.pending is None:
            self.pending = PyByteArray_FromStringAndSize(self.in_data + self.in_start, left)
        elif self.in_start:
            del self.pending[:self.in_start]
        self.in_data = PyByteArray_AS_STRING(self.pending)
        self.in_start = 0
        self.in_end = left

    def connection_lost(self, exc):
        self._lost()

    cdef void _lost(self):
        """The connection is over for this object (closed by either side, or lingering).
        Unparsed input is dropped by _keep_unparsed, never inside llhttp_execute."""
        self.state = CONN_CLOSED
        self.deadline_kind = DEADLINE_NONE
        if not self.in_parser:
            self._keep_unparsed()
        self.flow.connection_lost()
        if self.cycle is not None and self.cycle.response_state != RESPONSE_COMPLETE:
            self.cycle.disconnect()
        self._release_if_finished()

    def pause_writing(self):
        self.flow.pause_writing()

    def resume_writing(self):
        self.flow.resume_writing()

    # -- reading --------------------------------------------------------------------------------

    cdef _parse(self):
        cdef ll.llhttp_errno_t err
        cdef const char* stop
        while (self.in_start < self.in_end and self.state != CONN_WAITING
               and self.state != CONN_CLOSED):
            self.in_parser = True
            err = ll.llhttp_execute(
                &self.parser, self.in_data + self.in_start, self.in_end - self.in_start
            )
            self.in_parser = False
            if err == ll.HPE_OK:
                self.in_start = self.in_end
                return
            if err == ll.HPE_PAUSED or err == ll.HPE_PAUSED_UPGRADE:
                stop = ll.llhttp_get_error_pos(&self.parser)
                self.in_start = stop - self.in_data
                if self.state == CONN_UPGRADING:
                    self._upgrade()
                    return
                if err == ll.HPE_PAUSED_UPGRADE:
                    # Upgrades other than WebSocket are served as plain HTTP/1.1 (SPEC 2).
                    ll.llhttp_resume_after_upgrade(&self.parser)
                continue
            if self.state != CONN_CLOSED:
                self._reject(self.reject_status or self._parse_error_status())
            return

    cdef int _parse_error_status(self):
        """The status for llhttp's own verdict on a malformed request: 400, or 414 when the
        request target had grown past its limit before the error.

        _on_url sees the target only in the spans llhttp hands over, which end where a
        read ends; llhttp finds an error inside a target (say, a space after a would-be
        scheme) without handing the span over. Counting the target up to the error here
        makes the answer the same however the reads split the request."""
        cdef const char* error_pos
        cdef const char* url_start
        cdef const char* url_end
        cdef const char* start = self.in_data + self.in_start
        if self.state != CONN_HEAD or self.target is not None:
            return 400  # not inside the target
        error_pos = ll.llhttp_get_error_pos(&self.parser)
        if error_pos == NULL or error_pos < start or error_pos > self.in_data + self.in_end:
            return 400
        # The target holds no space, CR or LF: it is the run of other bytes that ends at the
        # error or at the spaces just before it (llhttp may stop on the byte after the
        # target), and began after the space before that run (or before this read, its first
        # part then already in `scratch`). A CR or LF before the error ended the target
        # there: llhttp handed it over whole, it is all in `scratch`.
        url_end = error_pos
        while url_end > start and url_end[-1] == b" ":
            url_end -= 1
        url_start = url_end
        while url_start > start and url_start[-1] != b" ":
            if url_start[-1] == b"\r" or url_start[-1] == b"\n":
                url_start = url_end
                break
            url_start -= 1
        if self.scratch.length + (url_end - url_start) > self.ctx.limit_target_size:
            return 414
        return 400

    cdef void _set_deadline(self, Deadline kind, double timeout):
        self.deadline_kind = kind
        self.deadline = self.ctx.now + timeout

    cdef _deadline_passed(self):
        """The timer of deadline_kind ran out: a client that went quiet in a head or a body
        gets 408 (RFC 9110 15.5.9); an idle one is closed."""
        if (self.deadline_kind == DEADLINE_HEADER or self.deadline_kind == DEADLINE_BODY
                or self.state == CONN_HEAD):
            self._reject(408)
        else:
            self._close()

    cdef void _pause_reading(self):
        self.flow.pause_reading()
        if self.deadline_kind == DEADLINE_BODY:
            self.deadline_kind = DEADLINE_NONE  # the app is behind, not the client

    cdef void _resume_reading(self):
        if self.flow.reading_paused and self.state != CONN_CLOSED:
            self.flow.resume_reading()
            if self.state == CONN_BODY:
                self._set_deadline(DEADLINE_BODY, self.ctx.timeout_request_body)

    # -- llhttp callbacks (called from C through the shims above) -------------------------------
    # Each returns 0 to go on, -1 to stop the parser (reject_status says why) or HPE_PAUSED.

    cdef int _on_message_begin(self) except? -1:
        self.state = CONN_HEAD
        if self.ctx.access_log_timed:
            self.head_started = time.perf_counter()
        # The whole head must arrive in time, or a slow client holds the connection (slowloris).
        if self.deadline_kind != DEADLINE_SHUTDOWN:
            self._set_deadline(DEADLINE_HEADER, self.ctx.timeout_request_header)
        self.scratch.length = 0
        self.target = None
        self.headers = []
        self.header_count = 0
        self.head_size = 0
        self.host_count = 0
        self.transfer_encoding = None
        self.expect_continue = False
        self.upgrade_websocket = False
        self.upgrade_h2c = False
        self.te_trailers = False
        self.body_received = 0
        self.reject_status = 0
        return 0

    cdef int _on_url(self, const char* at, size_t length) except? -1:
        if self.scratch.length + <Py_ssize_t>length > self.ctx.limit_target_size:
            self.reject_status = 414
            return -1
        _buffer_append(&self.scratch, at, length)
        return 0

    cdef int _on_url_complete(self) except? -1:
        cdef Py_ssize_t i
        for i in range(self.scratch.length):
            if <uint8_t>self.scratch.data[i] >= 0x80:
                return self._stop(400)  # RFC 3986 2: a URI is ASCII; the rest is percent-encoded
        self.target = PyBytes_FromStringAndSize(self.scratch.data, self.scratch.length)
        self.scratch.length = 0
        return 0

    cdef int _on_header_field(self, const char* at, size_t length) except? -1:
        if self._header_too_large(length):
            return -1
        _buffer_append_lower(&self.scratch, at, length)
        return 0

    cdef int _on_header_field_complete(self) except? -1:
        self.header_name = _intern_header_name(self.scratch.data, self.scratch.length)
        return 0

    cdef int _on_header_value(self, const char* at, size_t length) except? -1:
        if self._header_too_large(length):
            return -1
        _buffer_append(&self.scratch, at, length)
        return 0

    cdef bint _header_too_large(self, size_t length) noexcept:
        """RFC 6585 5 (431): one line over its limit, or the whole section over its limit."""
        self.head_size += length
        if (self.scratch.length + <Py_ssize_t>length > self.ctx.limit_header_line_size
                or self.head_size > self.ctx.limit_header_size):
            self.reject_status = 431
            return True
        return False

    cdef int _on_header_value_complete(self) except? -1:
        cdef Py_ssize_t name_length = PyBytes_GET_SIZE(<bytes>self.header_name)
        cdef Py_ssize_t end = self.scratch.length
        if self.state != CONN_HEAD:
            # A chunked body's trailer section (RFC 9112 7.1.2): ASGI has no place for it, and
            # it must not pass for a header (RFC 9110 6.5.1): the app already holds the list.
            self.scratch.length = 0
            return 0
        # RFC 9110 5.5: surrounding whitespace is not part of the value.
        while end > name_length and (self.scratch.data[end - 1] == b" " or self.scratch.data[end - 1] == b"\t"):
            end -= 1
        value = PyBytes_FromStringAndSize(self.scratch.data + name_length, end - name_length)
        self.scratch.length = 0
        self.head_size += 4  # ": " and CRLF
        self.header_count += 1
        if self.header_count > self.ctx.limit_header_count:
            self.reject_status = 431
            return -1
        name = self.header_name
        if name is H_HOST:
            self.host_count += 1
        elif name is H_TRANSFER_ENCODING:
            # Several fields make one list (RFC 9110 5.3).
            self.transfer_encoding = value if self.transfer_encoding is None else self.transfer_encoding + b"," + value
        elif name is H_EXPECT:
            # RFC 9110 10.1.1
            self.expect_continue = _equal_lower(PyBytes_AS_STRING(value), b"100-continue", 12) and PyBytes_GET_SIZE(value) == 12
        elif name is H_UPGRADE:
            self.upgrade_websocket = _has_token(value, b"websocket", 9)
            self.upgrade_h2c = _has_token(value, b"h2c", 3)
        elif name is H_TE:
            self.te_trailers = _has_token(value, b"trailers", 8)  # RFC 9110 10.1.4
        self.headers.append((name, value))
        return 0

    cdef int _on_headers_complete(self) except? -1:
        cdef ServerContext ctx = self.ctx
        if self.parser.flags & ll.F_CHUNKED or self.parser.content_length > 0:
            self._set_deadline(DEADLINE_BODY, ctx.timeout_request_body)
        else:
            self.deadline_kind = DEADLINE_NONE
        if self._check_head() != 0:
            return -1
        if ctx.over_concurrency_limit():
            ctx.error_logger.warning("Exceeded concurrency limit.")
            if ctx.access_log:  # logged as any response, as Uvicorn logs it
                if ctx.access_log_format is None:
                    log_access(ctx.access_logger, self._build_scope(), 503)
                else:
                    log_access_formatted(ctx.access_logger, ctx.access_log_format,
                                         self._build_scope(), 503, (), 0, self.head_started)
            self._send_error_response(503)
            self._close()
            return -1
        self.state = CONN_BODY
        if self.parser.upgrade:
            if self.upgrade_websocket and ctx.ws_protocol is not None:
                # The handshake goes to the WebSocket protocol once the parser stops at the
                # end of this request (RFC 6455 4.2); see _upgrade.
                self.state = CONN_UPGRADING
                self.upgrade_scope = self._build_scope()
                return 0
            if (self.upgrade_h2c and ctx.h2_protocol is not None and self.scheme == "http"
                    and not (self.parser.flags & ll.F_CHUNKED or self.parser.content_length > 0)):
                # RFC 7540 3.2: answered 101 and served as HTTP/2 stream 1 (only in
                # cleartext, RFC 9113 3.1, and only without a body: one would have to be
                # read whole first; a server may decline).
                self.state = CONN_UPGRADING
                self.upgrade_scope = self._build_scope()
                return 0
            ctx.error_logger.warning("Unsupported upgrade request.")
        self._start_cycle()
        # An eager app may have answered and closed the connection already: stop parsing.
        return -1 if self.state == CONN_CLOSED else 0

    cdef int _check_head(self) except? -1:
        """What llhttp does not check in a complete head: 0, or -1 with reject_status set."""
        cdef ServerContext ctx = self.ctx
        cdef int status
        if self.parser.http_major != 1 or self.parser.http_minor > 1:
            return self._stop(400)
        if self.parser.method == ll.HTTP_CONNECT:
            return self._stop(400)  # no tunnels: an ASGI app cannot take over the socket
        # RFC 9112 3.2: a client MUST send exactly one Host field in an HTTP/1.1 request.
        if self.host_count > 1 or (self.host_count == 0 and self.parser.http_minor == 1):
            return self._stop(400)
        if self.transfer_encoding is not None:
            if self.parser.http_minor == 0:
                return self._stop(400)  # RFC 9112 6.1: in HTTP/1.0, faulty framing
            status = _transfer_coding_status(self.transfer_encoding)
            if status:
                return self._stop(status)
        if (self.parser.method != ll.HTTP_OPTIONS and self.target is not None
                and self.target == b"*"):
            return self._stop(400)  # RFC 9112 3.2.4: the asterisk form is for OPTIONS only
        if (ctx.limit_body_size >= 0 and self.parser.flags & ll.F_CONTENT_LENGTH
                and self.parser.content_length > <unsigned long long>ctx.limit_body_size):
            return self._stop(413)
        return 0

    cdef int _stop(self, int status) noexcept:
        self.reject_status = status
        return -1

    cdef int _on_body(self, const char* at, size_t length) except? -1:
        cdef RequestCycle cycle = self.cycle
        if self.state == CONN_UPGRADING:
            return 0  # a body on a WebSocket handshake means nothing (RFC 6455 4.1)
        self.body_received += length
        if self.ctx.limit_body_size >= 0 and self.body_received > self.ctx.limit_body_size:
            self.reject_status = 413
            return -1
        self._set_deadline(DEADLINE_BODY, self.ctx.timeout_request_body)  # a stall is cut off
        if cycle.response_state == RESPONSE_COMPLETE:
            return 0  # the app answered without reading: drop the rest of the body
        cycle.receive_body(PyBytes_FromStringAndSize(at, length))
        if cycle.body_size > BODY_HIGH_WATER:
            self._pause_reading()
        return 0

    cdef int _on_message_complete(self) except? -1:
        cdef RequestCycle cycle = self.cycle
        if self.state == CONN_UPGRADING:
            return ll.HPE_PAUSED  # the bytes after a WebSocket handshake are not HTTP
        if cycle.response_state == RESPONSE_COMPLETE:
            if self.state == CONN_CLOSED:
                return -1  # the response ended the connection (inside the parser: eager)
            self.cycle = None
            self.state = CONN_IDLE
            self._set_deadline(DEADLINE_KEEP_ALIVE, self.ctx.timeout_keep_alive)
            return 0
        cycle.end_body()
        self.state = CONN_WAITING
        self.deadline_kind = DEADLINE_NONE
        # Stop here until the response is done: requests are answered strictly in order.
        return ll.HPE_PAUSED

    cdef _upgrade(self):
        """The upgrade request is read: hand the connection to the protocol it asked for,
        with the request's scope and the bytes read after it."""
        leftover = PyBytes_FromStringAndSize(self.in_data + self.in_start, self.in_end - self.in_start)
        scope, self.upgrade_scope = self.upgrade_scope, None
        if self.upgrade_websocket and self.ctx.ws_protocol is not None:
            protocol = self.ctx.ws_protocol(self.ctx, self.transport, scope, leftover)
        else:
            settings = None
            for name, value in scope["headers"]:
                if name == b"http2-settings":
                    settings = value
            protocol = self.ctx.h2_protocol(self.ctx, self.transport, leftover, (scope, settings))
        self._hand_over(protocol)

    cdef bint _preface_arrived(self):
        """--http2 in cleartext: True once the connection's first bytes are the HTTP/2
        client preface and the connection went to HTTP/2; False (and no more checks) as
        soon as they cannot be; True also while too few bytes have come to tell."""
        cdef Py_ssize_t n = min(self.in_end - self.in_start, PyBytes_GET_SIZE(H2_PREFACE))
        if memcmp(self.in_data + self.in_start, PyBytes_AS_STRING(H2_PREFACE), n) != 0:
            self.h2_preface_possible = False
            return False
        if n < PyBytes_GET_SIZE(H2_PREFACE):
            return True  # a prefix of the preface: wait for the rest
        self.h2_preface_possible = False
        leftover = PyBytes_FromStringAndSize(self.in_data + self.in_start, self.in_end - self.in_start)
        self._hand_over(self.ctx.h2_protocol(self.ctx, self.transport, leftover, None))
        return True

    cdef _hand_over(self, object protocol):
        """From here on `protocol` has the transport; this object sees nothing of it."""
        self.in_start = self.in_end = 0
        self.state = CONN_CLOSED
        self.deadline_kind = DEADLINE_NONE
        self._release_if_finished()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        self.flow.resume_reading()

    # -- the request cycle ----------------------------------------------------------------------

    cdef _start_cycle(self):
        cdef ServerContext ctx = self.ctx
        self.keep_alive = (
            self.parser.http_minor == 1 and ll.llhttp_should_keep_alive(&self.parser)
            and not ctx.shutting_down
        )
        self.cycle = new_cycle(
            self, ctx, self._build_scope(),
            # RFC 9112 6.3: without Transfer-Encoding or Content-Length a request has no body,
            # so the app's first receive() need not wait for the parser to reach the end.
            bool(self.parser.flags & ll.F_CHUNKED) or self.parser.content_length > 0,
            self.expect_continue and self.parser.http_minor == 1,
            self.parser.method == ll.HTTP_HEAD,
        )
        self.cycle.trailers_allowed = self.te_trailers
        if ctx.access_log_timed:
            self.cycle.request_start = self.head_started
        self.app_task = start_app(self.cycle)

    cdef dict _build_scope(self):
        cdef ServerContext ctx = self.ctx
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": HTTP_1_1 if self.parser.http_minor == 1 else HTTP_1_0,
            "server": self.server_addr,
            "client": self.client_addr,
            "scheme": self.scheme,
            "method": METHOD_NAMES[self.parser.method],
            "root_path": ctx.root_path,
            "headers": self.headers,
            "state": ctx.app_state.copy() if ctx.app_state else {},
        }
        _set_target(scope, self.target if self.target is not None else b"", ctx)
        extensions = ctx.http_extensions.copy()
        if self.te_trailers:
            extensions["http.response.trailers"] = {}  # RFC 9110 6.5.1: the client takes them
        if self.scheme == "https":
            if self.tls is None:
                self.tls = tls_extension(self.transport.get_extra_info("ssl_object"),
                                         ctx.tls_server_cert)
            extensions["tls"] = self.tls
        scope["extensions"] = extensions
        return scope

    # -- Responder: what the cycle's send() and receive() call ----------------------------------

    cdef int start_response(self, RequestCycle cycle, int status, object headers) except -1:
        cdef ByteBuffer* out = &self.out
        cdef Py_ssize_t response_start = out.length  # earlier pipelined responses may wait before it
        cdef HeaderFacts facts
        cdef ResponseFraming framing
        _reset_facts(&facts)
        _buffer_append_bytes(out, STATUS_LINES[status])
        try:
            _encode_fields(out, headers, &facts,
                           framing_fields_to_drop(status, 10 + self.parser.http_minor))
        except BaseException:
            out.length = response_start
            raise
        if cycle.expect_continue:
            # The app answers without reading the body: the client may never send it, so the
            # connection cannot be reused safely (RFC 9110 10.1.1).
            self.keep_alive = False
        framing = decide_framing(status, cycle.head_request, 10 + self.parser.http_minor,
                                 self.keep_alive, &facts)
        self.keep_alive = framing.keep_alive
        self.framing = framing.framing
        self.length_left = framing.length
        _buffer_append_bytes(out, self.ctx.default_block_no_server if facts.server else self.ctx.default_block)
        if self.ctx.date_header and not facts.date:
            _buffer_append_bytes(out, self.ctx.date_line)
        if framing.add_chunked:
            _buffer_append(out, b"transfer-encoding: chunked\r\n", 28)
        if framing.add_close:
            _buffer_append(out, b"connection: close\r\n", 19)
        _buffer_append(out, b"\r\n", 2)
        # The head waits for the first body message so a small response leaves in one write;
        # an app that pauses between the two still gets it out on the next loop pass.
        self._request_flush()
        return 0

    cdef int send_body(self, RequestCycle cycle, object body, bint more_body) except -1:
        cdef ByteBuffer* out = &self.out
        cdef Py_ssize_t length
        if type(body) is not bytes:
            body = bytes(body)
        length = PyBytes_GET_SIZE(body)
        if self.framing == FRAME_LENGTH:
            if length > self.length_left:
                # What was valid goes out (as Uvicorn does); the app error then closes.
                self._flush()
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= length
        if length and self.framing != FRAME_NONE:
            if self.framing == FRAME_CHUNKED:
                _buffer_append_hex(out, length)
                _buffer_append(out, b"\r\n", 2)
            if length <= COPY_BODY_LIMIT:
                _buffer_append_bytes(out, body)
            else:
                self._flush_with(body)
            if self.framing == FRAME_CHUNKED:
                _buffer_append(out, b"\r\n", 2)
        if more_body:
            # Chunks an app sends without waiting in between leave together, at the end of
            # this loop pass; past GATHER_LIMIT they go now, so backpressure still applies.
            if out.length < GATHER_LIMIT:
                self._request_flush()
            else:
                self._flush()
        elif self.framing == FRAME_CHUNKED:
            # The last chunk; the trailer section and its blank line follow (RFC 9112 7.1).
            _buffer_append(out, b"0\r\n", 3)
            if not cycle.trailers_expected:
                _buffer_append(out, b"\r\n", 2)
        elif self.framing == FRAME_LENGTH and self.length_left != 0:
            self._flush()
            raise RuntimeError("Response content shorter than Content-Length")
        return 0

    cdef int send_trailers(self, RequestCycle cycle, object headers, bint more_trailers) except -1:
        cdef HeaderFacts facts
        if self.framing != FRAME_CHUNKED or not cycle.trailers_allowed:
            return 0  # only a chunked body can carry trailers, and only to a client that asked
        _reset_facts(&facts)
        _encode_fields(&self.out, headers, &facts, 0)
        if not more_trailers:
            _buffer_append(&self.out, b"\r\n", 2)
        self._request_flush()
        return 0

    cdef int send_informational(self, RequestCycle cycle, int status, list headers) except -1:
        cdef HeaderFacts facts
        if self.parser.http_minor == 0:
            return 0  # RFC 9110 15.2: no 1xx to an HTTP/1.0 client
        if status == 100:
            _buffer_append_bytes(&self.out, CONTINUE_RESPONSE)
        else:
            _reset_facts(&facts)
            _buffer_append_bytes(&self.out, STATUS_LINES[status])
            _encode_fields(&self.out, headers, &facts, DROP_LENGTH | DROP_CODING)
            _buffer_append(&self.out, b"\r\n", 2)
        self._flush()
        return 0

    cdef object send_file(self, RequestCycle cycle, int fd, long long offset, long long count):
        if self.framing == FRAME_LENGTH:
            if count > self.length_left:
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= count
        elif self.framing == FRAME_NONE or count == 0:
            return _done()  # HEAD, 204, 304: no body
        if self.framing == FRAME_CHUNKED:
            _buffer_append_hex(&self.out, count)
            _buffer_append(&self.out, b"\r\n", 2)
        self._flush()
        return _send_file_http11(self, cycle, fd, offset, count)

    cdef object writable(self):
        return self.flow.drain() if self.flow.writing_paused else None

    cdef void body_taken(self, RequestCycle cycle):
        if self.state != CONN_WAITING:
            self._resume_reading()

    cdef void response_complete(self, RequestCycle cycle):
        if not self.keep_alive:
            self._close()
            return
        if self.state == CONN_BODY:
            # The app answered before the request was fully read (an eager task does so
            # inside the parser): the rest of the body is read and dropped.
            if not self.in_parser:
                self._flush()
            self._resume_reading()
            return
        # WAITING: the request was read; parse what follows it (pipelined requests).
        self.cycle = None
        self.state = CONN_IDLE
        self._set_deadline(DEADLINE_KEEP_ALIVE, self.ctx.timeout_keep_alive)
        ll.llhttp_resume(&self.parser)
        self._parse()
        if not self.in_parser:
            self._keep_unparsed()
        if self.cycle is not None and self.cycle.app_state == APP_PENDING:
            self._request_flush()  # a pipelined request is next: gather its response too
        else:
            self._flush()
        if self.state != CONN_WAITING:
            self._resume_reading()

    cdef void abort(self, RequestCycle cycle):
        self._close()

    cdef void app_done(self, RequestCycle cycle):
        self._release_if_finished()

    # -- writing --------------------------------------------------------------------------------

    cdef _request_flush(self):
        cdef ServerContext ctx = self.ctx
        if not self.flush_requested:
            self.flush_requested = True
            ctx.flush_waiting.append(self)
            if not ctx.flush_scheduled:
                ctx.flush_scheduled = True
                self.loop.call_soon(ctx._flush_waiting)

    cdef _flush(self):
        if self.out.length and self.state != CONN_CLOSED:
            data = PyBytes_FromStringAndSize(self.out.data, self.out.length)
            self.out.length = 0
            self.transport.write(data)
        self.out.length = 0
        if self.state == CONN_IDLE or self.state == CONN_CLOSED:
            _buffer_release(&self.out)  # an idle connection holds no output buffer

    cdef _flush_with(self, bytes body):
        """Write what is gathered and then `body`, in one writev, without copying the body."""
        if self.state == CONN_CLOSED:
            self.out.length = 0
        elif self.out.length:
            gathered = PyBytes_FromStringAndSize(self.out.data, self.out.length)
            self.out.length = 0
            self.transport.writelines((gathered, body))
        else:
            self.transport.write(body)

    cdef _send_error_response(self, int status):
        """A complete plain-text answer the server gives on its own (4xx/5xx), then close."""
        cdef tuple parts = ERROR_RESPONSES[status]
        _buffer_append_bytes(&self.out, <bytes>parts[0])
        _buffer_append_bytes(&self.out, self.ctx.default_block)
        if self.ctx.date_header:
            _buffer_append_bytes(&self.out, self.ctx.date_line)
        _buffer_append_bytes(&self.out, <bytes>parts[1])
        self._flush()

    cdef _reject(self, int status):
        """The request cannot be served: answer with `status` if nothing was sent yet, close."""
        cdef RequestCycle cycle = self.cycle
        if status != 500:
            self.ctx.error_logger.warning(ERROR_MESSAGES[status])
        if cycle is not None:
            cycle.disconnect()
        if cycle is None or cycle.response_state == RESPONSE_PENDING:
            self._send_error_response(status)
        self._close()

    cdef _close(self):
        """Close from our side. While the client may still be sending (a request cut short,
        or bytes not parsed yet), the connection lingers (protocols/common.py
        linger_and_close): closed at once, the unread input would make the kernel reset
        it, which can destroy the answer before the client reads it (RFC 9112 9.6)."""
        cdef bint sending = (self.state == CONN_HEAD or self.state == CONN_BODY
                             or self.in_end > self.in_start)
        if self.state == CONN_CLOSED:
            return
        self._flush()
        if sending:
            self._lost()  # the lingering protocol takes the transport: no connection_lost
            linger_and_close(self.transport, self.loop)
        else:
            self._lost()
            self.transport.close()

    cdef void _release_if_finished(self):
        """The one place a connection leaves ctx.connections: closed (or handed over) and
        its app call, if any, done."""
        if (self.registered and self.state == CONN_CLOSED
                and (self.cycle is None or self.cycle.app_state == APP_DONE)):
            self.registered = False
            self.ctx.connection_released(self)

    # -- called by ServerContext ----------------------------------------------------------------

    cdef void shutdown(self):
        """Graceful shutdown has begun (ctx.shutting_down; ctx.draining for a retiring
        process whose listener lives on in the others)."""
        if self.state == CONN_BODY or self.state == CONN_WAITING:
            self.keep_alive = False  # in flight: finish, then close
        elif (self.state == CONN_IDLE or self.state == CONN_HEAD) and not self.ctx.draining:
            # A request may already be on its way (in the socket buffer, or its head half
            # read): it gets a short grace and is answered with `connection: close`.
            if self.deadline_kind == DEADLINE_NONE or self.deadline > self.ctx.now + SHUTDOWN_GRACE:
                self._set_deadline(DEADLINE_SHUTDOWN, SHUTDOWN_GRACE)
            else:
                self.deadline_kind = DEADLINE_SHUTDOWN

    cdef void cancel_app(self):
        if self.app_task is not None and not self.app_task.done():
            self.app_task.cancel()
            if self.cycle is not None and self.cycle.app_state == APP_PENDING:
                finish_app(self.cycle)  # cancelled before its first step: it never runs


class HttpProtocol(_HttpCore, asyncio.BufferedProtocol):
    # asyncio and uvloop use get_buffer/buffer_updated only for BufferedProtocol instances,
    # which a cdef class cannot inherit from: this class joins the two (DESIGN: conventions).
    __slots__ = ()


cdef int _set_target(dict scope, bytes target, ServerContext ctx) except -1:
    """Set the scope's path, raw_path and query_string from a request target (RFC 9112 3.2:
    origin, absolute or asterisk form; HTTP/2's :path), root_path in front (ASGI spec)."""
    cdef const char* data = PyBytes_AS_STRING(target)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(target), path_start = 0, path_end, query_end
    cdef const char* found
    if n and data[0] != b"/" and data[0] != b"*":
        path_start = _absolute_form_path_start(data, n)
    found = <const char*>memchr(data + path_start, b"#", n - path_start)
    query_end = (found - data) if found != NULL else n
    found = <const char*>memchr(data + path_start, b"?", query_end - path_start)
    path_end = (found - data) if found != NULL else query_end
    raw_path = target[path_start:path_end] if path_end - path_start else b"/"
    query = target[path_end + 1:query_end] if path_end < query_end else b""
    path = PyUnicode_DecodeASCII(PyBytes_AS_STRING(raw_path), PyBytes_GET_SIZE(raw_path), "strict")
    if b"%" in raw_path:
        path = urllib.parse.unquote(path)
    if ctx.root_path:
        path = ctx.root_path + path
        raw_path = ctx.root_path_bytes + raw_path
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = query
    return 0


cdef Py_ssize_t _absolute_form_path_start(const char* data, Py_ssize_t n):
    """RFC 9112 3.2.2: in `scheme://authority/path?query` the path starts after the authority."""
    cdef const char* scheme_end = <const char*>memchr(data, b":", n)
    cdef Py_ssize_t i
    if scheme_end == NULL or scheme_end - data + 2 >= n or scheme_end[1] != b"/" or scheme_end[2] != b"/":
        return n  # authority-form (CONNECT): no path
    i = scheme_end - data + 3
    while i < n and data[i] != b"/" and data[i] != b"?" and data[i] != b"#":
        i += 1
    return i


def connection_addresses(transport):
    """(server, client) of a transport as the scope gives them: (host, port), or None on a
    unix socket."""
    return (_local_address(transport), _remote_address(transport))


cdef object _local_address(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        info = sock.getsockname()
        return (str(info[0]), int(info[1])) if isinstance(info, tuple) else None
    info = transport.get_extra_info("sockname")
    return (str(info[0]), int(info[1])) if isinstance(info, (list, tuple)) and len(info) >= 2 else None


cdef object _remote_address(transport):
    info = transport.get_extra_info("peername")
    return (str(info[0]), int(info[1])) if isinstance(info, (list, tuple)) and len(info) >= 2 else None


# -- file bodies (http.response.pathsend, http.response.zerocopysend) -------------------------

# Bytes handed to one sendfile(2) call, or read at a time where sendfile cannot be used.
cdef Py_ssize_t FILE_CHUNK = 1 << 20


async def _done():
    return None


async def _send_file_http11(_HttpCore conn, RequestCycle cycle, int fd, long long offset,
                            long long count):
    """A file body on an HTTP/1.1 connection (the head is written already): sendfile(2) on
    the socket, or, over TLS, reads written through the transport."""
    transport = conn.transport
    sock = transport.get_extra_info("socket")
    try:
        if conn.scheme == "https" or sock is None:
            await _write_file_by_reads(conn, fd, offset, count)
        else:
            await _sendfile(conn, sock.fileno(), fd, offset, count)
    except (BrokenPipeError, ConnectionResetError):
        cycle.disconnect()  # the client went away mid-file
        conn._close()
        return
    if conn.framing == FRAME_CHUNKED:
        _buffer_append(&conn.out, b"\r\n", 2)


async def _sendfile(_HttpCore conn, int sockfd, int fd, long long offset, long long count):
    """sendfile(2) straight from the file to the socket, waiting when the socket is full.
    The transport's own buffer goes first, so the bytes stay in order. Raises RuntimeError
    if the file ends before `count` bytes (it shrank): the framing cannot be kept."""
    cdef Py_ssize_t sent
    # The loop watches a duplicate of the socket: add_writer refuses a transport's own fd.
    watched = os.dup(sockfd)
    try:
        while conn.transport.get_write_buffer_size() and conn.state != CONN_CLOSED:
            await _writable(conn.loop, watched)  # what the transport holds goes first
        while count > 0:
            if conn.state == CONN_CLOSED:
                return
            try:
                sent = os.sendfile(sockfd, fd, offset, min(count, FILE_CHUNK))
            except BlockingIOError:
                await _writable(conn.loop, watched)
                continue
            if sent == 0:
                raise RuntimeError("The file ended before its length was sent (did it shrink?)")
            offset += sent
            count -= sent
    finally:
        os.close(watched)


async def _writable(loop, int fd):
    """Wait until the socket `fd` can take more bytes."""
    writable = loop.create_future()
    loop.add_writer(fd, _set_done, writable)
    try:
        await writable
    finally:
        loop.remove_writer(fd)


def _set_done(future):
    if not future.done():
        future.set_result(None)


async def _write_file_by_reads(_HttpCore conn, int fd, long long offset, long long count):
    """The file read a chunk at a time and written through the transport (TLS)."""
    while count > 0:
        if conn.state == CONN_CLOSED:
            return
        data = os.pread(fd, min(count, FILE_CHUNK), offset)
        if not data:
            raise RuntimeError("The file ended before its length was sent (did it shrink?)")
        conn.transport.write(data)
        offset += len(data)
        count -= len(data)
        if conn.flow.writing_paused:
            await conn.flow.drain()


include "_http2.pxi"
include "_websocket.pxi"
