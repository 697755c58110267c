# HTTP/2 streams, included into _parser.pyx. protocols/http2.py runs the connection on h2
# (python-hyper: frames, HPACK, the stream state machine, flow-control accounting); what each
# request goes through is here: its scope from the pseudo-header fields (RFC 9113 8.3.1), and
# H2Stream, the Responder that turns the shared RequestCycle's response into the fields and
# data h2 sends (RFC 9113 8.1, 8.2).

cdef bytes PSEUDO_STATUS = b":status"
cdef list H2_STATUS_VALUES = [b"%d" % code for code in range(600)]
cdef str HTTP_2 = "2"


cdef dict h2_scope(ServerContext ctx, list headers, object server, object client, dict tls):
    """The ASGI HTTP scope of one HTTP/2 request from its decoded header list (name, value
    bytes, validated by h2): method, scheme and target from the pseudo-header fields,
    `:authority` as a host field when none was sent, cookie crumbs joined (RFC 9113 8.2.3);
    ``tls``: the connection's ASGI tls extension, or None in cleartext.
    Raises ValueError for a request without :method or :path (h2 lets a CONNECT through)."""
    cdef list fields = []
    cdef list cookies = None
    cdef bytes method = None, path = None, scheme = None, authority = None
    cdef bint has_host = False
    cdef tuple pair
    for header in headers:
        pair = <tuple>header
        name = <bytes>pair[0]
        value = <bytes>pair[1]
        if PyBytes_GET_SIZE(name) and PyBytes_AS_STRING(name)[0] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":scheme":
                scheme = value
            elif name == b":authority":
                authority = value
            continue  # :protocol (RFC 8441) is read by the WebSocket hand-over
        if name is H_HOST or name == b"host":
            has_host = True
        elif name == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        fields.append((name, value))
    if method is None or path is None:
        raise ValueError("request without :method or :path")
    if cookies is not None:
        fields.append((b"cookie", b"; ".join(cookies)))
    if authority is not None and not has_host:
        fields.insert(0, (b"host", authority))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": HTTP_2,
        "server": server,
        "client": client,
        "scheme": scheme.decode("ascii") if scheme is not None else "http",
        "method": method.decode("ascii"),
        "root_path": ctx.root_path,
        "headers": fields,
        "state": ctx.app_state.copy() if ctx.app_state else {},
    }
    _set_target(scope, path, ctx)
    extensions = ctx.http_extensions.copy()
    extensions["http.response.trailers"] = {}
    if tls is not None:
        extensions["tls"] = tls
    scope["extensions"] = extensions
    return scope


def h2_request_status(ServerContext ctx, list headers):
    """0 for a request within the limits HTTP/1.1 also applies, else the status to refuse
    it with: 414 (--limit-target-size, on :path), 431 (--limit-header-count), 413 (a
    Content-Length over --limit-body-size). The header list's size is h2's to bound
    (--h2-max-header-list-size)."""
    cdef Py_ssize_t fields = 0
    cdef tuple pair
    for header in headers:
        pair = <tuple>header
        name = <bytes>pair[0]
        if PyBytes_GET_SIZE(name) and PyBytes_AS_STRING(name)[0] == b":":
            if name == b":path" and PyBytes_GET_SIZE(<bytes>pair[1]) > ctx.limit_target_size:
                return 414
            continue
        fields += 1
        if (name == b"content-length" and ctx.limit_body_size >= 0
                and _content_length_over(<bytes>pair[1], ctx.limit_body_size)):
            return 413
    return 431 if fields > ctx.limit_header_count else 0


cdef bint _content_length_over(bytes value, long long limit):
    try:
        return _parse_content_length(value) > limit
    except RuntimeError:
        return False  # not a number: h2 refuses the request


cdef list _h2_fields(object headers, HeaderFacts* facts, bint drop_length):
    """The app's fields for h2: validated as HTTP/1.1's, names lower-cased (RFC 9113 8.2),
    the connection-specific ones dropped (RFC 9113 8.2.2), and Content-Length too where
    the status forbids it (RFC 9110 8.6)."""
    cdef list fields = []
    cdef tuple pair
    cdef HeaderKind kind
    cdef const char* data
    cdef Py_ssize_t i, n
    for header in headers:
        pair = _field_pair(header)
        name = pair[0]
        value = pair[1]
        _check_field(name, value)
        data = PyBytes_AS_STRING(name)
        n = PyBytes_GET_SIZE(name)
        for i in range(n):
            if 65 <= <uint8_t>data[i] <= 90:
                name = name.lower()
                data = PyBytes_AS_STRING(name)
                break
        kind = _header_kind(data, n)
        if (kind == KIND_CONNECTION or kind == KIND_TRANSFER_ENCODING
                or kind == KIND_CONNECTION_SPECIFIC):
            continue
        if (kind == KIND_CONTENT_LENGTH and drop_length) or not _note_field(facts, kind, value):
            continue
        fields.append((name, value))
    return fields


cdef class H2Stream(Responder):
    """One HTTP/2 stream's side of its RequestCycle; `connection` (protocols/http2.py's
    H2Protocol) owns h2 and writes what this asks for."""

    def __init__(self, connection, int stream_id):
        self.connection = connection
        self.stream_id = stream_id
        self.framing = FRAME_STREAM
        self.length_left = -1

    cdef int start_response(self, RequestCycle cycle, int status, object headers) except -1:
        cdef HeaderFacts facts
        cdef ResponseFraming framing
        cdef ServerContext ctx = cycle.ctx
        _reset_facts(&facts)
        fields = _h2_fields(headers, &facts, status < 200 or status == 204)
        framing = decide_framing(status, cycle.head_request, 20, False, &facts)
        self.framing = framing.framing
        self.length_left = framing.length
        head = [(PSEUDO_STATUS, H2_STATUS_VALUES[status])]
        for pair in ctx.default_headers:
            if not (facts.server and (<tuple>pair)[0] == b"server"):
                head.append(pair)
        if ctx.date_header and not facts.date:
            head.append((b"date", ctx.date_value))
        head.extend(fields)
        self.ended = framing.framing == FRAME_NONE  # HEAD, 1xx, 204, 304: no DATA at all
        self.connection.send_response_headers(self, head, self.ended)
        return 0

    cdef int send_body(self, RequestCycle cycle, object body, bint more_body) except -1:
        cdef Py_ssize_t length
        cdef bint end
        if type(body) is not bytes:
            body = bytes(body)
        length = PyBytes_GET_SIZE(body)
        if self.framing == FRAME_LENGTH:
            # RFC 9113 8.1.1: a body that disagrees with Content-Length is malformed.
            if length > self.length_left:
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= length
        if self.ended:
            return 0
        short = not more_body and self.framing == FRAME_LENGTH and self.length_left != 0
        end = not more_body and not cycle.trailers_expected and not short
        if length or end:
            self.connection.send_response_data(self, body, end)
            self.ended = end
        if short:
            raise RuntimeError("Response content shorter than Content-Length")  # then reset
        return 0

    cdef int send_trailers(self, RequestCycle cycle, object headers, bint more_trailers) except -1:
        cdef HeaderFacts facts
        _reset_facts(&facts)
        fields = _h2_fields(headers, &facts, False)
        if self.ended:
            return 0
        if self.trailers is None:
            self.trailers = fields
        else:
            self.trailers.extend(fields)
        if not more_trailers:
            self.ended = True
            self.connection.send_response_trailers(self, self.trailers)
        return 0

    cdef int send_informational(self, RequestCycle cycle, int status, list headers) except -1:
        self.connection.send_informational(self, [(PSEUDO_STATUS, H2_STATUS_VALUES[status])] + headers)
        return 0

    cdef object send_file(self, RequestCycle cycle, int fd, long long offset, long long count):
        if self.framing == FRAME_LENGTH:
            if count > self.length_left:
                raise RuntimeError("Response content longer than Content-Length")
            self.length_left -= count
        if self.ended or count == 0:
            return _done()
        return self.connection.send_response_file(self, fd, offset, count)

    cdef object writable(self):
        return self.connection.stream_writable(self)

    cdef void body_taken(self, RequestCycle cycle):
        self.connection.stream_body_taken(self)

    cdef void response_complete(self, RequestCycle cycle):
        self.connection.stream_response_complete(self)

    cdef void abort(self, RequestCycle cycle):
        self.connection.stream_abort(self)

    cdef void app_done(self, RequestCycle cycle):
        self.connection.stream_app_done(self)

    # -- called by protocols/http2.py -----------------------------------------------------------

    def start(self, ServerContext ctx, list headers, server, client, dict tls,
              bint stream_ended):
        """Begin the exchange for a request whose header block has arrived (``headers``:
        h2's decoded list); ``stream_ended``: the request has no body. Returns the app task.
        Raises ValueError for a request h2_scope refuses."""
        cdef dict scope = h2_scope(ctx, headers, server, client, tls)
        cdef bint expect_continue = False
        if not stream_ended:
            for pair in <list>scope["headers"]:
                if (<tuple>pair)[0] == b"expect":
                    expect_continue = (<bytes>(<tuple>pair)[1]).lower() == b"100-continue"
        self.cycle = new_cycle(self, ctx, scope, not stream_ended, expect_continue,
                               scope["method"] == "HEAD")
        self.cycle.trailers_allowed = True
        return start_app(self.cycle)

    def scope_of(self, ServerContext ctx, list headers, server, client, dict tls):
        """The scope h2_scope builds (for an extended CONNECT: the WebSocket's)."""
        return h2_scope(ctx, headers, server, client, tls)

    def start_with_scope(self, ServerContext ctx, dict scope):
        """Begin the exchange for an h2c upgrade's request (RFC 7540 3.2): its scope is
        built, its body (none: only bodiless requests are upgraded) complete."""
        self.cycle = new_cycle(self, ctx, scope, False, False, scope["method"] == "HEAD")
        self.cycle.trailers_allowed = True
        return start_app(self.cycle)

    def receive_body(self, bytes data):
        """A DATA frame's payload for the app."""
        self.cycle.receive_body(data)

    def end_body(self):
        self.cycle.end_body()

    def disconnect(self):
        """RST_STREAM from the client, or the connection is gone: http.disconnect."""
        if self.cycle is not None and self.cycle.response_state != RESPONSE_COMPLETE:
            self.cycle.disconnect()

    def cancel_app(self, task):
        """After the graceful timeout: cancel `task` (this stream's app)."""
        if not task.done():
            task.cancel()
            if self.cycle.app_state == APP_PENDING:
                finish_app(self.cycle)  # cancelled before its first step: it never runs

    @property
    def body_size(self):
        """Bytes of request body waiting for the app."""
        return self.cycle.body_size if self.cycle is not None else 0

    @property
    def app_running(self):
        return self.cycle is not None and self.cycle.app_state != APP_DONE

    @property
    def response_started(self):
        return self.cycle is not None and self.cycle.response_state != RESPONSE_PENDING

    @property
    def response_done(self):
        return self.cycle is not None and self.cycle.response_state == RESPONSE_COMPLETE
