"""TLS (SPEC.md section 7): a certificate made in the test (trustme); curl and httpx get
https scopes; a key that does not load is a startup failure (exit 3)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess

import httpx
import pytest

from tests.support.server import Proc, ScriptProc

trustme = pytest.importorskip("trustme", reason="trustme is in the [test] extra")

pytestmark = pytest.mark.palfrey_only


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp / "ca.pem", "cert": tmp / "cert.pem", "key": tmp / "key.pem",
             "enc_key": tmp / "enc_key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(paths["cert"]), append=True)
    # The same key, encrypted with a password.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    paths["enc_key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def tls_server(certs):
    proc = Proc("tests.apps:scope_app", "--port", "0", "--ssl-certfile", certs["cert"],
                "--ssl-keyfile", certs["key"]).start()
    yield proc
    proc.stop()


def test_running_line_says_https(tls_server):
    assert tls_server.match.group(1) == "https"


def test_httpx_gets_https_scope(tls_server, certs):
    context = ssl.create_default_context(cafile=certs["ca"])
    with httpx.Client(verify=context, timeout=5) as client:
        for _ in range(2):  # keep-alive over TLS
            resp = client.post(f"https://127.0.0.1:{tls_server.port}/tls?q=1", content=b"body")
            assert resp.status_code == 200
            scope = resp.json()
            assert scope["scheme"] == "https"
            assert scope["_body"] == "body" and scope["query_string"] == "q=1"
            assert resp.headers["server"] == "palfrey"


def test_plain_http_client_is_refused(tls_server):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/", timeout=5)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_https_scope(tls_server, certs):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", certs["ca"],
         f"https://localhost:{tls_server.port}/curl"],
        capture_output=True, text=True, timeout=15, check=False,
    )
    assert out.returncode == 0, out.stderr
    scope = json.loads(out.stdout)
    assert scope["scheme"] == "https" and scope["path"] == "/curl"


def test_encrypted_key_with_password(certs):
    proc = Proc("tests.apps:scope_app", "--port", "0", "--ssl-certfile", certs["cert"],
                "--ssl-keyfile", certs["enc_key"], env={"PALFREY_SSL_KEYFILE_PASSWORD": "s3cret"})
    try:
        proc.start()
        context = ssl.create_default_context(cafile=certs["ca"])
        resp = httpx.get(f"https://127.0.0.1:{proc.port}/", verify=context, timeout=5)
        assert resp.json()["scheme"] == "https"
    finally:
        proc.stop()


@pytest.mark.parametrize("problem", ["wrong-password", "missing-file", "key-only"])
def test_bad_tls_setup_exits_3(certs, problem):
    args = {
        "wrong-password": ["--ssl-certfile", certs["cert"], "--ssl-keyfile", certs["enc_key"],
                           "--ssl-keyfile-password", "nope"],
        "missing-file": ["--ssl-certfile", "/nonexistent/cert.pem"],
        "key-only": ["--ssl-keyfile", certs["key"]],
    }[problem]
    proc = Proc("tests.apps:app", "--port", "0", *args)
    assert proc.run_to_exit() == 3
    err = proc.stderr_text()
    assert "ERROR:" in err and "Traceback" not in err, err


def test_ssl_context_factory_via_run(certs, tmp_path):
    """Uvicorn 0.54's signature: factory(config, default_factory) -> SSLContext."""
    script = tmp_path / "serve.py"
    script.write_text(
        "import palfrey, ssl\n"
        "def factory(config, default):\n"
        "    ctx = default()\n"
        "    ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n"
        "    return ctx\n"
        f"palfrey.run('tests.apps:scope_app', port=0, ssl_certfile={certs['cert']!r},\n"
        f"            ssl_keyfile={certs['key']!r}, ssl_context_factory=factory)\n"
    )

    proc = ScriptProc(script)
    try:
        proc.start()
        context = ssl.create_default_context(cafile=certs["ca"])
        with httpx.Client(verify=context, timeout=5) as client:
            assert client.get(f"https://127.0.0.1:{proc.port}/").json()["scheme"] == "https"
        old = ssl.create_default_context(cafile=certs["ca"])
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{proc.port}/", verify=old, timeout=5)
    finally:
        assert proc.stop() == 0
