"""Real HTTP/2 clients (SPEC.md section 8): curl over TLS (ALPN), with prior knowledge and
with the h2c upgrade; httpx with http2=True (TLS and prior knowledge); nghttp with concurrent
streams; nginx in front with `grpc_pass grpc://` (nginx speaks h2c to the server) and a
gRPC-style app answering with trailers."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from tests.apps_h2 import grpc_message
from tests.support.h2 import (
    ON_HYPERCORN,
    H2Client,
    certs,  # noqa: F401 - fixture
    curl,
    h2_server,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    report,
    run_tool,
)
from tests.support.nginx import NGINX, running_nginx

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


@pytest.fixture(scope="module")
def tls_server(module_h2_servers, certs):  # noqa: F811
    return module_h2_servers(certs=certs)


def curl_json(*args: str) -> tuple[dict, str, str]:
    """curl ARGS -w '\\n%{http_version}': (the JSON body, the HTTP version, curl's stderr)."""
    out = curl(*args, "-w", "\n%{http_version}")
    assert out.returncode == 0, out.stderr
    body, _, version = out.stdout.rpartition("\n")
    return json.loads(body), version, out.stderr


def test_curl_over_tls_alpn(tls_server, certs):  # noqa: F811
    scope, version, _ = curl_json("--http2", "--cacert", certs.ca,
                                  f"https://localhost:{tls_server.port}/scope?via=curl")
    assert version == "2"
    assert scope["http_version"] == "2" and scope["scheme"] == "https", scope
    assert scope["query_string"] == "via=curl"


def test_curl_prior_knowledge(h2_server):  # noqa: F811
    scope, version, _ = curl_json("--http2-prior-knowledge", "-d", "posted",
                                  f"http://127.0.0.1:{h2_server.port}/scope")
    assert version == "2"
    assert scope["http_version"] == "2" and scope["method"] == "POST", scope
    assert scope["_body"] == "posted"


def test_curl_h2c_upgrade(h2_server):  # noqa: F811
    scope, version, err = curl_json("-v", "--http2", f"http://127.0.0.1:{h2_server.port}/scope")
    assert re.search(r"^< HTTP/1\.1 101\b", err, re.MULTILINE), err
    assert version == "2"
    assert scope["http_version"] == "2" and scope["path"] == "/scope", scope


def test_httpx_over_tls(tls_server, certs):  # noqa: F811
    with httpx.Client(http2=True, verify=certs.client_context(), timeout=5) as client:
        for i in range(3):
            resp = client.post(f"https://localhost:{tls_server.port}/scope?i={i}",
                               content=b"x" * 100_000)
            assert resp.http_version == "HTTP/2", resp
            scope = resp.json()
            assert scope["http_version"] == "2" and scope["scheme"] == "https"
            assert scope["_body"] == "x" * 100_000 and scope["query_string"] == f"i={i}"


def test_httpx_prior_knowledge(h2_server):  # noqa: F811
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        resp = client.get(f"http://127.0.0.1:{h2_server.port}/hello")
    assert resp.http_version == "HTTP/2" and resp.text == "Hello, world!"


def test_nghttp_concurrent_streams(h2_server):  # noqa: F811
    ids = [f"ng-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    urls = [f"http://127.0.0.1:{h2_server.port}/sleep?id={rid}&t=1" for rid in ids]
    out = run_tool("nghttp", "-nv", "-t", "10", *urls)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert len(re.findall(r"recv \(stream_id=\d+\) :status: 200", out.stdout)) == 3, out.stdout
    states = [report(h2_server, rid) for rid in ids]
    # One connection, three streams at once: every app started before the first ended.
    assert max(s["start"] for s in states) < min(s["end"] for s in states), states


GRPC_PROXY = """
    server {{
        listen 127.0.0.1:{{port}} http2;
        location / {{
            grpc_pass grpc://127.0.0.1:{upstream};
        }}
    }}
"""


def test_nginx_grpc_pass(h2_server, tmp_path):  # noqa: F811
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    mark = h2_server.mark()
    proxy = GRPC_PROXY.format(upstream=h2_server.port)
    with running_nginx(tmp_path, proxy) as port, H2Client(port) as client:
        for word in (b"ping", b"pong"):
            stream = client.response(client.request(
                "POST", "/palfrey.Echo/Say", body=grpc_message(word),
                headers=[("content-type", "application/grpc"), ("te", "trailers")]),
                timeout=10)
            assert stream.status == 200, (stream, (tmp_path / "error.log").read_text())
            assert stream.get("content-type") == b"application/grpc"
            assert bytes(stream.data) == grpc_message(b"echo:" + word), stream
            assert stream.trailers is not None and (b"grpc-status", b"0") in stream.trailers
    # nginx spoke h2c to the server.
    if not ON_HYPERCORN:
        assert h2_server.wait_for_log(r'"POST /palfrey\.Echo/Say HTTP/2" 200', "stdout", 5,
                                      mark), h2_server.since(mark, "stdout")
