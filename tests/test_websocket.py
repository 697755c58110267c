"""WebSocket over wsproto (SPEC.md section 3, issue 5): black-box, with the `websockets`
client and raw sockets, against a real server subprocess serving tests/ws_apps.py."""

from __future__ import annotations

import json
import os
import select
import signal
import time
import zlib

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import ws_apps
from tests.support.client import RawConn
from tests.support.harness import Harness, server_frames
from tests.support.ws_client import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    WsConn,
    close_payload,
    frame,
    handshake_request,
    read_frame,
)

APP = "tests.ws_apps:app"
pytestmark = pytest.mark.palfrey_only  # the reference run uses --http httptools only


@pytest.fixture(scope="module")
def ws_server(module_server_factory):
    return module_server_factory(APP)


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def wait_app_line(server, pattern: str, mark=None) -> str:
    m = server.wait_for_log(pattern, "stderr", 5.0, mark=mark)
    assert m is not None, f"no {pattern!r} in:\n{server.stderr_text()[-3000:]}"
    return m.group(0)


# -- messages ------------------------------------------------------------------------------------


def test_echo_text_and_bytes(ws_server):
    with connect(url(ws_server, "/echo"), open_timeout=5) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=5) == b"\x00\xff" * 1000
        big = "x" * 200_000  # a 64-bit length frame
        ws.send(big)
        assert ws.recv(timeout=5) == big


def test_fragmented_messages_are_reassembled(ws_server):
    with connect(url(ws_server, "/echo"), open_timeout=5, compression=None) as ws:
        ws.send(["frag", "men", "ted ✓"])
        assert ws.recv(timeout=5) == "fragmented ✓"
        ws.send([b"ab", b"cd"])
        assert ws.recv(timeout=5) == b"abcd"


def test_control_frame_between_fragments(ws_server):
    # RFC 6455 5.4: control frames may be injected in the middle of a fragmented message.
    with WsConn(ws_server.port) as c:
        c.send(frame(OP_TEXT, b"he", fin=False) + frame(OP_PING, b"p1") + frame(0x0, b"llo"))
        assert c.read_frame() == (0xA, True, b"p1")  # pong with the ping's payload
        assert c.read_frame() == (OP_TEXT, True, b"hello")


def test_bytes_after_the_handshake_in_the_same_packet_are_kept(ws_server):
    with WsConn(ws_server.port, after_handshake=frame(OP_TEXT, b"early") + frame(OP_BINARY, b"b")) as c:
        assert c.read_frame() == (OP_TEXT, True, b"early")
        assert c.read_frame() == (OP_BINARY, True, b"b")


def test_many_small_messages_in_one_write_keep_their_order(ws_server):
    with WsConn(ws_server.port) as c:
        c.send(b"".join(frame(OP_TEXT, b"m%d" % i) for i in range(200)))
        got = [c.read_frame()[2] for _ in range(200)]
        assert got == [b"m%d" % i for i in range(200)]



# The compiled data path reads whole unfragmented frames itself and leaves the rest to wsproto:
# lengths around its word-at-a-time unmasking and the 7/16/64-bit length forms, frames split
# across reads, and a bad frame after good ones in the same read.
BOUNDARY_LENGTHS = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 126, 127, 4095, 4096, 4097, 65535, 65536]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_payload_lengths_at_the_frame_format_boundaries(ws_server, opcode):
    with WsConn(ws_server.port) as c:
        for n in BOUNDARY_LENGTHS:
            payload = (b"abc\xc3\xa9" * n)[:n] if opcode == OP_TEXT else os.urandom(n)
            if opcode == OP_TEXT and n and payload[-1] == 0xC3:
                payload = payload[:-1] + b"x"  # never cut a UTF-8 sequence in two
            c.send(frame(opcode, payload))
            assert c.read_frame() == (opcode, True, payload), n


def test_frames_split_across_reads():
    # In-process: the handshake alone, then 7 bytes a read (boundaries fall everywhere in
    # the frame headers and payloads), then all the frames again in one read.
    messages = [b"first", b"x" * 300, b"third"]
    wire = b"".join(frame(OP_BINARY, m) for m in messages)
    reads = [b"", *(wire[i : i + 7] for i in range(0, len(wire), 7)), wire]
    with Harness(ws_apps.app) as harness:
        outcome = harness.run_websocket(reads, handshake=handshake_request("/echo"))
    assert not outcome.stalled and not outcome.leaks, outcome
    got = [payload for opcode, payload in server_frames(outcome.out) if opcode == OP_BINARY]
    assert got == messages * 2


def test_invalid_utf8_after_valid_frames_in_one_read(ws_server):
    mark = ws_server.mark()
    with WsConn(ws_server.port, path="/record") as c:
        c.send(frame(OP_TEXT, b"ok") + frame(OP_BINARY, b"\xff") + frame(OP_TEXT, b"\xff"))
        assert c.read_close()[0] == 1007
    wait_app_line(ws_server, r"recorded text='ok' bytes=None", mark)
    wait_app_line(ws_server, r"recorded text=None bytes=b'\\xff'", mark)
    wait_app_line(ws_server, r"recorded disconnect code=1007", mark)


# -- the scope and the handshake ------------------------------------------------------------------


def test_scope(ws_server):
    with connect(url(ws_server, "/scope?a=1"), open_timeout=5, subprotocols=["one", "two"]) as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1"
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == ws_server.port
    names = [k for k, _ in scope["headers"]]
    assert "sec-websocket-key" in names and "host" in names


def test_accept_with_subprotocol_and_extra_headers(ws_server):
    with connect(url(ws_server, "/subprotocol"), open_timeout=5, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers["server"] == "palfrey"
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"


def test_close_before_accept_is_403_and_logged(ws_server):
    mark = ws_server.mark()
    with pytest.raises(InvalidStatus) as info:
        connect(url(ws_server, "/reject?x=1"), open_timeout=5)
    assert info.value.response.status_code == 403
    wait_app_line(ws_server, r'127\.0\.0\.1:\d+ - "WebSocket /reject\?x=1" 403', mark)


def test_accept_is_logged(ws_server):
    mark = ws_server.mark()
    with connect(url(ws_server, "/echo"), open_timeout=5):
        pass
    wait_app_line(ws_server, r'INFO: +127\.0\.0\.1:\d+ - "WebSocket /echo" \[accepted\]', mark)


def test_denial_response(ws_server):
    with pytest.raises(InvalidStatus) as info:
        connect(url(ws_server, "/deny"), open_timeout=5)
    response = info.value.response
    assert response.status_code == 401
    assert response.body == b"denied"


def test_app_error_before_accept_is_500(ws_server):
    mark = ws_server.mark()
    with pytest.raises(InvalidStatus) as info:
        connect(url(ws_server, "/raise"), open_timeout=5)
    assert info.value.response.status_code == 500
    wait_app_line(ws_server, "Exception in ASGI application", mark)


def test_invalid_handshake_is_refused(ws_server):
    with RawConn(ws_server.port) as c:  # no Sec-WebSocket-Key
        c.send(handshake_request("/echo", key=b""))
        head = c.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert c.wait_closed()


def test_app_error_after_accept_is_1011_and_logged(ws_server):
    mark = ws_server.mark()
    with WsConn(ws_server.port, path="/send-wrong-type") as c:
        assert c.read_close()[0] == 1011
        assert c.wait_closed()
    wait_app_line(ws_server, "TypeError: 'websocket.send' needs bytes or str, not int", mark)


# -- closing ----------------------------------------------------------------------------------------


def test_app_close_code_reaches_the_client(ws_server):
    mark = ws_server.mark()
    with connect(url(ws_server, "/close-code"), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "bye"
    wait_app_line(ws_server, r"after close websocket.disconnect code=4001", mark)


def test_client_close_code_reaches_the_app(ws_server):
    mark = ws_server.mark()
    with WsConn(ws_server.port) as c:
        c.send(frame(OP_CLOSE, close_payload(4321, b"done")))
        assert c.read_close() == (4321, b"done")  # echoed (RFC 6455 5.5.1)
        assert c.wait_closed()
    wait_app_line(ws_server, r"disconnect code=4321 reason='done'", mark)


def test_lost_connection_is_1006(ws_server):
    mark = ws_server.mark()
    c = WsConn(ws_server.port)
    c.send(frame(OP_TEXT, b"hi"))
    assert c.read_frame()[2] == b"hi"
    c.close()
    wait_app_line(ws_server, r"disconnect code=1006", mark)


def test_send_after_disconnect_raises_oserror(ws_server):
    mark = ws_server.mark()
    c = WsConn(ws_server.port, path="/send-after-disconnect")
    c.close()
    wait_app_line(ws_server, r"send raised ClientDisconnected OSError=True", mark)


def test_invalid_utf8_is_1007(ws_server):
    with WsConn(ws_server.port) as c:
        c.send(frame(OP_TEXT, b"\xff\xfe"))
        assert c.read_close()[0] == 1007
        assert c.wait_closed()


def test_unmasked_client_frame_is_a_protocol_error(ws_server):
    with WsConn(ws_server.port) as c:
        c.send(frame(OP_TEXT, b"x", masked=False))
        assert c.read_close()[0] == 1002
        assert c.wait_closed()


def test_non_minimal_length_is_a_protocol_error(ws_server):
    # RFC 6455 5.2: the minimal number of bytes MUST be used to encode the length; 5 in the
    # 16-bit form is refused (found by the websocket fuzz target).
    with WsConn(ws_server.port) as c:
        c.send(bytes([0x81, 0x80 | 126, 0, 5]) + bytes(4) + b"hello")
        assert c.read_close()[0] == 1002
        assert c.wait_closed()


def test_message_over_max_size_is_1009(server_factory):
    server = server_factory(APP, "--ws-max-size", "1000")
    with WsConn(server.port) as c:
        c.send(frame(OP_BINARY, b"x" * 1000))
        assert c.read_frame() == (OP_BINARY, True, b"x" * 1000)  # at the limit: fine
        c.send(frame(OP_BINARY, b"x" * 1001))
        assert c.read_close()[0] == 1009
        assert c.wait_closed()
    with WsConn(server.port) as c:  # the limit holds for the whole fragmented message
        c.send(frame(OP_TEXT, b"y" * 600, fin=False) + frame(0x0, b"y" * 600))
        assert c.read_close()[0] == 1009
    assert server.wait_for_log(r"disconnect code=1009", timeout=5)


# -- keepalive ------------------------------------------------------------------------------------


def test_ping_timeout_is_1011(server_factory):
    server = server_factory(APP, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
    with WsConn(server.port) as c:
        opcode, _, payload = c.read_frame()
        assert opcode == OP_PING and payload  # we never answer it
        code, reason = c.read_close()
        assert (code, reason) == (1011, b"keepalive ping timeout")
        assert c.wait_closed()
    assert server.wait_for_log(r"disconnect code=1011", timeout=5)


def test_answered_pings_keep_the_connection_open(server_factory):
    server = server_factory(APP, "--ws-ping-interval", "0.1", "--ws-ping-timeout", "0.3")
    with WsConn(server.port) as c:
        for _ in range(5):  # five rounds: well past one ping timeout
            opcode, _, payload = c.read_frame()
            assert opcode == OP_PING
            c.send(frame(0xA, payload))
        c.send(frame(OP_TEXT, b"still here"))
        for _ in range(10):
            opcode, _, payload = c.read_frame()
            if opcode == OP_TEXT:
                break
            c.send(frame(0xA, payload))
        assert payload == b"still here"


# -- permessage-deflate (RFC 7692) ----------------------------------------------------------------


def test_permessage_deflate_is_negotiated(ws_server):
    with connect(url(ws_server, "/echo"), open_timeout=5) as ws:  # offers it by default
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        text = "compressible " * 5000
        ws.send(text)
        assert ws.recv(timeout=5) == text


def test_compressed_frame_on_the_wire(ws_server):
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
    with RawConn(ws_server.port) as c:
        c.send(handshake_request("/echo", extra=offer))
        head = c.read_until(b"\r\n\r\n").lower()
        assert b"sec-websocket-extensions: permessage-deflate" in head
        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(b"a" * 1000) + compressor.flush(zlib.Z_SYNC_FLUSH)
        masked = frame(OP_TEXT, data[:-4])  # RFC 7692 7.2.1: drop the 00 00 ff ff tail
        c.send(bytes([masked[0] | 0x40]) + masked[1:])  # RSV1: compressed
        opcode, fin, payload = read_frame(c)
        assert opcode == OP_TEXT and fin
        assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == b"a" * 1000



def test_compressed_message_is_not_inflated_past_max_size(server_factory):
    # 256 MiB of zeros deflate to about 256 KiB: without a bound on the inflate, the server
    # would hold the whole 256 MiB in memory before the 1009.
    server = server_factory(APP, "--ws-max-size", "65536")
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    compressor = zlib.compressobj(wbits=-15)
    zeros = bytes(1 << 20)
    data = b"".join(compressor.compress(zeros) for _ in range(256))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    peak_before = peak_rss_kib(server.pid)
    with WsConn(server.port, extra_headers=offer) as c:
        assert b"permessage-deflate" in c.head.lower()
        masked = frame(OP_BINARY, data[:-4])
        c.try_send(bytes([masked[0] | 0x40]) + masked[1:])  # RSV1: compressed
        assert c.read_close()[0] == 1009
    assert server.wait_for_log(r"disconnect code=1009", timeout=5)
    grown_mib = (peak_rss_kib(server.pid) - peak_before) / 1024
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_ping_between_compressed_fragments(ws_server):
    # RFC 6455 5.4: a control frame may come between the fragments of a message; it must not
    # reset the inflate state of a compressed one (RFC 7692 6.1).
    text = b"fragmented and compressed " * 40
    compressor = zlib.compressobj(wbits=-15)
    data = (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    with WsConn(ws_server.port, extra_headers=offer) as c:
        first = frame(OP_TEXT, data[:10], fin=False)
        c.send(bytes([first[0] | 0x40]) + first[1:] + frame(OP_PING, b"p") + frame(0x0, data[10:]))
        assert c.read_frame() == (0xA, True, b"p")
        opcode, fin, payload = c.read_frame()
        assert (opcode, fin) == (OP_TEXT, True)
        assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == text


def test_permessage_deflate_can_be_switched_off(server_factory):
    server = server_factory(APP, "--ws-per-message-deflate", "false")
    with connect(url(server, "/echo"), open_timeout=5) as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=5) == "plain"


# -- flow control -----------------------------------------------------------------------------------


def test_reading_pauses_while_the_app_does_not_receive(server_factory):
    server = server_factory(APP, "--ws-max-queue", "2", "--timeout-graceful-shutdown", "1")
    message = frame(OP_BINARY, b"z" * 65536)
    budget = 4000  # 256 MiB: far more than any socket buffers could hold
    with WsConn(server.port, path="/slow?sleep=30") as c:
        c.sock.setblocking(False)
        sent = 0
        pending = b""
        deadline = time.monotonic() + 20
        while sent < budget and time.monotonic() < deadline:
            if not pending:
                pending = message
            _, writable, _ = select.select([], [c.sock], [], 1.0)
            if not writable:
                break  # the server stopped reading: our send buffer stays full
            try:
                n = c.sock.send(pending)
            except BlockingIOError:
                continue
            pending = pending[n:]
            if not pending:
                sent += 1
        assert sent < budget, "the server read everything without the app consuming it"


def test_cancelling_one_waiting_sender_leaves_the_others(ws_server):
    mark = ws_server.mark()
    with WsConn(ws_server.port, path="/two-senders") as c:
        # Not reading until writing has paused and both senders wait.
        wait_app_line(ws_server, "both senders waiting=True", mark)
        for _ in range(40):  # at most 16 messages, then the close
            opcode, _, _ = c.read_frame()
            if opcode == OP_CLOSE:
                break
    wait_app_line(ws_server, "second sender finished", mark)


def test_ws_none_serves_upgrades_as_http(server_factory):
    server = server_factory(APP, "--ws", "none")
    with RawConn(server.port) as c:
        c.send(handshake_request("/echo"))
        response = c.read_response()
    assert response.status == 200 and response.body == b"plain http /echo"
    assert server.wait_for_log("Unsupported upgrade request.", timeout=5)


def test_ws_websockets_name_is_mapped_with_a_warning(server_factory):
    server = server_factory(APP, "--ws", "websockets")
    assert server.wait_for_log(r"--ws websockets requested: Palfrey serves WebSockets with wsproto",
                               timeout=5)
    with connect(url(server, "/echo"), open_timeout=5) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"


# -- shutdown -------------------------------------------------------------------------------------


def test_server_shutdown_closes_with_1012(server_factory):
    server = server_factory(APP)
    with WsConn(server.port) as c:
        c.send(frame(OP_TEXT, b"hi"))
        assert c.read_frame()[2] == b"hi"
        server.send_signal(signal.SIGTERM)
        assert c.read_close()[0] == 1012
        assert c.wait_closed()
    assert server.wait_exit(10) == 0
    assert "disconnect code=1012" in server.stderr_text()


def test_unix_socket(server_factory, tmp_path):
    path = str(tmp_path / "ws.sock")
    server = server_factory(APP, "--uds", path)
    with WsConn(uds=server.uds) as c:
        c.send(frame(OP_TEXT, b"over unix"))
        assert c.read_frame() == (OP_TEXT, True, b"over unix")
