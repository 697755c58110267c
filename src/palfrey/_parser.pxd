# The layout of every compiled object, one comment per field: read this file to know what a
# connection holds and which state it can be in. The code is in _parser.pyx (HTTP/1.1 over
# llhttp) and the files it includes: _shared.pxi (what every protocol shares), _cycle.pxi (the
# ASGI request cycle), _websocket.pxi (the WebSocket data path).

cimport cython

from . cimport _llhttp as ll


# -- buffers ------------------------------------------------------------------------------------

cdef struct ByteBuffer:
    char* data
    Py_ssize_t length              # bytes in use, from data[0]
    Py_ssize_t capacity            # bytes allocated


# -- response framing (_shared.pxi) -------------------------------------------------------------

cdef enum BodyFraming:
    FRAME_NONE                     # no body may be sent: HEAD, 1xx, 204, 304 (RFC 9110 6.4.1)
    FRAME_LENGTH                   # the app's Content-Length delimits the body
    FRAME_CHUNKED                  # HTTP/1.1 chunked coding (RFC 9112 7.1)
    FRAME_CLOSE                    # HTTP/1.0 without Content-Length: closing ends it (RFC 9112 6.3)
    FRAME_STREAM                   # HTTP/2: DATA frames until END_STREAM (RFC 9113 8.1)

cdef enum HeaderKind:              # the response fields that change framing or replace a default
    KIND_OTHER
    KIND_CONTENT_LENGTH
    KIND_CONNECTION
    KIND_TRANSFER_ENCODING
    KIND_SERVER
    KIND_DATE
    KIND_CONNECTION_SPECIFIC       # keep-alive, proxy-connection, upgrade: HTTP/1.1 only

cdef enum:                         # framing fields a response may not carry (drop bits)
    DROP_LENGTH = 1                # Content-Length
    DROP_CODING = 2                # Transfer-Encoding

cdef struct HeaderFacts:           # what an app's response header list says, read in one pass
    long long content_length       # -1: none given
    bint close                     # Connection lists "close"
    bint transfer_coded            # a Transfer-Encoding field was given
    bint chunked                   # ... and its last coding is "chunked"
    bint server                    # the app sent its own Server field
    bint date                      # the app sent its own Date field

cdef struct ResponseFraming:       # the decision: how the response body is delimited
    BodyFraming framing
    long long length               # FRAME_LENGTH: the body's size in bytes
    bint keep_alive                # HTTP/1.1: the connection may carry another request
    bint add_chunked               # write "transfer-encoding: chunked" (the app did not)
    bint add_close                 # write "connection: close" (the app did not)


# -- state every connection of a server shares (_shared.pxi) ------------------------------------

cdef class ServerContext:
    cdef public object app         # the ASGI 3 app, wrapped by config.py's middleware
    cdef public object loop
    cdef public dict app_state     # lifespan state; each scope gets a shallow copy
    cdef public str root_path
    cdef bytes root_path_bytes
    cdef bytes default_block       # encoded default header lines (server, --header)
    cdef bytes default_block_no_server  # the same without `server`, when the app sends one
    cdef public list default_headers    # (name, value) pairs behind default_block
    cdef readonly bint date_header # send the cached date field
    cdef public bytes date_value   # IMF-fixdate of the current second
    cdef bytes date_line           # b"date: " + date_value + CRLF
    cdef long date_second          # the wall-clock second date_value shows
    cdef public bint access_log    # build access-log records at all
    cdef public object access_log_format  # --access-log-format (logging.AccessLogFormat) or None
    cdef bint access_log_timed     # ... and it shows the request time: requests are stamped
    cdef public object error_logger
    cdef public object access_logger
    cdef Py_ssize_t limit_concurrency      # -1: none (connections and running requests)
    cdef readonly double timeout_keep_alive  # seconds an idle connection stays open
    cdef double timeout_request_header     # seconds a request head may take to arrive
    cdef readonly double timeout_request_body  # seconds an upload may stall between reads
    cdef Py_ssize_t limit_header_size      # bytes of one request head -> 431
    cdef Py_ssize_t limit_header_line_size # bytes of one header line -> 431
    cdef readonly Py_ssize_t limit_header_count  # fields in one request head -> 431
    cdef readonly Py_ssize_t limit_target_size  # bytes of the request target -> 414
    cdef readonly long long limit_body_size  # bytes of one request body -> 413; -1: none
    cdef public double now                 # loop time at the last tick (seconds)
    cdef bytearray read_buffer     # every connection's reads land here (see _HttpCore)
    cdef object read_view          # memoryview of read_buffer, handed to the loop
    cdef char* read_data
    cdef list flush_waiting        # HTTP/1.1 connections whose output waits for _flush_waiting
    cdef bint flush_scheduled      # _flush_waiting is queued with call_soon
    cdef public Py_ssize_t total_requests  # responses completed (--limit-max-requests)
    cdef public Py_ssize_t active_requests # app calls running (--limit-concurrency, shutdown)
    cdef public set connections    # open HTTP connections, until closed and their app is done
    cdef public set websockets     # open WebSocket protocols: each adds and removes itself
    cdef public object ws_protocol # (ctx, transport, scope, leftover) -> protocol; None: --ws none
    cdef public object h2_protocol # (ctx, transport, leftover, upgrade) -> protocol; None: no --http2
    cdef public set h2_connections # open HTTP/2 protocols: each adds and removes itself
    cdef public bint shutting_down # no new exchange may keep its connection alive
    cdef public bint draining      # ... and idle connections wait for their keep-alive timeout
    cdef public dict http_extensions  # scope["extensions"] of every HTTP request (copied)
    cdef public str tls_server_cert   # PEM, for the ASGI tls extension; None: not known

    cdef void request_started(self)
    cdef void request_finished(self)
    cdef void connection_opened(self, object conn)
    cdef void connection_released(self, object conn)
    cpdef bint over_concurrency_limit(self)
    cdef void expire_deadlines(self)


# -- flow control (_shared.pxi) -----------------------------------------------------------------

@cython.final
cdef class FlowControl:
    cdef object transport
    cdef object loop
    cdef readonly bint reading_paused  # we asked the transport to stop reading
    cdef readonly bint writing_paused  # the transport asked us to stop writing
    cdef readonly bint lost            # the connection is gone: touch the transport no more
    cdef object drain_waiter           # future writers wait on while writing is paused

    cpdef void pause_reading(self)
    cpdef void resume_reading(self)
    cpdef void pause_writing(self)
    cpdef void resume_writing(self)
    cpdef void connection_lost(self)
    cdef void _wake_writers(self)


# -- the ASGI request cycle (_cycle.pxi) --------------------------------------------------------

cdef enum AppState:
    APP_PENDING                    # the app task exists and has not taken its first step
    APP_RUNNING
    APP_DONE                       # returned, raised or cancelled; counted off active_requests

cdef enum ResponseState:
    RESPONSE_PENDING               # http.response.start not sent yet
    RESPONSE_STARTED               # status and headers sent; body under way
    RESPONSE_AWAITING_TRAILERS     # the body is complete; http.response.trailers is owed
    RESPONSE_COMPLETE


cdef class RequestCycle


cdef class Responder:
    # What a RequestCycle writes its response through: the HTTP/1.1 connection (_HttpCore), or
    # one HTTP/2 stream. Each method frames for its protocol; the cycle owns ASGI's rules.
    cdef int start_response(self, RequestCycle cycle, int status, object headers) except -1
    cdef int send_body(self, RequestCycle cycle, object body, bint more_body) except -1
    cdef int send_trailers(self, RequestCycle cycle, object headers, bint more_trailers) except -1
    cdef int send_informational(self, RequestCycle cycle, int status, list headers) except -1
    cdef object send_file(self, RequestCycle cycle, int fd, long long offset, long long count)
    cdef object writable(self)
    cdef void body_taken(self, RequestCycle cycle)
    cdef void response_complete(self, RequestCycle cycle)
    cdef void abort(self, RequestCycle cycle)
    cdef void app_done(self, RequestCycle cycle)


cdef class RequestCycle:
    # One request and its response: the receive() and send() the app is given.
    cdef Responder responder       # frames what the app sends; told when the body is read
    cdef ServerContext ctx
    cdef readonly dict scope
    cdef list body_chunks          # request body received, not yet given to the app
    cdef Py_ssize_t body_size      # bytes in body_chunks
    cdef bint more_body            # more request body is on its way
    cdef bint request_delivered    # the app has the last http.request message
    cdef bint disconnected         # client gone or request failed: receive() says disconnect
    cdef bint expect_continue      # 100 Continue is owed when the app first reads the body
    cdef bint head_request         # method HEAD: the response carries no body
    cdef bint trailers_allowed     # the peer takes trailers (scope["extensions"] says so)
    cdef bint trailers_expected    # the app said it will send http.response.trailers
    cdef AppState app_state
    cdef ResponseState response_state
    cdef int status                # the response status, once started
    cdef double request_start      # perf_counter() at the head's first byte (0: not stamped)
    cdef object response_headers   # the app's, for --access-log-format
    cdef long long response_bytes  # body bytes sent, for --access-log-format
    cdef object message_waiter     # future receive() waits on for body or disconnect

    cdef void receive_body(self, bytes chunk)
    cdef void end_body(self)
    cdef void disconnect(self)
    cdef void _log_end(self)
    cdef void _wake(self)
    cdef dict _take_body(self)
    cdef int _start(self, object message) except -1
    cdef int _early_hint(self, object message) except -1
    cdef int _complete(self) except -1


# -- the HTTP/1.1 connection (_parser.pyx) ------------------------------------------------------

cdef enum ConnState:
    CONN_IDLE                      # no request under way: before the first, or between two
    CONN_HEAD                      # part of a request head has arrived
    CONN_BODY                      # the head is complete and the app runs; the body arrives
    CONN_WAITING                   # the request is read; the parser waits for the response
    CONN_UPGRADING                 # a WebSocket handshake is read; the transport is handed over
    CONN_CLOSED                    # closed (by either side) or handed over

cdef enum Deadline:                # which timer runs; _deadline_passed reads it
    DEADLINE_NONE                  # the app has the request: no timer
    DEADLINE_KEEP_ALIVE            # idle: close quietly (--timeout-keep-alive)
    DEADLINE_HEADER                # the head must complete: else 408 (--timeout-request-header)
    DEADLINE_BODY                  # the body must keep coming: else 408 (--timeout-request-body)
    DEADLINE_SHUTDOWN              # shutting down: what is on its way gets a short grace


cdef class _HttpCore(Responder):
    # -- fixed for the connection's life
    cdef ll.llhttp_t parser        # llhttp's state, embedded: no allocation of its own
    cdef ServerContext ctx
    cdef object loop
    cdef object transport
    cdef FlowControl flow
    cdef object server_addr        # (host, port), or None on a unix socket
    cdef object client_addr        # (host, port), or None on a unix socket
    cdef str scheme                # "http" or "https"
    cdef dict tls                  # the ASGI tls extension, built at the first request (https)
    cdef bint registered           # in ctx.connections

    # -- where the connection is (see the state diagram at the top of _HttpCore)
    cdef ConnState state
    cdef Deadline deadline_kind
    cdef double deadline           # loop time at which deadline_kind's timer runs out
    cdef bint keep_alive           # the current exchange may be followed by another
    cdef bint in_parser            # inside llhttp_execute: see the re-entrancy rule
    cdef bint flush_requested      # queued in ctx.flush_waiting
    cdef double head_started       # perf_counter() at the head's first byte (timed access log)
    cdef bint h2_preface_possible  # --http2 in cleartext, nothing read yet but a preface prefix

    # -- input: the loop reads into ctx's shared buffer (BufferedProtocol); what llhttp has
    # not consumed when it pauses is kept in `pending`. in_data points into one or the
    # other only while a read is handled, else into `pending` or nowhere.
    cdef bytearray pending         # unparsed bytes after a pause (pipelining); None: none
    cdef char* in_data
    cdef Py_ssize_t in_start       # first unparsed byte
    cdef Py_ssize_t in_end         # end of the received bytes

    # -- the request head being parsed
    cdef ByteBuffer scratch        # a URL or header line split across reads
    cdef bytes target              # the request target, as received
    cdef object header_name        # the name whose value is being read (interned if known)
    cdef list headers              # [(lower-case name, value)], arrival order
    cdef Py_ssize_t header_count
    cdef Py_ssize_t head_size      # bytes of the head so far (--limit-header-size)
    cdef Py_ssize_t host_count     # Host fields (RFC 9112 3.2: exactly one in HTTP/1.1)
    cdef bytes transfer_encoding   # the request's Transfer-Encoding list, joined
    cdef bint expect_continue      # Expect: 100-continue
    cdef bint upgrade_websocket    # Upgrade lists websocket
    cdef bint upgrade_h2c          # Upgrade lists h2c (RFC 7540 3.2)
    cdef bint te_trailers          # TE lists trailers: the client takes chunked trailers
    cdef dict upgrade_scope        # the upgrade request's scope, for the protocol it goes to
    cdef long long body_received   # bytes of the request body (--limit-body-size)
    cdef int reject_status         # why a callback stopped the parser (400, 413...)

    # -- the exchange under way
    cdef RequestCycle cycle
    cdef object app_task

    # -- output: responses are encoded here and leave in as few writes as possible
    cdef ByteBuffer out
    cdef BodyFraming framing       # how the current response's body is delimited
    cdef long long length_left     # FRAME_LENGTH: body bytes still owed

    cdef _parse(self)
    cdef int _parse_error_status(self)
    cdef void _keep_unparsed(self)
    cdef void _set_deadline(self, Deadline kind, double timeout)
    cdef _deadline_passed(self)
    cdef void _pause_reading(self)
    cdef void _resume_reading(self)
    cdef int _on_message_begin(self) except? -1
    cdef int _on_url(self, const char* at, size_t length) except? -1
    cdef int _on_url_complete(self) except? -1
    cdef int _on_header_field(self, const char* at, size_t length) except? -1
    cdef int _on_header_field_complete(self) except? -1
    cdef int _on_header_value(self, const char* at, size_t length) except? -1
    cdef int _on_header_value_complete(self) except? -1
    cdef bint _header_too_large(self, size_t length) noexcept
    cdef int _on_headers_complete(self) except? -1
    cdef int _check_head(self) except? -1
    cdef int _stop(self, int status) noexcept
    cdef int _on_body(self, const char* at, size_t length) except? -1
    cdef int _on_message_complete(self) except? -1
    cdef _hand_over(self, object protocol)
    cdef _upgrade(self)
    cdef bint _preface_arrived(self)
    cdef _start_cycle(self)
    cdef dict _build_scope(self)
    cdef _request_flush(self)
    cdef _flush(self)
    cdef _flush_with(self, bytes body)
    cdef _send_error_response(self, int status)
    cdef _reject(self, int status)
    cdef _close(self)
    cdef void _lost(self)
    cdef void _release_if_finished(self)
    cdef void shutdown(self)
    cdef void cancel_app(self)


# -- HTTP/2 streams (_http2.pxi) ----------------------------------------------------------------

cdef class H2Stream(Responder):
    cdef readonly int stream_id
    cdef object connection         # protocols/http2.py's H2Protocol: owns h2 and the transport
    cdef readonly RequestCycle cycle
    cdef BodyFraming framing       # FRAME_NONE, FRAME_LENGTH or FRAME_STREAM
    cdef long long length_left     # FRAME_LENGTH: body bytes still owed
    cdef readonly bint ended       # END_STREAM is sent (or queued)
    cdef list trailers             # trailer fields gathered until the last trailers message


# -- the WebSocket data path (_websocket.pxi) ---------------------------------------------------

cpdef enum WsState:                # also seen by protocols/websocket.py, as palfrey._parser.WsState
    WS_HANDSHAKE                   # waiting for the app's accept, close or denial response
    WS_DENYING                     # sending an HTTP denial response (the app's, or our 500)
    WS_OPEN                        # accepted (101 sent)
    WS_CLOSING                     # our close frame went out, or the handshake was refused
    # Connection loss is `lost`, orthogonal: it can happen in any state.


cdef class _WebSocketCore:
    cdef readonly object transport
    cdef readonly object loop
    cdef readonly FlowControl flow
    cdef readonly Py_ssize_t max_size  # --ws-max-size: bigger frames go to wsproto (1009)
    cdef readonly Py_ssize_t max_queue # --ws-max-queue: stop reading with this many waiting
    cdef readonly WsState state
    cdef readonly bint accepted        # 101 was sent (stays true once closing)
    cdef readonly bint app_closed      # the app ended the conversation (close or denial)
    cdef readonly bint lost            # connection_lost seen
    # Whole, unfragmented data frames are read and written here (no extension in use);
    # wsproto gets everything else.
    cdef readonly bint plain_frames
    cdef bint wsproto_busy             # wsproto holds part of a frame or message
    cdef bytearray pending             # bytes read before the app accepted (None after)
    cdef list messages                 # ASGI messages for receive()
    cdef object receive_waiter         # future receive() waits on
    cdef readonly dict disconnect_message  # the one websocket.disconnect, once known
    cdef list output                   # frames gathered for one write
    cdef bint flush_scheduled

    cdef Py_ssize_t _read_plain_frames(self, bytes data) except -1
    cdef _deliver(self, dict message)
    cdef _send_plain(self, dict message)
    cdef _write_frames(self, bytes data)
    cdef _flush_output(self)
    cdef void _resume_if_room(self)
