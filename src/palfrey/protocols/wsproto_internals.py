"""The one place that touches wsproto's private attributes (wsproto 1.x, capped below 2).

protocols/websocket.py reads and writes frames without wsproto while no extension is in use
(the compiled data path), and bounds permessage-deflate's inflate. Both need to see inside
wsproto: where its frame decoder stands, and its zlib decompressor. Every such access is here,
and tests/test_wsproto_internals.py fails loudly when a wsproto release moves them.
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto import WSConnection
from wsproto.connection import Connection
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits


class FrameState:
    """A view of a WebSocket connection's frame protocol, once the handshake is done."""

    def __init__(self, connection: WSConnection | Connection) -> None:
        # A WSConnection (HTTP/1.1 handshake) holds the Connection in .connection once
        # accepted; over HTTP/2 the Connection is used directly. Its _proto is the
        # FrameProtocol that decodes frames.
        inner = connection.connection if isinstance(connection, WSConnection) else connection
        self._proto: Any = getattr(inner, "_proto", None)

    def supports_plain_frames(self) -> bool:
        """Whether frames may be read and written without wsproto: only when no extension
        (permessage-deflate) is in use, and wsproto's internals are the ones this module was
        written against; otherwise everything goes through wsproto."""
        try:
            decoder = self._proto._frame_decoder
            decoder.header, len(decoder.buffer), self._proto._message_decoder.opcode
            return not any(ext.enabled() for ext in self._proto.extensions)
        except (AttributeError, TypeError):
            return False

    def at_frame_boundary(self) -> bool:
        """True when wsproto holds no partial frame or fragmented message, so the next bytes
        start a frame and reading it elsewhere leaves wsproto's state exactly as if it had."""
        decoder = self._proto._frame_decoder
        return (
            decoder.header is None
            and not len(decoder.buffer)
            and self._proto._message_decoder.opcode is None
        )


# -- permessage-deflate with a bounded inflate (RFC 7692) -----------------------------------------


class _InflateLimitReached(zlib.error):
    """Raised from inside wsproto's inflate call (which turns any zlib.error into 1007);
    BoundedPerMessageDeflate reports it as 1009 instead."""


class _BoundedInflater:
    """A zlib decompressor that never produces more of a message than its extension allows."""

    def __init__(self, inflater: Any, extension: BoundedPerMessageDeflate) -> None:
        self.inflater = inflater
        self.extension = extension

    def decompress(self, data: bytes) -> bytes:
        room = self.extension.max_size - self.extension.inflated
        # One byte more than the room: getting it means the message is too big, and zlib
        # stops there instead of inflating the rest of the frame.
        return self._count(self.inflater.decompress(data, room + 1))

    def flush(self) -> bytes:
        return self._count(self.inflater.flush())

    def _count(self, data: bytes) -> bytes:
        self.extension.inflated += len(data)
        if self.extension.inflated > self.extension.max_size:
            self.extension.too_big = True
            raise _InflateLimitReached("message over --ws-max-size")
        return data


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_size`` bytes of a message: a
    small compressed frame can otherwise expand about 1000 times in memory before the size
    check sees the message (a "zip bomb").

    Control frames bypass it: they are never compressed (RFC 7692 6.1) and may come between
    the fragments of a compressed message (RFC 6455 5.4), whose state wsproto's own hooks
    would reset, so that the rest of the message was taken as uncompressed."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self.inflated = 0  # bytes of the current message
        self.too_big = False
        self.in_control_frame = False

    def frame_inbound_header(self, proto: Any, opcode: Opcode, rsv: Any, payload_length: int) -> Any:
        self.in_control_frame = opcode.iscontrol()
        if self.in_control_frame:
            return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else RsvBits(False, False, False)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:  # a new message begins
            self.inflated = 0
        result = super().frame_inbound_header(proto, opcode, rsv, payload_length)
        # wsproto creates its decompressor (PerMessageDeflate._decompressor) lazily, here.
        if self._decompressor is not None and not isinstance(self._decompressor, _BoundedInflater):
            self._decompressor = _BoundedInflater(self._decompressor, self)  # type: ignore[assignment]
        return result

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if self.in_control_frame:
            return data
        return self._limited(super().frame_inbound_payload_data(proto, data))

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if self.in_control_frame:
            return None
        return self._limited(super().frame_inbound_complete(proto, fin))

    def _limited(self, result: Any) -> Any:
        return CloseReason.MESSAGE_TOO_BIG if self.too_big else result
