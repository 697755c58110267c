# What every protocol shares, compiled: byte buffers, the tables built from
# palfrey.protocols.common, response-field validation and the framing decision, the server's
# shared state (ServerContext) and transport flow control. Included into _parser.pyx.

from palfrey.protocols.common import (
    ERROR_CONTENT_TYPE,
    ERROR_MESSAGES,
    STATUS_PHRASES,
    TOKEN_CHARS as _TOKEN_CHARS,
    error_body,
    http_date,
    linger_and_close,
    log_access,
    log_access_formatted,
    tls_extension,
)


cdef bytes CRLF = b"\r\n"


# -- tables built once at import ----------------------------------------------------------------

cdef list _build_status_lines():
    lines = [b""] * 100
    for code in range(100, 600):
        lines.append(b"HTTP/1.1 %d %s\r\n" % (code, STATUS_PHRASES[code].encode("ascii")))
    return lines

# HTTP/1.1 status lines 100-599, indexed by code.
cdef list STATUS_LINES = _build_status_lines()

# RFC 9110 5.6.2 tchar, and ASCII lower-casing, as C tables.
cdef uint8_t TOKEN_TABLE[256]
cdef uint8_t LOWER[256]

cdef void _build_char_tables():
    cdef int c
    for c in range(256):
        TOKEN_TABLE[c] = 0
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
    for c in _TOKEN_CHARS.encode("ascii"):
        TOKEN_TABLE[c] = 1

_build_char_tables()


# -- a growable C byte buffer -------------------------------------------------------------------

cdef enum:
    # A buffer's first allocation (bytes): a small response fits, and glibc serves blocks
    # this small from its per-thread cache, so releasing an idle connection's is cheap.
    BUFFER_MIN_SIZE = 1024

cdef int _buffer_init(ByteBuffer* buf, Py_ssize_t capacity) except -1:
    buf.data = <char*>malloc(capacity)
    if buf.data == NULL:
        raise MemoryError()
    buf.length = 0
    buf.capacity = capacity
    return 0


cdef int _buffer_reserve(ByteBuffer* buf, Py_ssize_t extra) except -1:
    """Room for `extra` more bytes; a released buffer (no data) is allocated again."""
    cdef Py_ssize_t needed = buf.length + extra
    cdef Py_ssize_t capacity = buf.capacity if buf.capacity else BUFFER_MIN_SIZE
    cdef char* data
    if needed <= buf.capacity:
        return 0
    while capacity < needed:
        capacity *= 2
    data = <char*>realloc(buf.data, capacity)
    if data == NULL:
        raise MemoryError()
    buf.data = data
    buf.capacity = capacity
    return 0


cdef inline void _buffer_release(ByteBuffer* buf) noexcept:
    """Give an empty buffer's memory back (the next append allocates it again)."""
    if buf.capacity and not buf.length:
        free(buf.data)
        buf.data = NULL
        buf.capacity = 0


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


# -- field values -------------------------------------------------------------------------------

cdef inline bint _equal_lower(const char* data, const char* lower_token, size_t length):
    cdef size_t i
    for i in range(length):
        if LOWER[<uint8_t>data[i]] != <uint8_t>lower_token[i]:
            return False
    return True


cdef int _count_token(bytes value, const char* token, size_t token_length, bint* last) noexcept:
    """How many members of the comma-separated list `value` are `token` (case-insensitive,
    RFC 9110 5.6.1); `last`: its last non-empty member is `token`."""
    cdef const char* data = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i = 0, start, end
    cdef int count = 0
    cdef bint match
    last[0] = False
    while i <= n:
        start = i
        while i < n and data[i] != b",":
            i += 1
        end = i
        while start < end and (data[start] == b" " or data[start] == b"\t"):
            start += 1
        while end > start and (data[end - 1] == b" " or data[end - 1] == b"\t"):
            end -= 1
        if end > start:  # empty members do not count (RFC 9110 5.6.1)
            match = <size_t>(end - start) == token_length and _equal_lower(
                data + start, token, token_length)
            count += match
            last[0] = match
        i += 1
    return count


cdef inline bint _has_token(bytes value, const char* token, size_t token_length) noexcept:
    """True when the comma-separated list `value` holds `token` (case-insensitive, RFC 9110 5.6.1)."""
    cdef bint last
    return _count_token(value, token, token_length, &last) > 0


cdef HeaderKind _header_kind(const char* name, Py_ssize_t length):
    """Which response field, of those that change framing or replace a default, `name`
    (lower-case) is."""
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
    if ((length == 10 and memcmp(name, b"keep-alive", 10) == 0)
            or (length == 16 and memcmp(name, b"proxy-connection", 16) == 0)
            or (length == 7 and memcmp(name, b"upgrade", 7) == 0)):
        return KIND_CONNECTION_SPECIFIC
    return KIND_OTHER


cdef int _check_field(object name, object value) except -1:
    """Refuse a response field that could not be written safely: a name must be a token
    (RFC 9110 5.1) and a value must hold no CTL but HTAB (RFC 9110 5.5). This is what stops
    response splitting, so nothing unchecked reaches the wire."""
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
        if not TOKEN_TABLE[<uint8_t>data[i]]:
            raise RuntimeError("Invalid HTTP header name.")
    data = PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    for i in range(n):
        c = <uint8_t>data[i]
        if (c < 32 and c != 9) or c == 127:
            raise RuntimeError("Invalid HTTP header value.")
    return 0


cdef inline tuple _field_pair(header):
    """An app's header item as a (name, value) tuple, without an iterator for the usual tuple."""
    if type(header) is tuple and PyTuple_GET_SIZE(header) == 2:
        return <tuple>header
    name, value = header
    return (name, value)


cdef int _note_field(HeaderFacts* facts, HeaderKind kind, bytes value) except -1:
    """Record what one app field says about framing and defaults. Returns 0 for a field
    not to write (a repeated content-length), else 1."""
    cdef long long length
    cdef int chunked
    cdef bint last
    if kind == KIND_CONTENT_LENGTH:
        length = _parse_content_length(value)
        if facts.content_length >= 0:
            if length != facts.content_length:
                raise RuntimeError("Response has conflicting content-length headers.")
            return 0  # one field is enough; strict clients refuse two (RFC 9110 8.6)
        facts.content_length = length
    elif kind == KIND_CONNECTION:
        facts.close = facts.close or _has_token(value, b"close", 5)
    elif kind == KIND_TRANSFER_ENCODING:
        # The codings of all the fields in order: chunked, if there, once and last (RFC 9112
        # 6.1, 7.1); else a client reads the body to the close, or unchunks it twice.
        chunked = _count_token(value, b"chunked", 7, &last)
        if facts.chunked or chunked > 1 or (chunked and not last):
            raise RuntimeError("Response transfer-encoding must list chunked once and last.")
        facts.transfer_coded = True
        facts.chunked = chunked == 1
    elif kind == KIND_SERVER:
        facts.server = True
    elif kind == KIND_DATE:
        facts.date = True
    return 1


cdef inline void _reset_facts(HeaderFacts* facts):
    facts.content_length = -1
    facts.close = facts.transfer_coded = facts.chunked = facts.server = facts.date = False


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


cdef int _encode_fields(ByteBuffer* out, object headers, HeaderFacts* facts,
                        unsigned int drop) except -1:
    """Validate the app's fields and write them, names lower-cased, as HTTP/1.1 field lines;
    note in `facts` what they say about framing. `drop` (DROP_* bits): framing fields the
    response must not carry, validated but left out."""
    cdef Py_ssize_t name_start, name_length
    cdef tuple pair
    cdef HeaderKind kind
    for header in headers:
        pair = _field_pair(header)
        name = pair[0]
        value = pair[1]
        _check_field(name, value)
        name_start = out.length
        name_length = PyBytes_GET_SIZE(name)
        _buffer_append_lower(out, PyBytes_AS_STRING(name), name_length)
        kind = _header_kind(out.data + name_start, name_length)
        if ((kind == KIND_CONTENT_LENGTH and drop & DROP_LENGTH)
                or (kind == KIND_TRANSFER_ENCODING and drop & DROP_CODING)
                or not _note_field(facts, kind, value)):
            out.length = name_start
            continue
        _buffer_append(out, b": ", 2)
        _buffer_append_bytes(out, value)
        _buffer_append(out, b"\r\n", 2)
    if facts.content_length >= 0 and facts.transfer_coded:
        # RFC 9112 6.2: never both; a recipient could not tell where the body ends.
        raise RuntimeError("Response has both content-length and transfer-encoding.")
    return 0


cdef inline unsigned int framing_fields_to_drop(int status, int http_version) noexcept:
    """What an HTTP/1.x response may not carry: 1xx and 204 no Content-Length nor
    Transfer-Encoding (RFC 9110 8.6, RFC 9112 6.1); an answer to HTTP/1.0 no
    Transfer-Encoding (RFC 9112 6.1: its body is then delimited by the close)."""
    if status < 200 or status == 204:
        return DROP_LENGTH | DROP_CODING
    return DROP_CODING if http_version == 10 else 0


cdef ResponseFraming decide_framing(int status, bint head_request, int http_version,
                                    bint keep_alive, HeaderFacts* facts) noexcept:
    """How a response's body is delimited, from its status, the request's method (HEAD or
    not) and HTTP version (10, 11 or 20) and what the app's fields say. ``keep_alive``: the
    connection could carry another request before this response (HTTP/1.1)."""
    cdef ResponseFraming result
    result.length = facts.content_length
    result.add_chunked = False
    if head_request or status < 200 or status == 204 or status == 304:
        result.framing = FRAME_NONE  # RFC 9110 6.4.1: no content, whatever the fields say
    elif facts.content_length >= 0:
        result.framing = FRAME_LENGTH
    elif http_version == 20:
        result.framing = FRAME_STREAM
    elif facts.chunked:
        result.framing = FRAME_CHUNKED
    elif http_version == 10:
        result.framing = FRAME_CLOSE  # RFC 9112 6.3: HTTP/1.0 knows no chunked coding
        keep_alive = False
    else:
        result.framing = FRAME_CHUNKED
        result.add_chunked = True
    result.keep_alive = keep_alive and not facts.close
    result.add_close = http_version != 20 and not result.keep_alive and not facts.close
    return result


_FRAMING_NAMES = {FRAME_NONE: "none", FRAME_LENGTH: "length", FRAME_CHUNKED: "chunked",
                  FRAME_CLOSE: "close", FRAME_STREAM: "stream"}


def response_framing(int status, str method, str http_version, headers, bint keep_alive=True):
    """The framing decision alone, for tests: see _parser.pyi."""
    cdef HeaderFacts facts
    cdef ResponseFraming result
    cdef ByteBuffer scratch
    cdef int version = {"1.0": 10, "1.1": 11, "2": 20}[http_version]
    _reset_facts(&facts)
    _buffer_init(&scratch, 256)
    try:
        _encode_fields(&scratch, headers, &facts,
                       framing_fields_to_drop(status, version) if version != 20 else 0)
        encoded = PyBytes_FromStringAndSize(scratch.data, scratch.length)
    finally:
        free(scratch.data)
    result = decide_framing(status, method == "HEAD", version, keep_alive, &facts)
    return {
        "fields": encoded,
        "framing": _FRAMING_NAMES[result.framing],
        "length": result.length if result.framing == FRAME_LENGTH else None,
        "keep_alive": result.keep_alive,
        "add_chunked": result.add_chunked,
        "add_close": result.add_close,
    }


# -- the server's shared state ------------------------------------------------------------------

cdef class ServerContext:

    def __init__(self, *, app, loop, dict app_state, str root_path, list default_headers,
                 bint date_header, bint access_log, error_logger, access_logger,
                 limit_concurrency, double timeout_keep_alive, double timeout_request_header,
                 double timeout_request_body, Py_ssize_t limit_header_size,
                 Py_ssize_t limit_header_line_size, Py_ssize_t limit_header_count,
                 Py_ssize_t limit_target_size, limit_body_size, ws_protocol, h2_protocol,
                 tls_server_cert, access_log_format):
        self.app = app
        self.loop = loop
        self.app_state = app_state
        self.root_path = root_path
        self.root_path_bytes = root_path.encode("ascii")
        self.default_headers = default_headers
        self.default_block = b"".join([n + b": " + v + CRLF for n, v in default_headers])
        self.default_block_no_server = b"".join(
            [n + b": " + v + CRLF for n, v in default_headers if n != b"server"]
        )
        self.date_header = date_header
        self.date_second = -1
        self.access_log = access_log
        self.access_log_format = access_log_format
        self.access_log_timed = access_log_format is not None and access_log_format.timed
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
        self.h2_protocol = h2_protocol
        self.h2_connections = set()
        self.tls_server_cert = tls_server_cert
        # ASGI extensions every HTTP request may use (SPEC 2; the empty dicts are markers).
        self.http_extensions = {
            "http.response.pathsend": {},
            "http.response.zerocopysend": {},
            "http.response.early_hint": {},
        }
        self.shutting_down = False
        self.draining = False
        self.flush_waiting = []
        self.flush_scheduled = False
        # Allocated, not zeroed: its pages count in memory only once reads have filled them.
        self.read_buffer = PyByteArray_FromStringAndSize(NULL, READ_BUFFER_SIZE)
        self.read_view = memoryview(self.read_buffer)
        self.read_data = PyByteArray_AS_STRING(self.read_buffer)
        self.tick(loop.time())

    def tick(self, double now):
        cdef double wall = time.time()
        self.now = now
        if <long>wall != self.date_second:
            self.date_second = <long>wall
            # RFC 9110 6.6.1: once a second is the resolution the date field has.
            self.date_value = http_date(wall)
            self.date_line = b"date: " + self.date_value + CRLF
            self.expire_deadlines()

    def default_fields(self):
        """The fields every response carries unless the app sends its own: server and the
        --header values, then date: [(name, value)], lower-case names."""
        if self.date_header:
            return self.default_headers + [(b"date", self.date_value)]
        return list(self.default_headers)

    cdef void expire_deadlines(self):
        cdef _HttpCore conn
        for conn in list(self.connections):
            if conn.deadline_kind != DEADLINE_NONE and conn.deadline <= self.now:
                conn._deadline_passed()
        for protocol in list(self.h2_connections):
            protocol.check_idle(self.now)

    cdef void request_started(self):
        self.active_requests += 1

    cdef void request_finished(self):
        self.active_requests -= 1

    cdef void connection_opened(self, object conn):
        self.connections.add(conn)

    cdef void connection_released(self, object conn):
        self.connections.discard(conn)

    cpdef bint over_concurrency_limit(self):
        """--limit-concurrency: open connections (HTTP/1.1 and HTTP/2) or running requests
        (HTTP/2 streams included) at the limit."""
        return self.limit_concurrency >= 0 and (
            len(self.connections) + len(self.h2_connections) >= self.limit_concurrency
            or self.active_requests >= self.limit_concurrency
        )

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
            if (conn.cycle is not None and conn.cycle.app_state == APP_PENDING
                    and conn.out.length < GATHER_LIMIT):
                conn._request_flush()
            else:
                conn._flush()

    def shutdown(self, bint drain=False):
        """Begin graceful shutdown; see _parser.pyi."""
        cdef _HttpCore conn
        self.shutting_down = True
        self.draining = drain
        for conn in list(self.connections):
            conn.shutdown()
        for protocol in list(self.h2_connections):
            protocol.shutdown()

    def cancel_requests(self):
        """After the graceful timeout: cancel the app calls still running."""
        cdef _HttpCore conn
        for conn in list(self.connections):
            conn.cancel_app()
        for protocol in list(self.h2_connections):
            protocol.cancel()


# -- transport flow control ---------------------------------------------------------------------

@cython.final
cdef class FlowControl:
    """Read pause/resume and the write-drain wait of one transport, for every protocol."""

    def __cinit__(self, transport, loop):
        self.transport = transport
        self.loop = loop

    cpdef void pause_reading(self):
        if not self.reading_paused and not self.lost:
            self.reading_paused = True
            self.transport.pause_reading()

    cpdef void resume_reading(self):
        if self.reading_paused and not self.lost:
            self.reading_paused = False
            self.transport.resume_reading()

    cpdef void pause_writing(self):
        self.writing_paused = True

    cpdef void resume_writing(self):
        self.writing_paused = False
        self._wake_writers()

    cpdef void connection_lost(self):
        self.lost = True
        self._wake_writers()

    cdef void _wake_writers(self):
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def drain(self):
        """An awaitable that finishes once writing may go on (or the connection is lost).

        Several tasks may wait at once (WebSocket senders): each gets a shield, so that
        cancelling one does not cancel the future the others share."""
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
            if self.lost or not self.writing_paused:
                self._wake_writers()
        return asyncio.shield(waiter)
