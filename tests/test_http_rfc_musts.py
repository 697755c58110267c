"""RFC MUSTs the first hardening round left (issue 14): framing fields a response must not
carry, request framing and targets that must be refused, and the lingering close that
lets a client that sends its whole request before reading still read the answer."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

import pytest

from tests.support.client import RawConn, raw_request, send_expect_error

pytestmark = pytest.mark.palfrey_only


@pytest.fixture(scope="module")
def rfc_server(module_server_factory):
    return module_server_factory("tests.apps_rfc:app")


# -- RFC 9110 8.6 / RFC 9112 6.1: framing fields the status or the version forbid -----------


def test_204_never_carries_content_length(rfc_server):
    response, conn = raw_request(rfc_server.port, b"GET /?status=204 HTTP/1.1\r\nHost: a\r\n\r\n")
    with conn:
        assert response.status == 204
        assert response.get("content-length") is None, response.head
        assert response.get("transfer-encoding") is None, response.head
        assert response.get("x-app") == b"yes"
        # Still keep-alive, and nothing was written after the head.
        conn.send(b"GET /?status=200 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().body == b"body"


@pytest.mark.parametrize("status", [100, 103, 199])
def test_1xx_is_refused_as_a_final_status(rfc_server, status):
    # A client takes a 1xx for an interim response and the pipelined request's answer for
    # this one's (RFC 9110 15.2): refused, 500 and a close, nothing of the 1xx sent.
    mark = rfc_server.mark()
    request = b"GET /?status=%d HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    send_expect_error(rfc_server.port, request % status, 500)
    assert rfc_server.wait_for_log(f"Invalid final HTTP status code {status}", mark=mark)


@pytest.mark.parametrize("literal", ["200.0", "'200'", "True"])
def test_a_status_that_is_not_an_int_is_refused(rfc_server, literal):
    mark = rfc_server.mark()
    send_expect_error(rfc_server.port, b"GET /odd?status=%s HTTP/1.1\r\nHost: a\r\n\r\n"
                      % literal.encode(), 500)
    assert rfc_server.wait_for_log("Invalid HTTP status code", mark=mark)


@pytest.mark.parametrize("query", ["te=chunked,gzip", "te=chunked&te=gzip",
                                   "te=chunked,chunked", "te=chunked&te=chunked"])
def test_app_transfer_encoding_must_end_in_chunked_once(rfc_server, query):
    # RFC 9112 6.1: chunked last, or a client reads to the close; 7.1: never twice.
    mark = rfc_server.mark()
    send_expect_error(rfc_server.port, b"GET /fields?%s HTTP/1.1\r\nHost: a\r\n\r\n"
                      % query.replace(",", "%2C").encode(), 500)
    assert rfc_server.wait_for_log("transfer-encoding must list chunked once and last", mark=mark)


def test_a_repeated_content_length_goes_out_once(rfc_server):
    # RFC 9110 8.6: equal values may be folded into one; strict clients refuse two fields.
    response, conn = raw_request(
        rfc_server.port, b"GET /fields?cl=4&cl=04&cl=4 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    with conn:
        assert response.get_all("content-length") == [b"4"], response.head
        assert response.body == b"body"
    send_expect_error(rfc_server.port, b"GET /fields?cl=4&cl=5 HTTP/1.1\r\nHost: a\r\n\r\n", 500)


@pytest.mark.parametrize("query", ["te=gzip", "te=gzip,chunked", "te=gzip&te=chunked"])
def test_app_transfer_encoding_ending_in_chunked_is_kept(rfc_server, query):
    # Read raw: the client helper decodes no coding but chunked (and the body is no gzip).
    with socket.create_connection(("127.0.0.1", rfc_server.port), timeout=5) as sock:
        sock.sendall(b"GET /fields?%s HTTP/1.1\r\nHost: a\r\n\r\n"
                     % query.replace(",", "%2C").encode())
        data = b""
        for _ in range(100):
            if data.endswith(b"\r\n0\r\n\r\n"):
                break
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        codings = b",".join(
            line.split(b":", 1)[1] for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"transfer-encoding:")
        ).replace(b" ", b"").split(b",")
        assert codings[-1] == b"chunked" and codings.count(b"chunked") == 1, head
        assert body == b"4\r\nbody\r\n0\r\n\r\n", body
        sock.settimeout(0.2)  # framed by the chunks: still open, nothing more
        with pytest.raises(TimeoutError):
            sock.recv(1)


@pytest.mark.parametrize("status", [304])
def test_304_and_head_keep_content_length(rfc_server, status):
    response, conn = raw_request(
        rfc_server.port, b"GET /?status=%d HTTP/1.1\r\nHost: a\r\n\r\n" % status
    )
    with conn:
        assert response.status == status and response.get("content-length") == b"4"
    response, conn = raw_request(
        rfc_server.port, b"HEAD /?status=200 HTTP/1.1\r\nHost: a\r\n\r\n", head=True
    )
    with conn:
        assert response.get("content-length") == b"4"
        assert conn.is_open_now(0.2) and not conn.buf  # no body followed the head


def test_http10_answer_drops_the_apps_chunked_coding(rfc_server):
    conn = RawConn(rfc_server.port)
    with conn:
        conn.send(b"GET /coded HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert response.version == b"HTTP/1.1" and response.status == 200
        assert response.get("transfer-encoding") is None, response.head  # RFC 9112 6.1
        assert response.close_delimited and response.body == b"first second"


# -- RFC 9112 6.1 and 3.2.4: requests that must be refused ----------------------------------


def test_transfer_encoding_in_http10_request_is_400(server):
    send_expect_error(
        server.port, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400
    )


def test_asterisk_form_only_for_options(server):
    send_expect_error(server.port, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    response, conn = raw_request(server.port, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    with conn:
        assert response.status != 400  # served (the test app has no route for "*")


# -- RFC 9112 9.6: the lingering close ------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(module_server_factory):
    return module_server_factory("tests.apps:app", "--limit-body-size", "1000")


def test_after_413_the_client_may_keep_sending_then_sees_fin(limited_server):
    """A client that sends a 1 MB body over --limit-body-size gets 413, goes on sending for
    1 s without a reset (the server half-closed and discards), then sees the server's FIN."""
    sock = socket.create_connection(("127.0.0.1", limited_server.port), timeout=5)
    with sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n")
        received = b""
        errors: list[BaseException] = []
        stop = time.monotonic() + 1.0
        chunk = b"x" * 16384
        while time.monotonic() < stop:  # the sending is the behaviour under test
            try:
                sock.sendall(chunk)
            except OSError as exc:
                errors.append(exc)
                break
            time.sleep(0.02)
        assert not errors, f"send failed after {received!r}: {errors}"
        sock.shutdown(socket.SHUT_WR)
        while True:
            data = sock.recv(65536)
            if not data:
                break  # the server's FIN
            received += data
    assert received.startswith(b"HTTP/1.1 413 "), received[:200]
    assert received.endswith(b"Request body too large."), received[-200:]


class DelayingProxy:
    """A TCP relay that delivers the server's bytes to the client ``delay`` seconds late,
    as a slow link does, and passes a reset from the server on at once, dropping what it
    still holds (a reset destroys data not yet read). Client bytes go through at once."""

    def __init__(self, target_port: int, delay: float = 0.3) -> None:
        self.target_port = target_port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepted = threading.Thread(target=self._accept_one, daemon=True)
        self.accepted.start()

    def _accept_one(self) -> None:
        self.listener.settimeout(10)
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        queue: deque[tuple[float, bytes | None]] = deque()  # None: the server's FIN
        reset = threading.Event()

        def up() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        def down_read() -> None:
            try:
                while data := upstream.recv(65536):
                    queue.append((time.monotonic() + self.delay, data))
                queue.append((time.monotonic() + self.delay, None))
            except ConnectionResetError:
                reset.set()
            except OSError:
                queue.append((time.monotonic() + self.delay, None))

        def down_write() -> None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if reset.is_set():
                    # RST: abort the client's side too, dropping what is still queued.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    client.close()
                    return
                if queue and queue[0][0] <= time.monotonic():
                    _, data = queue.popleft()
                    if data is None:
                        client.shutdown(socket.SHUT_WR)
                        return
                    client.sendall(data)
                else:
                    time.sleep(0.005)

        for target in (up, down_read, down_write):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=20)


def test_status_survives_a_slow_link(limited_server):
    """Across a link that delays the server's bytes, a client that sends its whole request
    (a 200 KB header section, over the limit) before reading reads the 431 intact. Closed
    with the request unread, the server's reset would overtake the status."""
    proxy = DelayingProxy(limited_server.port)
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        with sock:
            field = b"X-Big: " + b"b" * 4000 + b"\r\n"
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + field * 50 + b"\r\n")
            except OSError:
                pass  # the server may stop reading once it has answered
            received = b""
            try:
                while data := sock.recv(65536):
                    received += data
            except ConnectionResetError:
                pass
    finally:
        proxy.close()
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert received.endswith(b"Request header fields too large."), received[-200:]
