# The ASGI request cycle, shared by HTTP/1.1 and HTTP/2: the receive() and send() one request's
# app is given, the rules of ASGI's HTTP messages (their order, 100 Continue, disconnect,
# trailers) and the app runner that turns whatever the app does wrong into a logged answer.
# How a response is framed on the wire is the Responder's business. Included into _parser.pyx.

# The server's own 500: the same fields for every protocol (HTTP/2 drops `connection`).
cdef bytes INTERNAL_ERROR_BODY = error_body(500)
cdef list INTERNAL_ERROR_HEADERS = [
    (b"content-type", ERROR_CONTENT_TYPE),
    (b"content-length", b"%d" % len(INTERNAL_ERROR_BODY)),
    (b"connection", b"close"),
]

cdef str TASK_NAME = "palfrey-request"
cdef str MSG_RESPONSE_START = "http.response.start"
cdef str MSG_RESPONSE_BODY = "http.response.body"
cdef str MSG_RESPONSE_TRAILERS = "http.response.trailers"
cdef str MSG_PATHSEND = "http.response.pathsend"
cdef str MSG_ZEROCOPYSEND = "http.response.zerocopysend"
cdef str MSG_EARLY_HINT = "http.response.early_hint"


cdef class Responder:
    """The protocol side of a RequestCycle; subclasses override every method."""

    cdef int start_response(self, RequestCycle cycle, int status, object headers) except -1:
        """Validate and write the status and the app's fields (plus the defaults)."""
        raise NotImplementedError

    cdef int send_body(self, RequestCycle cycle, object body, bint more_body) except -1:
        """Write a piece of the body; raise RuntimeError when it breaks the framing
        (more than Content-Length, or less at the end)."""
        raise NotImplementedError

    cdef int send_trailers(self, RequestCycle cycle, object headers, bint more_trailers) except -1:
        """Write the trailer section (or drop it where the peer cannot take one)."""
        raise NotImplementedError

    cdef int send_informational(self, RequestCycle cycle, int status, list headers) except -1:
        """Write an interim response: 100 Continue (RFC 9110 15.2.1), 103 Early Hints (RFC
        8297); `headers` are validated (name, value) pairs."""
        raise NotImplementedError

    cdef object send_file(self, RequestCycle cycle, int fd, long long offset, long long count):
        """An awaitable that sends `count` bytes of the open file `fd` from `offset` as
        body (sendfile where the transport allows); raises RuntimeError when it breaks the
        framing, stops quietly when the client goes."""
        raise NotImplementedError

    cdef object writable(self):
        """None when send() may write now, else an awaitable to wait on first."""
        return None

    cdef void body_taken(self, RequestCycle cycle):
        """The app has taken the buffered request body: let more arrive."""

    cdef void response_complete(self, RequestCycle cycle):
        """The response is complete (counted in ctx.total_requests already)."""

    cdef void abort(self, RequestCycle cycle):
        """The app failed after the response started: end the exchange uncompleted."""

    cdef void app_done(self, RequestCycle cycle):
        """The app call has ended (cycle.app_state is APP_DONE)."""


cdef class RequestCycle:

    # -- called by the protocol -----------------------------------------------------------------

    cdef void receive_body(self, bytes chunk):
        """A piece of the request body arrived (dropped once the response is complete)."""
        if self.response_state == RESPONSE_COMPLETE:
            return
        self.body_chunks.append(chunk)
        self.body_size += PyBytes_GET_SIZE(chunk)
        self._wake()

    cdef void end_body(self):
        """The request body is complete."""
        self.more_body = False
        self._wake()

    cdef void disconnect(self):
        """The client is gone, or the request cannot go on: receive() answers
        http.disconnect, send() does nothing."""
        self.disconnected = True
        self._wake()

    cdef void _wake(self):
        waiter = self.message_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receive() ------------------------------------------------------------------------------

    async def receive(self):
        if self.expect_continue:
            self.expect_continue = False
            self.responder.send_informational(self, 100, [])
        if not self.disconnected and self.response_state != RESPONSE_COMPLETE and (
            self.request_delivered or (self.more_body and self.body_size == 0)
        ):
            self.message_waiter = self.ctx.loop.create_future()
            try:
                await self.message_waiter
            finally:
                self.message_waiter = None
        if self.disconnected or self.response_state == RESPONSE_COMPLETE:
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
        self.responder.body_taken(self)
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # -- send() ---------------------------------------------------------------------------------

    async def send(self, message):
        waiter = self.responder.writable()
        if waiter is not None and not self.disconnected:
            await waiter
        if self.disconnected:
            return  # ASGI: after the client is gone, send() is a no-op
        message_type = message["type"]
        if self.response_state == RESPONSE_PENDING:
            if message_type == MSG_RESPONSE_START:
                self._start(message)
            elif message_type == MSG_EARLY_HINT:
                self._early_hint(message)
            else:
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message_type}'.")
        elif self.response_state == RESPONSE_STARTED:
            if message_type == MSG_RESPONSE_BODY:
                more_body = _get(message, "more_body", False)
                body = _get(message, "body", b"")
                self.responder.send_body(self, body, more_body)
                if self.ctx.access_log_format is not None and not self.head_request:
                    self.response_bytes += len(body)  # as sent: HEAD sends none
            elif message_type == MSG_PATHSEND or message_type == MSG_ZEROCOPYSEND:
                more_body = await self._send_file(message, message_type)
            else:
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message_type}'.")
            if not more_body and not self.disconnected:
                if self.trailers_expected:
                    self.response_state = RESPONSE_AWAITING_TRAILERS
                else:
                    self._complete()
        elif self.response_state == RESPONSE_AWAITING_TRAILERS:
            if message_type != MSG_RESPONSE_TRAILERS:
                raise RuntimeError(f"Expected ASGI message 'http.response.trailers', but got '{message_type}'.")
            more_trailers = _get(message, "more_trailers", False)
            self.responder.send_trailers(self, _get(message, "headers", ()), more_trailers)
            if not more_trailers:
                self._complete()
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent, after response already completed.")

    async def _send_file(self, message, str message_type):
        """http.response.pathsend (a path) or http.response.zerocopysend (an open file,
        offset, count): the file as body, by sendfile. Returns more_body."""
        cdef long long offset = 0
        if message_type == MSG_PATHSEND:
            file = open(message["path"], "rb")  # noqa: SIM115 - closed below
            more_body = False
        else:
            file = message["file"]
            offset = message.get("offset") or 0
            more_body = bool(message.get("more_body", False))
        try:
            fd = file.fileno()
            count = message.get("count") if message_type == MSG_ZEROCOPYSEND else None
            if count is None:
                count = max(0, os.fstat(fd).st_size - offset)
            await self.responder.send_file(self, fd, offset, count)
            self.response_bytes += count
        finally:
            if message_type == MSG_PATHSEND:
                file.close()
        if not self.disconnected:
            self.responder.send_body(self, b"", more_body)  # ends the framing (length, chunk)
        return more_body

    cdef int _early_hint(self, object message) except -1:
        """http.response.early_hint: a 103 with the app's Link values (RFC 8297)."""
        headers = []
        for link in message.get("links", ()):
            _check_field(b"link", link)
            headers.append((b"link", link))
        if headers:
            self.responder.send_informational(self, 103, headers)
        return 0

    cdef int _start(self, object message) except -1:
        cdef int status
        value = message["status"]
        # An int (HTTPStatus too), never a float or a string Cython would convert.
        if not isinstance(value, int) or not 100 <= value <= 599:
            raise RuntimeError(f"Invalid HTTP status code {value!r}.")  # RFC 9110 15
        status = value
        if status < 200:
            # A client takes a 1xx for an interim response and whatever follows on the
            # connection for the final one (RFC 9110 15.2): refused, as h11 does.
            raise RuntimeError(
                f"Invalid final HTTP status code {status}: 1xx responses are interim "
                "(send 103 with http.response.early_hint)."
            )
        self.trailers_expected = bool(_get(message, "trailers", False))
        self.responder.start_response(self, status, _get(message, "headers", ()))
        self.expect_continue = False  # too late: the response has begun
        self.status = status
        self.response_state = RESPONSE_STARTED
        if self.ctx.access_log:
            if self.ctx.access_log_format is None:
                log_access(self.ctx.access_logger, self.scope, status)
            else:
                self.response_headers = _get(message, "headers", ())  # logged at the end
        return 0

    cdef void _log_end(self):
        """--access-log-format: the record, once the response is over (or cut short)."""
        if self.ctx.access_log and self.ctx.access_log_format is not None:
            log_access_formatted(self.ctx.access_logger, self.ctx.access_log_format,
                                 self.scope, self.status, self.response_headers,
                                 self.response_bytes, self.request_start)

    cdef int _complete(self) except -1:
        self.response_state = RESPONSE_COMPLETE
        self._log_end()
        self.ctx.total_requests += 1
        self._wake()  # a receive() still waiting answers http.disconnect
        self.responder.response_complete(self)
        return 0

    async def _send_internal_error(self):
        await self.send({"type": MSG_RESPONSE_START, "status": 500, "headers": INTERNAL_ERROR_HEADERS})
        await self.send({"type": MSG_RESPONSE_BODY, "body": INTERNAL_ERROR_BODY})


cdef inline object _get(message, str key, default):
    """message.get(key, default), without a method lookup for the usual plain dict."""
    if type(message) is dict:
        return (<dict>message).get(key, default)
    return message.get(key, default)


cdef RequestCycle new_cycle(Responder responder, ServerContext ctx, dict scope, bint more_body,
                            bint expect_continue, bint head_request):
    """A cycle for a request whose head has arrived; the caller starts run_asgi(cycle)."""
    cdef RequestCycle cycle = RequestCycle.__new__(RequestCycle)
    cycle.responder = responder
    cycle.ctx = ctx
    cycle.scope = scope
    cycle.body_chunks = []
    cycle.more_body = more_body
    cycle.expect_continue = expect_continue
    cycle.head_request = head_request
    if ctx.access_log_timed:
        cycle.request_start = time.perf_counter()  # the caller may set an earlier stamp
    ctx.request_started()
    return cycle


cdef object start_app(RequestCycle cycle):
    """Run the app for `cycle` as a task: on Python 3.12+ its first step runs now (see the
    re-entrancy rule in _parser.pyx), before that it is scheduled."""
    if EAGER_TASKS:
        return Task(run_asgi(cycle), loop=cycle.ctx.loop, eager_start=True)
    # A name given: Python 3.11 would format "Task-<n>" for each (3.12 does it on demand).
    return Task(run_asgi(cycle), loop=cycle.ctx.loop, name=TASK_NAME)


async def run_asgi(RequestCycle cycle):
    """Run the app for one request; turn whatever it does wrong into a logged answer."""
    cdef ServerContext ctx = cycle.ctx
    cycle.app_state = APP_RUNNING
    try:
        result = await ctx.app(cycle.scope, cycle.receive, cycle.send)
    except BaseException as exc:
        ctx.error_logger.error("Exception in ASGI application\n", exc_info=exc)
        if cycle.response_state == RESPONSE_PENDING and not cycle.disconnected:
            await cycle._send_internal_error()
        else:
            cycle.responder.abort(cycle)
    else:
        if result is not None:
            ctx.error_logger.error("ASGI callable should return None, but returned '%s'.", result)
            cycle.responder.abort(cycle)
        elif cycle.response_state == RESPONSE_PENDING and not cycle.disconnected:
            ctx.error_logger.error("ASGI callable returned without starting response.")
            await cycle._send_internal_error()
        elif cycle.response_state != RESPONSE_COMPLETE and not cycle.disconnected:
            ctx.error_logger.error("ASGI callable returned without completing response.")
            cycle.responder.abort(cycle)
    finally:
        finish_app(cycle)


cdef void finish_app(RequestCycle cycle):
    """The one place an app call is counted off (returned, raised or cancelled)."""
    if cycle.app_state != APP_DONE:
        if (cycle.response_state == RESPONSE_STARTED
                or cycle.response_state == RESPONSE_AWAITING_TRAILERS):
            cycle._log_end()  # the response never completed: log what it was
        cycle.app_state = APP_DONE
        cycle.ctx.request_finished()
        cycle.responder.app_done(cycle)
