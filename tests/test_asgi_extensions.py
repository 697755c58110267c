"""The ASGI extensions Palfrey advertises (SPEC 2, "ASGI extensions"): file bodies by
sendfile (http.response.pathsend through Starlette's StaticFiles, http.response.zerocopysend),
103 Early Hints, and the tls scope extension; over HTTP/1.1 (cleartext and TLS) and HTTP/2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess

import httpx
import pytest

from tests.support.client import RawConn
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only
trustme = pytest.importorskip("trustme", reason="trustme is in the [test] extra")

APP = "tests.apps_extensions:app"
MIB = 1 << 20


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    (folder / "small.bin").write_bytes(os.urandom(64 * 1024))
    (folder / "big.bin").write_bytes(os.urandom(MIB) * 4)
    return folder


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.org", common_name="client one")
    paths = {name: str(folder / f"{name}.pem") for name in
             ("ca", "cert", "key", "client_cert", "client_key")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["key"])
    server.cert_chain_pems[0].write_to_path(paths["cert"])
    client.private_key_pem.write_to_path(paths["client_key"])
    client.cert_chain_pems[0].write_to_path(paths["client_cert"])
    return paths


@pytest.fixture(scope="module")
def server(files):
    proc = Proc(APP, "--port", "0", "--http2", env={"PALFREY_TEST_FILES": str(files)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tls_server(files, certs):
    proc = Proc(APP, "--port", "0", "--http2", "--ssl-certfile", certs["cert"],
                "--ssl-keyfile", certs["key"], "--ssl-ca-certs", certs["ca"],
                "--ssl-cert-reqs", "2", env={"PALFREY_TEST_FILES": str(files)}).start()
    yield proc
    proc.stop()


def _client_context(certs) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs["ca"])
    context.load_cert_chain(certs["client_cert"], certs["client_key"])
    return context


# -- file bodies -------------------------------------------------------------------------------


def test_extensions_are_advertised(server):
    names = httpx.get(server.url("/extensions"), timeout=5).json()
    assert {"http.response.pathsend", "http.response.zerocopysend",
            "http.response.early_hint"} <= set(names), names


@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_static_files_by_pathsend(server, files, name):
    expected = (files / name).read_bytes()
    response = httpx.get(server.url(f"/files/{name}"), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(expected))
    assert "transfer-encoding" not in response.headers
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(expected).digest()
    # HEAD: the same head, no body; and the connection is still good.
    with RawConn(server.port) as conn:
        conn.send(b"HEAD /files/%s HTTP/1.1\r\nHost: a\r\n\r\n" % name.encode())
        head = conn.read_response(head=True)
        assert head.get("content-length") == str(len(expected)).encode()
        conn.send(b"GET /files/small.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().body == (files / "small.bin").read_bytes()


def test_zerocopysend_with_offset_and_count(server, files):
    data = (files / "big.bin").read_bytes()
    response = httpx.get(server.url("/zerocopy?name=big.bin&offset=1000&count=2000000"),
                         timeout=10)
    assert response.status_code == 200 and response.content == data[1000:2001000]


def test_client_leaving_mid_file_leaves_the_server_fine(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(b"GET /files/big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        conn.read_until(b"\r\n\r\n")
        conn.read_exact(100_000)  # then go, 4 MiB unread
    for _ in range(3):
        assert httpx.get(server.url("/files/small.bin"), timeout=5).status_code == 200
    assert not any("Traceback" in line for line in server.since(mark)), server.since(mark)


def test_file_that_shrinks_while_sent(server, files, tmp_path):
    shutil.copy(files / "big.bin", files / "shrinking.bin")
    mark = server.mark()
    with RawConn(server.port, timeout=10) as conn:
        conn.send(b"GET /zerocopy?name=shrinking.bin&count=4194304&shrink=1048576 HTTP/1.1\r\n"
                  b"Host: a\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n")
        assert b" 200 " in head and b"content-length: 4194304" in head
        rest = conn.read_until_close(10)  # closed, not hung
        assert len(rest) == MIB  # what the file still had
    assert server.wait_for_log("did it shrink", "stderr", 5, mark), server.since(mark)


def test_pathsend_over_tls_falls_back_to_reads(tls_server, files, certs):
    expected = (files / "big.bin").read_bytes()
    with httpx.Client(verify=_client_context(certs), timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{tls_server.port}/files/big.bin")
    assert response.status_code == 200 and response.content == expected


def test_pathsend_over_http2(server, files):
    expected = (files / "big.bin").read_bytes()
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        response = client.get(server.url("/files/big.bin"))
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200 and response.content == expected


# -- 103 Early Hints ---------------------------------------------------------------------------


def test_early_hints_over_http11(server):
    with RawConn(server.port) as conn:
        conn.send(b"GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
        hints = conn.read_response()
        assert (hints.status, hints.reason) == (103, b"Early Hints")
        assert hints.get_all("link") == [b"</style.css>; rel=preload; as=style",
                                         b"</script.js>; rel=preload; as=script"]
        assert hints.get("content-length") is None
        final = conn.read_response()
        assert final.status == 200 and json.loads(final.body) == {"ok": True}


def test_no_early_hints_for_http10(server):
    with RawConn(server.port) as conn:
        conn.send(b"GET /hints HTTP/1.0\r\n\r\n")
        assert conn.read_response().status == 200  # RFC 9110 15.2: no 1xx to HTTP/1.0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by .ci/run")
@pytest.mark.parametrize("option", ["--http1.1", "--http2-prior-knowledge"])
def test_curl_prints_the_103(server, option):
    out = subprocess.run(["curl", "-sv", option, server.url("/hints")], capture_output=True,
                         text=True, timeout=20, check=False)
    assert out.returncode == 0, out.stderr
    assert "< HTTP/1.1 103 Early Hints" in out.stderr or "< HTTP/2 103" in out.stderr, out.stderr
    assert "< link: </style.css>; rel=preload; as=style" in out.stderr.lower(), out.stderr


# -- the tls extension -------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True])
def test_tls_extension_with_a_client_certificate(tls_server, certs, http2):
    with httpx.Client(verify=_client_context(certs), http2=http2, timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{tls_server.port}/tls")
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    tls = response.json()["tls"]
    server_pem = open(certs["cert"]).read()
    client_pem = open(certs["client_cert"]).read()
    assert tls["server_cert"].strip() == server_pem.strip()
    assert tls["client_cert_chain"][0].strip() == client_pem.strip()
    assert "CN=client one" in tls["client_cert_name"], tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF


def test_no_tls_extension_in_cleartext(server):
    assert "tls" not in httpx.get(server.url("/extensions"), timeout=5).json()


def test_pathsend_over_http2_reset_by_the_client_mid_file(server):
    """RST_STREAM(CANCEL) while the file waits on flow control: the send stops quietly
    (no exception in the app or on the transport), and the connection serves the next
    stream. A WINDOW_UPDATE for the reset stream used to reach its queued data and end the
    connection with a "Fatal error on transport"."""
    from h2.errors import ErrorCodes

    from tests.support.h2 import H2Client

    mark = server.mark()
    with H2Client(server.port, auto_ack=False) as client:
        stream_id = client.request("GET", "/files/big.bin")
        client.wait(lambda: client.streams[stream_id].data, what="the file's first DATA")
        client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.conn.acknowledge_received_data(  # reopens the connection's window
            len(client.streams[stream_id].data), stream_id)
        client.flush()
        second = client.request("GET", "/files/small.bin")
        client.auto_ack = True
        client.wait(lambda: client.streams[second].done)
        assert client.streams[second].status == 200
        assert len(client.streams[second].data) == 64 * 1024
    assert server.wait_for_log(r'"GET /files/big\.bin HTTP/2" 200', "stdout", 10, mark)
    lines = server.since(mark) + server.since(mark, "stdout")
    assert not [line for line in lines if "Exception" in line or "Traceback" in line], lines
