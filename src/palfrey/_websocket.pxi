# The WebSocket data path, included into _parser.pyx (one extension module, see setup.py).
#
# protocols/websocket.py's WebSocketProtocol subclasses _WebSocketCore: wsproto stays the
# protocol state machine (handshake, extensions, control frames, fragments, closing), and this
# core takes what every message of an open connection goes through: reading whole, unfragmented
# data frames, unmasking them (RFC 6455 5.3), queueing ASGI messages, the app's receive() and
# send(), framing its messages and the reading and writing flow control. The connection's
# state (WsState, fields in _parser.pxd) is owned here: the subclass reads it and changes it
# only through the methods under "state".

from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t

# Frames that arrive before the app accepts are held until it does; past this many bytes the
# client is not told to stop, its socket just stops being read.
cdef Py_ssize_t WS_PENDING_LIMIT = 64 * 1024
# Messages at least this big are written by reference, after their frame header.
cdef Py_ssize_t WS_COPY_LIMIT = 4096

cdef str WS_RECEIVE = "websocket.receive"
cdef str WS_SEND = "websocket.send"


cdef bytes _unmasked(const unsigned char* payload, Py_ssize_t length, const unsigned char* key):
    """The payload XORed with the 4-byte masking key (RFC 6455 5.3), 8 bytes at a time."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, length)
    cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
    cdef uint32_t key32
    cdef uint64_t key64, word
    cdef Py_ssize_t i = 0
    memcpy(&key32, key, 4)
    key64 = (<uint64_t>key32 << 32) | key32  # the key twice, in memory order
    while i + 8 <= length:
        memcpy(&word, payload + i, 8)
        word ^= key64
        memcpy(dst + i, &word, 8)
        i += 8
    while i < length:
        dst[i] = payload[i] ^ key[i & 3]
        i += 1
    return out


cdef bytes _server_frame(unsigned char first_byte, const char* payload, Py_ssize_t length,
                         bint with_payload):
    """A server frame (RFC 6455 5.2: not masked), or just its header without the payload."""
    cdef Py_ssize_t header = 2 if length < 126 else (4 if length < 65536 else 10)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, header + (length if with_payload else 0))
    cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
    cdef int i
    dst[0] = first_byte
    if header == 2:
        dst[1] = <unsigned char>length
    elif header == 4:
        dst[1] = 126
        dst[2] = <unsigned char>(length >> 8)
        dst[3] = <unsigned char>length
    else:
        dst[1] = 127
        for i in range(8):
            dst[2 + i] = <unsigned char>((<uint64_t>length) >> (56 - 8 * i))
    if with_payload:
        memcpy(dst + header, payload, length)
    return out


cdef class _WebSocketCore:

    def __init__(self, transport, loop, Py_ssize_t max_size, Py_ssize_t max_queue, bytes leftover):
        self.transport = transport
        self.loop = loop
        self.flow = FlowControl(transport, loop)
        self.max_size = max_size
        self.max_queue = max_queue
        self.state = WS_HANDSHAKE
        # Frames that arrive before the app accepts: wsproto has no connection to take them
        # yet (RFC 6455 4.1 lets a client send right after its handshake).
        self.pending = bytearray(leftover)
        # A list, not a deque: at most --ws-max-queue long, and an empty list costs an
        # idle connection 56 bytes where an empty deque costs 600.
        self.messages = [{"type": "websocket.connect"}]
        self.output = []

    # -- state ------------------------------------------------------------------------------------

    def _accepted(self, bint plain_frames):
        """101 is sent. Returns the bytes read meanwhile, for data_received."""
        self.state = WS_OPEN
        self.accepted = True
        self.plain_frames = plain_frames
        pending, self.pending = bytes(self.pending), None
        return pending

    def _denying(self, bint by_app):
        """An HTTP response refuses the handshake: the app's denial, or our 500."""
        self.state = WS_DENYING
        self.app_closed = self.app_closed or by_app

    def _closing(self, bint by_app):
        """Our close frame is out, or the handshake was refused: the app sends no more."""
        self.state = WS_CLOSING
        self.app_closed = self.app_closed or by_app

    def _lost(self):
        self.lost = True
        self.flow.connection_lost()

    def _set_wsproto_busy(self, bint busy):
        self.wsproto_busy = busy

    def _set_disconnect(self, int code, str reason):
        """Queue the one websocket.disconnect the app will see (after pending messages);
        False when it is already known."""
        if self.disconnect_message is not None:
            return False
        self.disconnect_message = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._deliver(self.disconnect_message)
        return True

    # -- reading --------------------------------------------------------------------------------

    def data_received(self, data):
        if not self.accepted:
            if self.state == WS_HANDSHAKE:
                self.pending += data
                if len(self.pending) > WS_PENDING_LIMIT:
                    self.flow.pause_reading()
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self.plain_frames and not self.wsproto_busy and self.state == WS_OPEN:
            consumed = self._read_plain_frames(data)
            if consumed == PyBytes_GET_SIZE(data):
                return
            if consumed:
                data = data[consumed:]
        self._feed_wsproto(data)

    cdef Py_ssize_t _read_plain_frames(self, bytes data) except -1:
        """Deliver the complete, masked, unfragmented text and binary frames at the start of
        ``data``; return how many bytes they took. The first frame that is anything else
        (control, fragment, RSV bit, 64-bit or non-minimal length, over max_size, incomplete,
        invalid UTF-8) and all after it are left for wsproto to parse and judge."""
        cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t pos = 0, end = PyBytes_GET_SIZE(data), start, length
        cdef unsigned char first, second
        cdef bytes payload
        while end - pos >= 6:
            first = buf[pos]
            second = buf[pos + 1]
            # 0x81/0x82: FIN, no RSV bit, text/binary; 0x80 in the second byte: masked, as
            # every client frame must be (RFC 6455 5.1).
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break
            length = second & 0x7F
            start = pos + 6
            if length == 126:
                if end - pos < 8:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                if length < 126:
                    break  # not the minimal encoding (RFC 6455 5.2): wsproto fails it, 1002
                start = pos + 8
            elif length == 127:
                break  # 64 KiB or more: rare, wsproto's
            if length > end - start or length > self.max_size:
                break
            payload = _unmasked(buf + start, length, buf + start - 4)
            if first == 0x81:
                try:
                    text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload), length, NULL)
                except UnicodeDecodeError:
                    break  # wsproto parses it again and closes with 1007
                self._deliver({"type": WS_RECEIVE, "text": text})
            else:
                self._deliver({"type": WS_RECEIVE, "bytes": payload})
            pos = start + length
        return pos

    cdef _deliver(self, dict message):
        messages = self.messages
        messages.append(message)
        waiter = self.receive_waiter
        if waiter is not None:
            self.receive_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(messages) >= self.max_queue:
            self.flow.pause_reading()  # the app is behind: let TCP flow control push back

    def deliver(self, dict message):
        """Queue an ASGI message for receive() (wsproto's events, the disconnect)."""
        self._deliver(message)

    async def receive(self):
        messages = self.messages
        if not messages:
            if self.disconnect_message is not None:
                return self.disconnect_message  # asked again after the end: same answer
            if self.output:
                self._flush_output()  # about to wait: what the app sent goes out now
            waiter = self.receive_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.receive_waiter = None
        message = (<list>messages).pop(0)
        self._resume_if_room()
        return message

    cdef void _resume_if_room(self):
        if self.flow.reading_paused and len(self.messages) < self.max_queue and self.state != WS_CLOSING:
            self.flow.resume_reading()

    def _resume_reading_if_room(self):
        """Read again if reading was paused and the app has room for more messages."""
        self._resume_if_room()

    # -- writing --------------------------------------------------------------------------------

    async def send(self, message):
        if self.flow.writing_paused and not self.lost:
            await self.flow.drain()
        if (self.state == WS_OPEN and self.plain_frames and not self.lost
                and self.disconnect_message is None and type(message) is dict
                and (<dict>message).get("type") == WS_SEND):
            self._send_plain(<dict>message)
        else:
            self._send_other(message)  # the subclass: every other message, every other state

    cdef _send_plain(self, dict message):
        cdef unsigned char first_byte = 0x82  # FIN, binary
        cdef Py_ssize_t length
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("'websocket.send' needs 'bytes' or 'text'.")
        if type(data) is str:
            data = PyUnicode_AsUTF8String(data)
            first_byte = 0x81  # FIN, text
        elif type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"'websocket.send' needs bytes or str, not {type(data).__name__}."
                )
            data = bytes(data)
        if self.transport.is_closing():
            return
        length = PyBytes_GET_SIZE(data)
        if length >= WS_COPY_LIMIT:
            self._write_frames(_server_frame(first_byte, NULL, length, False))
            self.transport.write(data)
        elif self.messages:
            # The app has more messages to answer right away: gather the frames and write
            # them together, at the latest at the end of this loop pass.
            self.output.append(_server_frame(first_byte, PyBytes_AS_STRING(data), length, True))
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.loop.call_soon(self._flush)
        else:
            self._write_frames(_server_frame(first_byte, PyBytes_AS_STRING(data), length, True))

    cdef _write_frames(self, bytes data):
        output = self.output
        if output:
            output.append(data)
            data = b"".join(output)
            output.clear()
        self.transport.write(data)

    def _write(self, bytes data):
        """Write after whatever frames are gathered, keeping their order."""
        self._write_frames(data)

    cdef _flush_output(self):
        self.flush_scheduled = False
        output = self.output
        if output:
            data = b"".join(output)
            output.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def _flush(self):
        self._flush_output()

    # -- flow control ---------------------------------------------------------------------------

    def pause_writing(self):
        self.flow.pause_writing()

    def resume_writing(self):
        self.flow.resume_writing()
