"""wsproto's private attributes that palfrey/protocols/wsproto_internals.py reads, checked on a
real wsproto handshake and data exchange: a wsproto release that moves or changes them fails
here, by name, instead of silently turning the plain-frame path off (FrameState falls back to
wsproto for everything when it cannot see inside) or the bounded inflate off.
"""

from __future__ import annotations

import pytest
import wsproto
from wsproto import ConnectionType, WSConnection, events
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from palfrey.protocols.wsproto_internals import (
    BoundedPerMessageDeflate,
    FrameState,
    _BoundedInflater,
)

pytestmark = pytest.mark.palfrey_only

MAX_SIZE = 64 * 1024


def handshake(server_extensions: list, client_extensions: list) -> tuple[WSConnection, ...]:
    """A client and a server wsproto connection after the opening handshake."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(
        client.send(events.Request(host="test", target="/ws", extensions=client_extensions))
    )
    request = next(server.events())
    assert isinstance(request, events.Request), request
    client.receive_data(server.send(events.AcceptConnection(extensions=server_extensions)))
    accepted = next(client.events())
    assert isinstance(accepted, events.AcceptConnection), accepted
    return client, server


def deliver(sender: WSConnection, receiver: WSConnection, data: bytes) -> list:
    receiver.receive_data(data)
    return list(receiver.events())


def test_the_private_attributes_are_where_the_adapter_reads_them():
    _, server = handshake([], [])
    missing = []
    proto = getattr(server.connection, "_proto", None)
    if proto is None:
        missing.append("WSConnection.connection._proto (the FrameProtocol)")
    else:
        decoder = getattr(proto, "_frame_decoder", None)
        if decoder is None:
            missing.append("FrameProtocol._frame_decoder")
        else:
            for name in ("header", "buffer"):
                if not hasattr(decoder, name):
                    missing.append(f"FrameDecoder.{name}")
        message_decoder = getattr(proto, "_message_decoder", None)
        if message_decoder is None or not hasattr(message_decoder, "opcode"):
            missing.append("FrameProtocol._message_decoder.opcode")
        if not hasattr(proto, "extensions"):
            missing.append("FrameProtocol.extensions")
    if not hasattr(PerMessageDeflate(), "_decompressor"):
        missing.append("PerMessageDeflate._decompressor")
    assert not missing, (
        f"wsproto {wsproto.__version__} moved what protocols/wsproto_internals.py reads: "
        f"{missing}"
    )


def test_frame_state_without_an_extension():
    client, server = handshake([BoundedPerMessageDeflate(MAX_SIZE)], [])  # the client offers none
    frames = FrameState(server)
    assert frames.supports_plain_frames() is True, "plain frames off: wsproto's internals moved"
    assert frames.at_frame_boundary()

    wire = client.send(events.TextMessage(data="hello"))
    assert deliver(client, server, wire[:3]) == []  # part of a frame header
    assert not frames.at_frame_boundary()
    (message,) = deliver(client, server, wire[3:])
    assert message.data == "hello" and message.message_finished
    assert frames.at_frame_boundary()

    # A fragmented message: between its frames wsproto holds the message, not a frame.
    wire = client.send(events.BytesMessage(data=b"ab", message_finished=False))
    (first,) = deliver(client, server, wire)
    assert first.data == b"ab" and not first.message_finished
    assert not frames.at_frame_boundary()
    (last,) = deliver(client, server, client.send(events.BytesMessage(data=b"cd")))
    assert last.data == b"cd" and last.message_finished
    assert frames.at_frame_boundary()

    # And the other way: what the server writes, the client reads.
    (echo,) = deliver(server, client, server.send(events.TextMessage(data="hello back")))
    assert echo.data == "hello back"


def test_frame_state_with_permessage_deflate():
    extension = BoundedPerMessageDeflate(MAX_SIZE)
    client, server = handshake([extension], [PerMessageDeflate()])
    assert extension.enabled(), "permessage-deflate was not negotiated"
    frames = FrameState(server)
    assert frames.supports_plain_frames() is False  # compressed frames are wsproto's
    assert frames.at_frame_boundary()

    text = "compress me " * 200
    wire = client.send(events.TextMessage(data=text))
    assert len(wire) < len(text) // 4 and wire[0] & 0x40, "the client did not compress (RSV1)"
    (message,) = deliver(client, server, wire)
    assert message.data == text
    assert frames.at_frame_boundary()
    # wsproto made its decompressor on the first compressed frame; ours wraps it.
    assert isinstance(extension._decompressor, _BoundedInflater), extension._decompressor
    assert extension.inflated == len(text.encode())

    # The next message starts the count again and still inflates through the wrapper.
    (second,) = deliver(client, server, client.send(events.BytesMessage(data=b"\x00" * 5000)))
    assert second.data == b"\x00" * 5000
    assert extension.inflated == 5000
    assert isinstance(extension._decompressor, _BoundedInflater)

    # And the server's compressed answer reads back on the client.
    (echo,) = deliver(server, client, server.send(events.TextMessage(data=text)))
    assert echo.data == text


def test_a_compressed_message_over_the_limit_is_cut_off_while_inflating():
    extension = BoundedPerMessageDeflate(MAX_SIZE)
    client, server = handshake([extension], [PerMessageDeflate()])
    bomb = b"\x00" * (64 * MAX_SIZE)  # 4 MiB that deflate to a few KiB
    wire = client.send(events.BytesMessage(data=bomb))
    assert len(wire) < MAX_SIZE // 4
    received = deliver(client, server, wire)
    closes = [e for e in received if isinstance(e, events.CloseConnection)]
    assert closes and closes[0].code == CloseReason.MESSAGE_TOO_BIG, received
    assert not any(isinstance(e, events.BytesMessage) for e in received), received
    # Inflating stopped one byte past the limit, not at the end of the 4 MiB.
    assert extension.too_big and extension.inflated == MAX_SIZE + 1, extension.inflated

