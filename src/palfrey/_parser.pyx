# cython: language_level=3, embedsignature=True
"""Palfrey's compiled hot path: socket reads, HTTP/1.1 parsing (llhttp), response encoding.

Docstrings for the public objects live in _parser.pyi. This module knows nothing of the CLI
or of defaults: every knob arrives through ServerContext.
"""

import asyncio
import sys
import time
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from . cimport _llhttp as ll


cdef enum:
    # The loop reads straight into this per-connection buffer (BufferedProtocol).
    INPUT_BUFFER_SIZE = 65536
    # Compact unparsed bytes to the front when less than this is free at the end.
    MIN_READ_SPACE = 4096
    # Stop reading when more request body than this waits for the app (SPEC 2: 64 KiB).
    BODY_HIGH_WATER = 65536
    # Bodies up to this size are copied next to the headers so a response leaves in one write;
    # larger ones follow what is gathered by reference, in the same writev, never copied.
    COPY_BODY_LIMIT = 4096
    # Output gathered for one write (pipelined responses, streamed chunks) is written out once
    # it reaches this size; it also bounds the output buffer's growth (twice this at most).
    GATHER_LIMIT = 16384
    OUTPUT_BUFFER_SIZE = 4096

# At shutdown, a connection accepted just before the listener closed may still have its first
# request in flight: it gets this long to arrive and be answered, instead of being cut as idle.
cdef double SHUTDOWN_FIRST_REQUEST_GRACE = 1.0

# Response framing, chosen when the response starts.
cdef enum Framing:
    FRAME_NONE          # no body allowed: HEAD, 1xx, 204, 304
    FRAME_LENGTH        # content-length given by the app
    FRAME_CHUNKED       # RFC 9112 7.1
    FRAME_CLOSE         # HTTP/1.0 without content-length: the close ends the body (RFC 9112 6.3)

# The response headers that change framing or replace a default.
cdef enum HeaderKind:
    KIND_OTHER
    KIND_CONTENT_LENGTH
    KIND_CONNECTION
    KIND_TRANSFER_ENCODING
    KIND_SERVER
    KIND_DATE

cdef class _HttpCore
cdef class RequestCycle

# Python 3.12+ can run a task's first step at once: an app that never waits answers without a
# loop round-trip, with current_task() and contextvars as in any task. 3.11 schedules it.
cdef bint EAGER_TASKS = sys.version_info >= (3, 12)
cdef object Task = asyncio.Task

cdef bytes CRLF = b"\r\n"
cdef bytes CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef str HTTP_1_1 = "1.1"
cdef str HTTP_1_0 = "1.0"

REJECT_MESSAGES = {
    400: "Invalid HTTP request received.",
    408: "Request timeout.",
    413: "Request body too large.",
    414: "Request target too long.",
    431: "Request header fields too large.",
    500: "Internal Server Error",
    501: "Unsupported transfer coding.",
    503: "Service Unavailable",
}


# ---------------------------------------------------------------------------------------------
# Tables built once at import

cdef list _build_status_lines():
    lines = []
    for code in range(600):
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        lines.append(b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode("ascii")))
    return lines

cdef list STATUS_LINES = _build_status_lines()


cdef list _build_method_names():
    # llhttp_method_name() aborts on an unknown number: ask only for the ones llhttp defines.
    names = [(<bytes>ll.llhttp_method_name(method)).decode("ascii") for method in range(ll.HTTP_QUERY + 1)]
    return names + [""] * (256 - len(names))

cdef list METHOD_NAMES = _build_method_names()


# RFC 9110 5.6.2: tchar. Also used to validate the header names an app sends.
cdef uint8_t TOKEN_CHARS[256]
cdef uint8_t LOWER[256]

cdef void _build_char_tables():
    cdef int c
    for c in range(256):
        TOKEN_CHARS[c] = 0
        LOWER[c] = c
        if 65 <= c <= 90:
            LOWER[c] = c + 32
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        TOKEN_CHARS[c] = 1

_build_char_tables()


# Header names a request usually carries: the interned object is reused, nothing is allocated.
cdef tuple KNOWN_HEADER_NAMES = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"connection",
    b"content-length", b"content-type", b"cookie", b"referer", b"origin", b"cache-control",
    b"pragma", b"upgrade", b"upgrade-insecure-requests", b"expect", b"transfer-encoding",
    b"authorization", b"if-none-match", b"if-modified-since", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip", b"forwarded",
    b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-dest", b"sec-fetch-user", b"sec-ch-ua",
    b"sec-ch-ua-mobile", b"sec-ch-ua-platform", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"dnt", b"te", b"range", b"priority",
    b"x-requested-with", b"content-encoding", b"keep-alive", b"via", b"accept-charset",
)
cdef bytes H_HOST = KNOWN_HEADER_NAMES[0]
cdef bytes H_UPGRADE = KNOWN_HEADER_NAMES[13]
cdef bytes H_EXPECT = KNOWN_HEADER_NAMES[15]
cdef bytes H_TRANSFER_ENCODING = KNOWN_HEADER_NAMES[16]


cdef object _intern_header_name(const char* data, size_t length):
    cdef bytes known
    for known in KNOWN_HEADER_NAMES:
        if <size_t>PyBytes_GET_SIZE(known) == length and memcmp(PyBytes_AS_STRING(known), data, length) == 0:
            return known
    return PyBytes_FromStringAndSize(data, length)


cdef bint _has_token(bytes value, const char* token, size_t token_length):
    """True when the comma-separated list `value` holds `token` (case-insensitive, RFC 9110 5.6.1)."""
    cdef const char* data = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i = 0, start, end
    while i <= n:
        start = i
        while i < n and data[i] != b",":
            i += 1
        end = i
        while start < end and (data[start] == b" " or data[start] == b"\t"):
            start += 1
        while end > start and (data[end - 1] == b" " or data[end - 1] == b"\t"):
            end -= 1
        if <size_t>(end - start) == token_length and _equal_lower(data + start, token, token_length):
            return True
        i += 1
    return False


cdef inline bint _equal_lower(const char* data, const char* lower_token, size_t length):
    cdef size_t i
    for i in range(length):
        if LOWER[<uint8_t>data[i]] != <uint8_t>lower_token[i]:
            return False
    return True


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
# Shared state

cdef class ServerContext:
    cdef public object app
    cdef public object loop
    cdef public dict app_state
    cdef public str root_path
    cdef bytes root_path_bytes
    cdef bytes default_block             # encoded default header lines
    cdef bytes default_block_no_server   # the same without `server`, when the app sends its own
    cdef bint date_header
    cdef bytes date_line
    cdef long date_second
    cdef bint access_log
    cdef public object error_logger
    cdef public object access_logger
    cdef Py_ssize_t limit_concurrency    # -1: none
    cdef double timeout_keep_alive
    cdef double timeout_request_header
    cdef double timeout_request_body
    cdef Py_ssize_t limit_header_size
    cdef Py_ssize_t limit_header_line_size
    cdef Py_ssize_t limit_header_count
    cdef Py_ssize_t limit_target_size
    cdef long long limit_body_size       # -1: none
    cdef double now                      # loop time at the last tick
    cdef list flush_waiting              # connections whose output waits for _flush_waiting
    cdef bint flush_scheduled
    cdef public Py_ssize_t total_requests
    cdef public Py_ssize_t active_requests
    cdef public set connections
    cdef public set websockets          # the WebSocket protocol adds and removes itself
    cdef public object ws_protocol      # (ctx, transport, scope, leftover) -> protocol, or None
    cdef public bint shutting_down

    def __init__(self, *, app, loop, dict app_state, str root_path, list default_headers,
                 bint date_header, bint access_log, error_logger, access_logger,
                 limit_concurrency, double timeout_keep_alive, double timeout_request_header,
                 double timeout_request_body, Py_ssize_t limit_header_size,
                 Py_ssize_t limit_header_line_size, Py_ssize_t limit_header_count,
                 Py_ssize_t limit_target_size, limit_body_size, ws_protocol):
        self.app = app
        self.loop = loop
        self.app_state = app_state
        self.root_path = root_path
        self.root_path_bytes = root_path.encode("ascii")
        self.default_block = b"".join([n + b": " + v + CRLF for n, v in default_headers])
        self.default_block_no_server = b"".join(
            [n + b": " + v + CRLF for n, v in default_headers if n != b"server"]
        )
        self.date_header = date_header
        self.date_second = -1
        self.date_line = b""
        self.access_log = access_log
        self.error_logger = error_logger
        self.access_logger = access_logger
        self.limit_concurrency = -1 if limit_concurrency is None else limit_concurrency
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_request_header = timeout_request_header
        self.timeout_request_body = timeout_request_body
        self.limit_header_size = limit_header_size
        self.limit_header_line_size = limit_header_line_size
        self.limit_header_count = limit_header_count
        self.limit_target_size = limit_target_size
        self.limit_body_size = -1 if limit_body_size is None else limit_body_size
        self.total_requests = 0
        self.active_requests = 0
        self.connections = set()
        self.websockets = set()
        self.ws_protocol = ws_protocol
        self.shutting_down = False
        self.flush_waiting = []
        self.flush_scheduled = False
        self.tick(loop.time())

    def tick(self, double now):
        cdef double wall = time.time()
        self.now = now
        if <long>wall != self.date_second:
            self.date_second = <long>wall
            # RFC 9110 6.6.1: IMF-fixdate; once a second is the resolution it has.
            self.date_line = b"date: " + formatdate(wall, usegmt=True).encode("ascii") + CRLF
            self._expire_deadlines()

    cdef _expire_deadlines(self):
        cdef _HttpCore conn
        for conn in list(self.connections):
            if 0 <= conn.deadline <= self.now and not conn.reading_paused:
                conn._deadline_passed()

    def _flush_waiting(self):
        """Once per loop pass: write out what the connections gathered during the last one.

        A connection whose next pipelined request has not run yet keeps gathering, so the
        responses of one read leave in one write; one whose app is waiting writes now.
        """
        cdef _HttpCore conn
        cdef list waiting = self.flush_waiting
        self.flush_waiting = []
        self.flush_scheduled = False
        for conn in waiting:
            conn.flush_requested = False
            if (conn.cycle is not None and not conn.cycle.app_started
                    and conn.out.length < GATHER_LIMIT):
                conn._request_flush()
            else:
                conn._flush()

    def shutdown(self):
        cdef _HttpCore conn
        self.shutting_down = True
        for conn in list(self.connections):
            if conn.cycle is not None and not conn.cycle.response_complete:
                conn.cycle.keep_alive = False  # in flight: finish, then close
            elif conn.head_in_progress or (conn.cycle is None and not conn.had_request):
                conn.deadline = min(conn.deadline, self.now + SHUTDOWN_FIRST_REQUEST_GRACE)
            else:
                conn._close()  # idle keep-alive: clients retry on a closed idle connection

    def cancel_requests(self):
        cdef _HttpCore conn
        for conn in list(self.connections):
            if conn.app_task is not None and not conn.app_task.done():
                conn.app_task.cancel()
                if conn.cycle is not None and not conn.cycle.app_started:
                    # Cancelled before its first step, _run_asgi never runs to count it off.
                    conn.cycle.app_started = True
                    self.active_requests -= 1


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
# A growable C byte buffer: the scratch space for split header spans, and the output buffer.

cdef struct ByteBuffer:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef int _buffer_init(ByteBuffer* buf, Py_ssize_t capacity) except -1:
    buf.data = <char*>malloc(capacity)
    if buf.data == NULL:
        raise MemoryError()
    buf.length = 0
    buf.capacity = capacity
    return 0


cdef int _buffer_reserve(ByteBuffer* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t needed = buf.length + extra
    cdef Py_ssize_t capacity = buf.capacity
    cdef char* data
    if needed <= capacity:
        return 0
    while capacity < needed:
        capacity *= 2
    data = <char*>realloc(buf.data, capacity)
    if data == NULL:
        raise MemoryError()
    buf.data = data
    buf.capacity = capacity
    return 0


cdef inline int _buffer_append(ByteBuffer* buf, const char* data, Py_ssize_t length) except -1:
    if buf.length + length > buf.capacity:
        _buffer_reserve(buf, length)
    memcpy(buf.data + buf.length, data, length)
    buf.length += length
    return 0


cdef inline int _buffer_append_bytes(ByteBuffer* buf, bytes data) except -1:
    return _buffer_append(buf, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef int _buffer_append_lower(ByteBuffer* buf, const char* data, Py_ssize_t length) except -1:
    cdef Py_ssize_t i
    if buf.length + length > buf.capacity:
        _buffer_reserve(buf, length)
    for i in range(length):
        buf.data[buf.length + i] = <char>LOWER[<uint8_t>data[i]]
    buf.length += length
    return 0


cdef int _buffer_append_hex(ByteBuffer* buf, Py_ssize_t value) except -1:
    cdef char digits[20]
    cdef int n = 0, i
    while True:
        digits[n] = b"0123456789abcdef"[value & 15]
        n += 1
        value >>= 4
        if value == 0:
            break
    _buffer_reserve(buf, n)
    for i in range(n):
        buf.data[buf.length + i] = digits[n - 1 - i]
    buf.length += n
    return 0


# ---------------------------------------------------------------------------------------------
# The connection

cdef class _HttpCore:
    cdef ll.llhttp_t parser
    cdef ServerContext ctx
    cdef object loop
    cdef object transport
    cdef object server_addr
    cdef object client_addr
    cdef str scheme

    cdef bytearray in_buffer
    cdef object in_view
    cdef char* in_data
    cdef Py_ssize_t in_start      # first unparsed byte
    cdef Py_ssize_t in_end        # end of received bytes
    cdef Py_ssize_t in_capacity

    # State of the request head being parsed.
    cdef ByteBuffer scratch
    cdef bytes target
    cdef object header_name
    cdef list headers
    cdef Py_ssize_t header_count
    cdef Py_ssize_t head_size
    cdef Py_ssize_t host_count
    cdef bytes transfer_encoding
    cdef bint expect_continue
    cdef bint upgrade_websocket   # the Upgrade field names websocket
    cdef dict websocket_scope     # set when the connection is to be handed to ctx.ws_protocol
    cdef long long body_received
    cdef int reject_status

    cdef RequestCycle cycle
    cdef object app_task
    cdef bint parser_paused       # paused after a complete request until its response is done
    cdef bint reading_paused
    cdef bint writing_paused
    cdef object drain_waiter
    # Loop time by which the client must have sent more: its idle keep-alive time, the rest of
    # a request head, or the next piece of a body; -1 while the app has the request.
    cdef double deadline
    cdef bint head_in_progress    # part of a request head has arrived
    cdef bint had_request         # a request has begun on this connection
    cdef bint flush_requested     # in ctx.flush_waiting
    cdef bint parsing             # inside llhttp_execute
    cdef bint closed

    cdef ByteBuffer out

    def __cinit__(self):
        self.in_buffer = _uninitialized_bytearray(INPUT_BUFFER_SIZE)
        self.in_view = memoryview(self.in_buffer)
        self.in_data = PyByteArray_AS_STRING(self.in_buffer)
        self.in_capacity = INPUT_BUFFER_SIZE
        _buffer_init(&self.scratch, 256)
        _buffer_init(&self.out, OUTPUT_BUFFER_SIZE)
        ll.llhttp_init(&self.parser, ll.HTTP_REQUEST, &SETTINGS)
        self.parser.data = <void*>self
        self.deadline = -1

    def __dealloc__(self):
        free(self.scratch.data)
        free(self.out.data)

    def __init__(self, ServerContext ctx):
        self.ctx = ctx
        self.loop = ctx.loop

    # -- asyncio protocol interface -------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.ctx.connections.add(self)
        self.server_addr = _local_address(transport)
        self.client_addr = _remote_address(transport)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        # A connection that never sends a request is closed like an idle keep-alive one.
        self._set_deadline(self.ctx.timeout_keep_alive)

    def get_buffer(self, Py_ssize_t sizehint):
        if self.in_end == 0:
            return self.in_view
        if self.in_start == self.in_end:
            self.in_start = self.in_end = 0
            return self.in_view
        if self.in_capacity - self.in_end < MIN_READ_SPACE and self.in_start > 0:
            memmove(self.in_data, self.in_data + self.in_start, self.in_end - self.in_start)
            self.in_end -= self.in_start
            self.in_start = 0
        if self.in_end == self.in_capacity:
            self._grow_input_buffer()
        return self.in_view[self.in_end:]

    def buffer_updated(self, Py_ssize_t nbytes):
        self.in_end += nbytes
        if self.closed:
            return
        if self.parser_paused:
            # Pipelining: the next request waits, unparsed, until this response is done.
            self._pause_reading()
            return
        self._parse()
        if self.out.length:
            self._flush()  # what apps answered during this read leaves in one write

    def connection_lost(self, exc):
        self.closed = True
        # A connection stays counted while its app task runs, so shutdown can still cancel it.
        if self.app_task is None or self.app_task.done():
            self.ctx.connections.discard(self)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # -- reading ------------------------------------------------------------------------------------

    cdef _grow_input_buffer(self):
        cdef bytearray bigger = _uninitialized_bytearray(self.in_capacity * 2)
        memcpy(PyByteArray_AS_STRING(bigger), self.in_data, self.in_end)
        self.in_buffer = bigger
        self.in_view = memoryview(bigger)
        self.in_data = PyByteArray_AS_STRING(bigger)
        self.in_capacity *= 2

    cdef _parse(self):
        cdef ll.llhttp_errno_t err
        cdef const char* stop
        while self.in_start < self.in_end and not self.parser_paused and not self.closed:
            self.parsing = True
            err = ll.llhttp_execute(
                &self.parser, self.in_data + self.in_start, self.in_end - self.in_start
            )
            self.parsing = False
            if err == ll.HPE_OK:
                self.in_start = self.in_end = 0
                return
            if err == ll.HPE_PAUSED or err == ll.HPE_PAUSED_UPGRADE:
                stop = ll.llhttp_get_error_pos(&self.parser)
                self.in_start = stop - self.in_data
                if self.websocket_scope is not None:
                    self._hand_over_to_websocket()
                    return
                if err == ll.HPE_PAUSED_UPGRADE:
                    # Upgrades other than WebSocket are served as plain HTTP/1.1 (SPEC 2).
                    ll.llhttp_resume_after_upgrade(&self.parser)
                continue
            if not self.closed:
                self._reject(self.reject_status or 400)
            return
        if self.in_start == self.in_end:
            self.in_start = self.in_end = 0

    cdef _pause_reading(self):
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    cdef _resume_reading(self):
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
            if self.cycle is not None and not self.parser_paused:
                # A body is on its way and the pause was ours (the app had not read it yet),
                # not the client's: its stall timer starts again.
                self._set_deadline(self.ctx.timeout_request_body)

    # -- llhttp callbacks (called from C through the shims above) ---------------------------------
    # Each returns 0 to go on, -1 to stop the parser (reject_status says why) or HPE_PAUSED.

    cdef int _on_message_begin(self) except? -1:
        # The whole head must arrive in time, or a slow client holds the connection (slowloris).
        self._set_deadline(self.ctx.timeout_request_header)
        self.head_in_progress = True
        self.had_request = True
        self.scratch.length = 0
        self.target = None
        self.headers = []
        self.header_count = 0
        self.head_size = 0
        self.host_count = 0
        self.transfer_encoding = None
        self.expect_continue = False
        self.upgrade_websocket = False
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
        if not self.head_in_progress:
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
        self.headers.append((name, value))
        return 0

    cdef int _on_headers_complete(self) except? -1:
        cdef ServerContext ctx = self.ctx
        cdef int status
        self.head_in_progress = False
        if self.parser.flags & ll.F_CHUNKED or self.parser.content_length > 0:
            self._set_deadline(ctx.timeout_request_body)
        else:
            self.deadline = -1
        if self.parser.http_major != 1 or self.parser.http_minor > 1:
            return self._stop(400)
        if self.parser.method == ll.HTTP_CONNECT:
            return self._stop(400)  # no tunnels: an ASGI app cannot take over the socket
        # RFC 9112 3.2: a client MUST send exactly one Host field in an HTTP/1.1 request.
        if self.host_count > 1 or (self.host_count == 0 and self.parser.http_minor == 1):
            return self._stop(400)
        if self.transfer_encoding is not None:
            status = _transfer_coding_status(self.transfer_encoding)
            if status:
                return self._stop(status)
        if (ctx.limit_body_size >= 0 and self.parser.flags & ll.F_CONTENT_LENGTH
                and self.parser.content_length > <unsigned long long>ctx.limit_body_size):
            return self._stop(413)
        if ctx.limit_concurrency >= 0 and (
            len(ctx.connections) >= ctx.limit_concurrency or ctx.active_requests >= ctx.limit_concurrency
        ):
            ctx.error_logger.warning("Exceeded concurrency limit.")
            if ctx.access_log:
                _log_access(ctx, self._build_scope(), 503)  # logged as any response, as Uvicorn
            self._send_error_response(503)
            self._close()
            return -1
        if self.parser.upgrade:
            if self.upgrade_websocket and ctx.ws_protocol is not None:
                # The handshake goes to the WebSocket protocol once the parser stops at the
                # end of this request (RFC 6455 4.2); see _hand_over_to_websocket.
                self.websocket_scope = self._build_scope()
                return 0
            ctx.error_logger.warning("Unsupported upgrade request.")
        self._start_cycle()
        return 0

    cdef int _stop(self, int status) noexcept:
        self.reject_status = status
        return -1

    cdef int _on_body(self, const char* at, size_t length) except? -1:
        cdef RequestCycle cycle = self.cycle
        if cycle is None:
            return 0  # a body on a WebSocket handshake means nothing (RFC 6455 4.1)
        self.body_received += length
        if self.ctx.limit_body_size >= 0 and self.body_received > self.ctx.limit_body_size:
            self.reject_status = 413
            return -1
        self._set_deadline(self.ctx.timeout_request_body)  # a stalled upload is cut off
        if cycle.response_complete:
            return 0  # the app answered without reading: drop the rest of the body
        cycle.body_chunks.append(PyBytes_FromStringAndSize(at, length))
        cycle.body_size += length
        if cycle.body_size > BODY_HIGH_WATER:
            self._pause_reading()
        cycle._wake()
        return 0

    cdef int _on_message_complete(self) except? -1:
        cdef RequestCycle cycle = self.cycle
        if cycle is None:
            self.parser_paused = True  # a WebSocket handshake: the bytes after it are not HTTP
            return ll.HPE_PAUSED
        cycle.more_body = False
        if cycle.response_complete:
            self.cycle = None
            self._set_deadline(self.ctx.timeout_keep_alive)
            return -1 if self.closed else 0
        self.deadline = -1
        cycle._wake()
        # Stop here until the response is done: requests are answered strictly in order.
        self.parser_paused = True
        return ll.HPE_PAUSED

    cdef _hand_over_to_websocket(self):
        """Give the transport, the handshake's scope and the bytes read after it to the
        WebSocket protocol; from here on this object sees nothing of the connection."""
        leftover = PyBytes_FromStringAndSize(self.in_data + self.in_start, self.in_end - self.in_start)
        self.in_start = self.in_end = 0
        self.closed = True
        self.ctx.connections.discard(self)
        protocol = self.ctx.ws_protocol(self.ctx, self.transport, self.websocket_scope, leftover)
        self.websocket_scope = None
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- the request cycle --------------------------------------------------------------------------

    cdef _start_cycle(self):
        cdef ServerContext ctx = self.ctx
        cdef RequestCycle cycle = RequestCycle.__new__(RequestCycle)
        cycle.conn = self
        cycle.scope = self._build_scope()
        cycle.body_chunks = []
        # RFC 9112 6.3: without Transfer-Encoding or Content-Length a request has no body,
        # so the app's first receive() need not wait for the parser to reach the end.
        cycle.more_body = (self.parser.flags & ll.F_CHUNKED) or self.parser.content_length > 0
        cycle.keep_alive = (
            self.parser.http_minor == 1 and ll.llhttp_should_keep_alive(&self.parser)
            and not ctx.shutting_down
        )
        cycle.waiting_for_continue = self.expect_continue and self.parser.http_minor == 1
        cycle.head_request = self.parser.method == ll.HTTP_HEAD
        self.cycle = cycle
        ctx.active_requests += 1
        if EAGER_TASKS:
            self.app_task = Task(_run_asgi(cycle, ctx.app), loop=self.loop, eager_start=True)
        else:
            self.app_task = self.loop.create_task(_run_asgi(cycle, ctx.app))

    cdef dict _build_scope(self):
        cdef ServerContext ctx = self.ctx
        cdef bytes target = self.target if self.target is not None else b""
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
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": HTTP_1_1 if self.parser.http_minor == 1 else HTTP_1_0,
            "server": self.server_addr,
            "client": self.client_addr,
            "scheme": self.scheme,
            "method": METHOD_NAMES[self.parser.method],
            "root_path": ctx.root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": ctx.app_state.copy() if ctx.app_state else {},
        }

    cdef _on_response_complete(self, RequestCycle cycle):
        self.ctx.total_requests += 1
        if not cycle.keep_alive or self.ctx.shutting_down:
            self._close()
            return
        if not self.parser_paused:
            # The app answered before the request was fully read (an eager task does so
            # inside the parser): the rest of the body is dropped, so stop holding it back.
            if not self.parsing:
                self._flush()
            self._resume_reading()
            return
        self.cycle = None
        self._set_deadline(self.ctx.timeout_keep_alive)
        self.parser_paused = False
        ll.llhttp_resume(&self.parser)
        self._parse()
        if self.cycle is not None and not self.cycle.app_started:
            self._request_flush()  # a pipelined request is next: gather its response too
        else:
            self._flush()
        if not self.parser_paused:
            self._resume_reading()

    # -- writing -----------------------------------------------------------------------------------

    cdef _request_flush(self):
        cdef ServerContext ctx = self.ctx
        if not self.flush_requested:
            self.flush_requested = True
            ctx.flush_waiting.append(self)
            if not ctx.flush_scheduled:
                ctx.flush_scheduled = True
                self.loop.call_soon(ctx._flush_waiting)

    cdef _flush(self):
        if self.out.length and not self.closed:
            data = PyBytes_FromStringAndSize(self.out.data, self.out.length)
            self.out.length = 0
            self.transport.write(data)
        self.out.length = 0

    cdef _flush_with(self, bytes body):
        """Write what is gathered and then `body`, in one writev, without copying the body."""
        if self.closed:
            self.out.length = 0
        elif self.out.length:
            gathered = PyBytes_FromStringAndSize(self.out.data, self.out.length)
            self.out.length = 0
            self.transport.writelines((gathered, body))
        else:
            self.transport.write(body)

    cdef _write_default_headers(self, bint with_server, bint with_date):
        _buffer_append_bytes(&self.out, self.ctx.default_block if with_server else self.ctx.default_block_no_server)
        if with_date and self.ctx.date_header:
            _buffer_append_bytes(&self.out, self.ctx.date_line)

    cdef _send_error_response(self, int status):
        """A complete plain-text answer the server gives on its own (4xx/5xx), then close."""
        message = REJECT_MESSAGES[status].encode("ascii")
        _buffer_append_bytes(&self.out, STATUS_LINES[status])
        self._write_default_headers(True, True)
        _buffer_append_bytes(
            &self.out,
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(message),
        )
        _buffer_append_bytes(&self.out, message)
        self._flush()

    cdef _reject(self, int status):
        """The request cannot be served: answer with `status` if nothing was sent yet, close."""
        cdef RequestCycle cycle = self.cycle
        if status != 500:
            self.ctx.error_logger.warning(REJECT_MESSAGES[status])
        if cycle is not None:
            cycle.disconnected = True
            cycle._wake()
        if cycle is None or not cycle.response_started:
            self._send_error_response(status)
        self._close()

    cdef inline void _set_deadline(self, double timeout):
        self.deadline = self.ctx.now + timeout

    cdef _deadline_passed(self):
        """The client went quiet: idle -> close; in a head or a body -> 408 (RFC 9110 15.5.9)."""
        if self.head_in_progress or self.cycle is not None:
            self._reject(408)
        else:
            self._close()

    cdef _close(self):
        if not self.closed:
            self._flush()
            self.closed = True
            self.transport.close()

    async def _drain(self):
        if self.drain_waiter is None or self.drain_waiter.done():
            self.drain_waiter = self.loop.create_future()
        await self.drain_waiter


class HttpProtocol(_HttpCore, asyncio.BufferedProtocol):
    # asyncio and uvloop use get_buffer/buffer_updated only for BufferedProtocol instances,
    # which a cdef class cannot inherit from: this class joins the two (DESIGN: conventions).
    __slots__ = ()


cdef bytearray _uninitialized_bytearray(Py_ssize_t size):
    # bytearray(size) would zero every page: a connection would cost all of them in memory
    # even when its requests fill only the first one.
    return PyByteArray_FromStringAndSize(NULL, size)


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


# ---------------------------------------------------------------------------------------------
# One request/response: the receive and send callables the app gets.

cdef class RequestCycle:
    cdef _HttpCore conn
    cdef dict scope
    cdef list body_chunks
    cdef Py_ssize_t body_size
    cdef bint more_body
    cdef bint request_delivered     # the last http.request message went to the app
    cdef bint disconnected
    cdef bint keep_alive
    cdef bint waiting_for_continue
    cdef bint head_request
    cdef bint response_started
    cdef bint response_complete
    cdef bint app_started           # the app task has taken its first step
    cdef int status
    cdef Framing framing
    cdef long long length_left       # FRAME_LENGTH: body bytes still owed
    cdef object message_waiter

    cdef _wake(self):
        if self.message_waiter is not None and not self.message_waiter.done():
            self.message_waiter.set_result(None)

    async def receive(self):
        cdef _HttpCore conn = self.conn
        if self.waiting_for_continue:
            self.waiting_for_continue = False
            _buffer_append_bytes(&conn.out, CONTINUE_RESPONSE)
            conn._flush()
        if not self.disconnected and not self.response_complete and (
            self.request_delivered or (self.more_body and self.body_size == 0)
        ):
            self.message_waiter = conn.loop.create_future()
            try:
                await self.message_waiter
            finally:
                self.message_waiter = None
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        return self._take_body()

    cdef dict _take_body(self):
        if self.body_size == 0:
            body = b""
        elif len(self.body_chunks) == 1:
            body = self.body_chunks[0]
        else:
            body = b"".join(self.body_chunks)
        self.body_chunks = []
        self.body_size = 0
        if not self.more_body:
            self.request_delivered = True
        if not self.conn.parser_paused:
            self.conn._resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message):
        cdef _HttpCore conn = self.conn
        if conn.writing_paused and not self.disconnected:
            await conn._drain()
        if self.disconnected:
            return
        message_type = message["type"]
        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
            self._start_response(message["status"], _get(message, "headers", ()))
        elif not self.response_complete:
            if message_type != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")
            self._send_body(_get(message, "body", b""), _get(message, "more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")

    cdef _start_response(self, int status, headers):
        cdef _HttpCore conn = self.conn
        cdef ServerContext ctx = conn.ctx
        cdef ByteBuffer* out = &conn.out
        cdef long long content_length = -1
        cdef bint app_server = False, app_date = False, app_close = False
        cdef bint app_coded = False, app_chunked = False
        cdef Py_ssize_t name_start
        cdef Py_ssize_t response_start = out.length  # earlier pipelined responses may wait before it
        cdef HeaderKind kind
        if not 100 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status!r}.")  # RFC 9110 15
        _buffer_append_bytes(out, STATUS_LINES[status])
        try:
            for header in headers:
                if type(header) is tuple and PyTuple_GET_SIZE(header) == 2:
                    name = (<tuple>header)[0]  # the usual shape, without an iterator
                    value = (<tuple>header)[1]
                else:
                    name, value = header
                name_start = out.length
                _append_header(out, name, value)
                kind = _header_kind(out.data + name_start, PyBytes_GET_SIZE(name))
                if kind == KIND_CONTENT_LENGTH:
                    content_length = _app_content_length(value, content_length)
                elif kind == KIND_CONNECTION:
                    app_close = app_close or _has_token(value, b"close", 5)
                elif kind == KIND_TRANSFER_ENCODING:
                    app_coded = True
                    app_chunked = _has_token(value, b"chunked", 7)
                elif kind == KIND_SERVER:
                    app_server = True
                elif kind == KIND_DATE:
                    app_date = True
            if content_length >= 0 and app_coded:
                # RFC 9112 6.2: never both; a recipient could not tell where the body ends.
                raise RuntimeError("Response has both content-length and transfer-encoding.")
        except BaseException:
            out.length = response_start
            raise
        self.response_started = True
        self.status = status
        if self.waiting_for_continue:
            # The app answers without reading the body: the client may never send it, so the
            # connection cannot be reused safely (RFC 9110 10.1.1).
            self.waiting_for_continue = False
            self.keep_alive = False
        conn._write_default_headers(not app_server, not app_date)
        if app_close:
            self.keep_alive = False
        if self.head_request or status < 200 or status == 204 or status == 304:
            self.framing = FRAME_NONE
        elif content_length >= 0:
            self.framing = FRAME_LENGTH
            self.length_left = content_length
        elif app_chunked:
            self.framing = FRAME_CHUNKED
        elif self.scope["http_version"] is HTTP_1_0:
            self.framing = FRAME_CLOSE
            self.keep_alive = False
        else:
            self.framing = FRAME_CHUNKED
            _buffer_append(out, b"transfer-encoding: chunked\r\n", 28)
        if not self.keep_alive and not app_close:
            _buffer_append(out, b"connection: close\r\n", 19)
        _buffer_append(out, b"\r\n", 2)
        if ctx.access_log:
            _log_access(ctx, self.scope, status)
        # The headers wait for the first body message so a small response leaves in one
        # write; an app that pauses between the two still gets them out on the next loop pass.
        conn._request_flush()

    cdef _send_body(self, body, bint more_body):
        cdef _HttpCore conn = self.conn
        cdef ByteBuffer* out = &conn.out
        cdef Py_ssize_t length
        if type(body) is not bytes:
            body = bytes(body)
        length = PyBytes_GET_SIZE(body)
        if self.framing == FRAME_LENGTH and not self.head_request:
            if length > self.length_left:
                # What was valid goes out (as Uvicorn does); the app error then closes.
                conn._flush()
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= length
        if length and self.framing != FRAME_NONE:
            if self.framing == FRAME_CHUNKED:
                _buffer_append_hex(out, length)
                _buffer_append(out, b"\r\n", 2)
            if length <= COPY_BODY_LIMIT:
                _buffer_append_bytes(out, body)
            else:
                conn._flush_with(body)
            if self.framing == FRAME_CHUNKED:
                _buffer_append(out, b"\r\n", 2)
        if more_body:
            # Chunks an app sends without waiting in between leave together, at the end of
            # this loop pass; past GATHER_LIMIT they go now, so backpressure still applies.
            if out.length < GATHER_LIMIT:
                conn._request_flush()
            else:
                conn._flush()
            return
        if self.framing == FRAME_CHUNKED:
            _buffer_append(out, b"0\r\n\r\n", 5)
        elif self.framing == FRAME_LENGTH and self.length_left != 0:
            conn._flush()
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        self._wake()
        conn._on_response_complete(self)

    async def _send_internal_error(self):
        await self.send({
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"21"),
                (b"connection", b"close"),
            ],
        })
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})


cdef inline object _get(message, str key, default):
    """message.get(key, default), without a method lookup for the usual plain dict."""
    if type(message) is dict:
        return (<dict>message).get(key, default)
    return message.get(key, default)


cdef HeaderKind _header_kind(const char* name, Py_ssize_t length):
    """Which response header, of those that change framing or defaults, `name` (lower-case) is."""
    if length == 14 and memcmp(name, b"content-length", 14) == 0:
        return KIND_CONTENT_LENGTH
    if length == 10 and memcmp(name, b"connection", 10) == 0:
        return KIND_CONNECTION
    if length == 17 and memcmp(name, b"transfer-encoding", 17) == 0:
        return KIND_TRANSFER_ENCODING
    if length == 6 and memcmp(name, b"server", 6) == 0:
        return KIND_SERVER
    if length == 4 and memcmp(name, b"date", 4) == 0:
        return KIND_DATE
    return KIND_OTHER


cdef int _append_header(ByteBuffer* out, name, value) except -1:
    """Validate one app header while copying it, lower-cased, into the output buffer.

    A name must be a token (RFC 9110 5.1) and a value must hold no CTL but HTAB (RFC 9110
    5.5): this is what stops response splitting, so nothing unchecked reaches the wire.
    """
    cdef const char* data
    cdef Py_ssize_t n, i
    cdef uint8_t c
    if type(name) is not bytes or type(value) is not bytes:
        raise RuntimeError("Invalid HTTP header: names and values must be bytes.")
    data = PyBytes_AS_STRING(name)
    n = PyBytes_GET_SIZE(name)
    if n == 0:
        raise RuntimeError("Invalid HTTP header name.")
    for i in range(n):
        if not TOKEN_CHARS[<uint8_t>data[i]]:
            raise RuntimeError("Invalid HTTP header name.")
    _buffer_append_lower(out, data, n)
    _buffer_append(out, b": ", 2)
    data = PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    for i in range(n):
        c = <uint8_t>data[i]
        if (c < 32 and c != 9) or c == 127:
            raise RuntimeError("Invalid HTTP header value.")
    _buffer_append(out, data, n)
    _buffer_append(out, b"\r\n", 2)
    return 0


cdef long long _app_content_length(bytes value, long long earlier) except -2:
    """The app's content-length; a second one must agree with the first (RFC 9110 8.6)."""
    cdef long long length = _parse_content_length(value)
    if earlier >= 0 and length != earlier:
        raise RuntimeError("Response has conflicting content-length headers.")
    return length


cdef long long _parse_content_length(bytes value) except -2:
    cdef const char* data = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i
    cdef long long result = 0
    if n == 0 or n > 18:
        raise RuntimeError("Invalid content-length header.")
    for i in range(n):
        if not (b"0" <= data[i] <= b"9"):
            raise RuntimeError("Invalid content-length header.")
        result = result * 10 + (data[i] - 48)
    return result


cdef _log_access(ServerContext ctx, dict scope, int status):
    client = scope.get("client")
    path = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path = path + "?" + scope["query_string"].decode("ascii")
    ctx.access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        "%s:%d" % tuple(client) if client else "",
        scope["method"],
        path,
        scope["http_version"],
        status,
    )


async def _run_asgi(RequestCycle cycle, app):
    """Run the app for one request; turn whatever it does wrong into a logged, closed answer."""
    cdef ServerContext ctx = cycle.conn.ctx
    cycle.app_started = True
    try:
        result = await app(cycle.scope, cycle.receive, cycle.send)
    except BaseException as exc:
        ctx.error_logger.error("Exception in ASGI application\n", exc_info=exc)
        if not cycle.response_started and not cycle.disconnected:
            await cycle._send_internal_error()
        else:
            cycle.conn._close()
    else:
        if result is not None:
            ctx.error_logger.error("ASGI callable should return None, but returned '%s'.", result)
            cycle.conn._close()
        elif not cycle.response_started and not cycle.disconnected:
            ctx.error_logger.error("ASGI callable returned without starting response.")
            await cycle._send_internal_error()
        elif not cycle.response_complete and not cycle.disconnected:
            ctx.error_logger.error("ASGI callable returned without completing response.")
            cycle.conn._close()
    finally:
        ctx.active_requests -= 1
        if cycle.conn.closed:
            ctx.connections.discard(cycle.conn)


include "_websocket.pxi"
