"""HTTP/2 selection (SPEC.md section 8): prior knowledge and the h2c upgrade in cleartext, ALPN
over TLS, the --http2 flag and its environment variable, the --h2-* options in SETTINGS and
in --help, the access log; without --http2 nothing changes (preface -> 400, h2c upgrade served
as HTTP/1.1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hyperframe.frame import SettingsFrame

from tests.support.client import RawConn, simple_get
from tests.support.common import ROOT
from tests.support.h2 import (
    APP,
    ENABLE_CONNECT_PROTOCOL,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    PREFACE,
    H2Client,
    RawH2,
    certs,  # noqa: F401 - fixture
    h2_server,  # noqa: F401 - fixture
    h2_servers,  # noqa: F401 - fixture
    h2c_upgrade_request,
    module_h2_servers,  # noqa: F401 - fixture
    open_socket,
    palfrey_h2_only,
)
from tests.support.server import Proc, ScriptProc, clean_env

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


@pytest.fixture(scope="module")
def tls_server(module_h2_servers, certs):  # noqa: F811
    return module_h2_servers(certs=certs)


@pytest.fixture(scope="module")
def plain_server(module_h2_servers):  # noqa: F811
    """Without --http2."""
    return module_h2_servers(http2=False)


# -- cleartext: prior knowledge --------------------------------------------------------------


def test_prior_knowledge_settings_first_then_served(h2_server):  # noqa: F811
    with RawH2(h2_server.port) as raw:
        assert raw.wait_for(lambda: raw.frames), raw.describe()
        # RFC 9113 3.4: the server's preface is a SETTINGS frame (not an ACK).
        first = raw.frames[0]
        assert isinstance(first, SettingsFrame) and "ACK" not in first.flags, raw.frames
        raw.send_request(1, "/hello")
        assert raw.wait_for(lambda: raw.stream_done(1)), raw.describe()
        assert raw.status(1) == 200 and bytes(raw.data[1]) == b"Hello, world!", raw.describe()


def test_default_settings_advertised(h2_server):  # noqa: F811
    with H2Client(h2_server.port) as client:
        settings = client.wait_settings()
    assert settings.get(MAX_CONCURRENT_STREAMS) == 100, settings
    assert settings.get(MAX_HEADER_LIST_SIZE) == 65536, settings
    assert settings.get(INITIAL_WINDOW_SIZE) == 65535, settings
    assert settings.get(MAX_FRAME_SIZE) == 16384, settings
    # RFC 8441 3: WebSockets are on by default.
    assert settings.get(ENABLE_CONNECT_PROTOCOL) == 1, settings


H2_OPTIONS = {
    "--h2-max-concurrent-streams": ("PALFREY_H2_MAX_CONCURRENT_STREAMS", "7", MAX_CONCURRENT_STREAMS),
    "--h2-max-header-list-size": ("PALFREY_H2_MAX_HEADER_LIST_SIZE", "10000", MAX_HEADER_LIST_SIZE),
    "--h2-initial-window-size": ("PALFREY_H2_INITIAL_WINDOW_SIZE", "1048576", INITIAL_WINDOW_SIZE),
    "--h2-max-frame-size": ("PALFREY_H2_MAX_FRAME_SIZE", "32768", MAX_FRAME_SIZE),
}


@palfrey_h2_only
@pytest.mark.parametrize("source", ["cli", "env"])
def test_h2_options_set_the_settings(h2_servers, source):  # noqa: F811
    if source == "cli":
        args = [x for flag, (_, value, _) in H2_OPTIONS.items() for x in (flag, value)]
        server = h2_servers(*args)
    else:
        server = h2_servers(env={env: value for env, value, _ in H2_OPTIONS.values()})
    with H2Client(server.port) as client:
        settings = client.wait_settings()
        for _, value, code in H2_OPTIONS.values():
            assert settings.get(code) == int(value), (code, settings)
        # In force, not just advertised: a 20000-byte DATA frame (over the 16384 default)
        # and a 9000-byte header field (under the 10000 list size) are accepted.
        assert client.conn.max_outbound_frame_size == 32768
        stream = client.response(client.request("POST", "/echo", body=b"d" * 20000,
                                                headers=[("x-pad", "p" * 9000)]))
        assert stream.status == 200 and bytes(stream.data) == b"d" * 20000, stream


@palfrey_h2_only
def test_header_list_size_defaults_to_limit_header_size(h2_servers):  # noqa: F811
    server = h2_servers("--limit-header-size", "20000")
    with H2Client(server.port) as client:
        assert client.wait_settings().get(MAX_HEADER_LIST_SIZE) == 20000


@palfrey_h2_only
def test_help_lists_the_h2_options():
    out = subprocess.run([sys.executable, "-m", "palfrey", "--help"], capture_output=True,
                         text=True, timeout=30, env=clean_env({"COLUMNS": "200"}), cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr
    for option in ["--http2", *H2_OPTIONS]:
        assert option in out.stdout, (option, out.stdout)


@palfrey_h2_only
def test_http2_from_the_environment(h2_servers):  # noqa: F811
    server = h2_servers(http2=False, env={"PALFREY_HTTP2": "true"})
    with H2Client(server.port) as client:
        assert client.get("/hello").status == 200


@palfrey_h2_only
def test_run_with_http2_true(tmp_path):
    """The Python API: palfrey.run(..., http2=True) (Config(http2=True))."""
    script = tmp_path / "serve.py"
    script.write_text(f"import palfrey\npalfrey.run({APP!r}, port=0, http2=True)\n")

    proc = ScriptProc(script)
    try:
        proc.start()
        with H2Client(proc.port) as client:
            assert client.get("/hello").status == 200
    finally:
        assert proc.stop() == 0


@palfrey_h2_only
def test_http2_without_the_h2_package_exits_3(tmp_path):
    """`--http2` where h2 cannot be imported: exit 3, one line naming the extra."""
    fake = tmp_path / "h2"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'h2'\")\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = Proc(APP, "--port", "0", "--http2", env=env)
    assert proc.run_to_exit() == 3, proc.stderr_text()
    err = proc.stderr_text()
    assert sum("pip install 'palfrey[http2]'" in line for line in err.splitlines()) == 1, err
    assert "Traceback" not in err, err


# -- cleartext: h2c upgrade (RFC 7540 3.2) ---------------------------------------------------


def test_h2c_upgrade_becomes_stream_1(h2_server):  # noqa: F811
    with H2Client(h2_server.port, mode="upgrade", upgrade_path="/scope?x=1") as client:
        head = client.upgrade_response.lower()
        assert re.search(rb"\r\nupgrade: *h2c\r\n", head), head
        assert re.search(rb"\r\nconnection: *upgrade\r\n", head), head
        stream = client.response(1)
        assert stream.status == 200, stream
        scope = stream.json()
        assert scope["http_version"] == "2", scope
        assert (scope["method"], scope["path"], scope["query_string"]) == ("GET", "/scope", "x=1")
        # The connection carries on as HTTP/2: stream 3.
        assert client.get("/hello").status == 200
        assert client.settings_frames >= 1


# -- TLS: ALPN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offer", [("h2", "http/1.1"), ("http/1.1", "h2"), ("h2",)])
def test_alpn_selects_h2(tls_server, certs, offer):  # noqa: F811
    with H2Client(tls_server.port, mode="tls", tls=certs.client_context(offer)) as client:
        assert client.alpn == "h2"
        scope = client.get("/scope").json()
    assert scope["scheme"] == "https" and scope["http_version"] == "2", scope


@pytest.mark.parametrize("offer", [("http/1.1",), None])
def test_tls_http11_clients_still_served(tls_server, certs, offer):  # noqa: F811
    sock = open_socket(tls_server.port, certs.client_context(offer))
    try:
        assert sock.selected_alpn_protocol() in (None, "http/1.1")
        sock.sendall(simple_get("/hello"))
        data = b""
        while b"Hello, world!" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
    finally:
        sock.close()


@palfrey_h2_only
def test_no_h2c_upgrade_over_tls(tls_server, certs):  # noqa: F811
    """h2c is HTTP/2 in cleartext only (RFC 9113 3.1): over TLS the upgrade request is
    served as plain HTTP/1.1, never answered 101."""
    sock = open_socket(tls_server.port, certs.client_context(("http/1.1",)))
    try:
        sock.sendall(h2c_upgrade_request("/hello"))
        data = b""
        while b"Hello, world!" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
    finally:
        sock.close()


# -- HTTP/1.1 on an --http2 server, and a server without --http2 ------------------------------


def test_http11_still_served_with_http2_on(h2_server):  # noqa: F811
    with RawConn(h2_server.port) as conn:
        for _ in range(2):
            conn.send(simple_get("/hello"))
            resp = conn.read_response()
            assert resp.version == b"HTTP/1.1" and resp.status == 200, resp
            assert resp.body == b"Hello, world!"


def test_without_http2_the_preface_gets_400(plain_server):
    with RawConn(plain_server.port) as conn:
        conn.send(PREFACE + SettingsFrame(0).serialize())
        resp = conn.read_response()
        assert resp.status == 400, resp
        assert conn.wait_closed(), "connection not closed after the 400"


def test_without_http2_an_h2c_upgrade_is_plain_http11(plain_server):
    with RawConn(plain_server.port) as conn:
        conn.send(h2c_upgrade_request("/hello"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"Hello, world!", resp
        # Still HTTP/1.1 on the same connection.
        conn.send(simple_get("/hello"))
        assert conn.read_response().status == 200


# -- access log --------------------------------------------------------------------------------


@palfrey_h2_only
def test_access_log_says_http2(h2_server):  # noqa: F811
    mark = h2_server.mark()
    with H2Client(h2_server.port) as client:
        port = client.sock.getsockname()[1]
        assert client.get("/hello?a=1").status == 200
    line = rf'^INFO: +127\.0\.0\.1:{port} - "GET /hello\?a=1 HTTP/2" 200'
    assert h2_server.wait_for_log(line, "stdout", 5, mark), h2_server.since(mark, "stdout")
