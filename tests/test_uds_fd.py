"""--uds and --fd: serve requests; the socket file has mode 0o666 and is removed on exit."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from tests.support.client import RawConn, simple_get, unix_request
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only


def test_uds_serves_and_is_removed(tmp_path):
    path = str(tmp_path / "palfrey.sock")
    proc = Proc("tests.apps:scope_app", "--uds", path)
    try:
        proc.start()
        assert proc.match.group(4) == path
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        raw = unix_request(path, simple_get("/x", b"Connection: close\r\n"))
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), raw[:200]
        scope = json.loads(body)
        assert scope["client"] is None and scope["server"] is None
        assert scope["path"] == "/x"
        # The default trust list names no socket path: proxy headers are not applied.
        raw = unix_request(path, simple_get("/", b"X-Forwarded-For: 1.2.3.4\r\n"
                                                 b"Connection: close\r\n"))
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["client"] is None
    finally:
        assert proc.stop() == 0
    assert not os.path.exists(path)


def test_uds_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    proc = Proc("tests.apps:app", "--uds", path)
    try:
        proc.start()
        raw = unix_request(path, simple_get("/hello", b"Connection: close\r\n"))
        assert raw.startswith(b"HTTP/1.1 200 OK")
    finally:
        proc.stop()


def test_uds_in_use_fails_and_leaves_the_file(tmp_path):
    """--workers binds in the parent: a path another server listens on fails with exit 3,
    and the file, which is that server's, stays (a failed start used to remove it)."""
    path = str(tmp_path / "taken.sock")
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        other.listen()
        inode = os.stat(path).st_ino
        proc = Proc("tests.apps:app", "--uds", path, "--workers", "2").start(wait=False)
        assert proc.wait_exit(20) == 3, proc.stderr_text()
        assert "Address already in use" in proc.stderr_text()
        assert os.stat(path).st_ino == inode


def test_fd_serves_inherited_tcp_socket():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    proc = Proc("tests.apps:scope_app", "--fd", str(listener.fileno()),
                pass_fds=(listener.fileno(),))
    try:
        proc.start()
        assert "socket" in proc.match.group(0)
        with RawConn(port) as conn:
            conn.send(simple_get("/fd"))
            resp = conn.read_response()
            scope = json.loads(resp.body)
            assert scope["client"] == ["127.0.0.1", conn.local_port]
            assert scope["server"] == ["127.0.0.1", port]
            assert scope["path"] == "/fd"
    finally:
        proc.stop()
        listener.close()


def test_fd_serves_inherited_unix_socket(tmp_path):
    path = str(tmp_path / "fd.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    proc = Proc("tests.apps:scope_app", "--fd", str(listener.fileno()),
                "--forwarded-allow-ips", path, pass_fds=(listener.fileno(),))
    try:
        proc.start()
        # The socket path is trusted: the proxy's X-Forwarded-For is applied.
        raw = unix_request(path, simple_get("/", b"X-Forwarded-For: 198.51.100.7\r\n"
                                                 b"Connection: close\r\n"))
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["client"] == ["198.51.100.7", 0]
    finally:
        proc.stop()
        listener.close()
