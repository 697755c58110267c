"""Access log (stdout) and error log (stderr) lines."""

from __future__ import annotations

import re

import pytest

from tests.support.client import RawConn, raw_request, simple_get
from tests.support.common import free_port
from tests.support.server import ACCESS_RE


def access_lines(server, mark=None):
    lines = server.since(mark, "stdout") if mark else server.lines("stdout")
    return [x for x in lines if ACCESS_RE.match(x)]


def test_access_log_line_exact(server):
    mark = server.mark()
    resp, conn = raw_request(server.port, simple_get("/echo-path/x?a=1"))
    with conn:
        assert resp.status == 200
        port = conn.local_port
    expected = f'INFO:     127.0.0.1:{port} - "GET /echo-path/x?a=1 HTTP/1.1" 200 OK'
    assert server.wait_for_log("^" + re.escape(expected) + "$", "stdout", 5, mark), server.since(
        mark, "stdout"
    )
    # Access lines go to stdout only.
    assert not [x for x in server.since(mark, "stderr") if "GET /echo-path/x" in x]


@pytest.mark.parametrize(
    "request_bytes,expected",
    [
        (b"GET / HTTP/1.0\r\n\r\n", '"GET / HTTP/1.0" 200 OK'),
        (
            b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            '"POST /nope HTTP/1.1" 404 Not Found',
        ),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", '"HEAD / HTTP/1.1" 200 OK'),
        (
            b"GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\n",
            '"GET /status?code=204 HTTP/1.1" 204 No Content',
        ),
        (
            b"GET /raise-before HTTP/1.1\r\nHost: x\r\n\r\n",
            '"GET /raise-before HTTP/1.1" 500 Internal Server Error',
        ),
        # The logged path is the decoded path re-quoted, as Uvicorn does.
        (
            b"GET /echo-path/a%20b?x=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
            '"GET /echo-path/a%20b?x=%20 HTTP/1.1" 200 OK',
        ),
        (
            b"GET /echo-path/caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n",
            '"GET /echo-path/caf%C3%A9 HTTP/1.1" 200 OK',
        ),
        (
            b"GET http://example.com/echo-path/abs?q HTTP/1.1\r\nHost: x\r\n\r\n",
            '"GET /echo-path/abs?q HTTP/1.1" 200 OK',
        ),
    ],
)
def test_access_log_variants(server, request_bytes, expected):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(request_bytes)
        conn.read_response(head=request_bytes.startswith(b"HEAD"))
        port = conn.local_port
    line = f"INFO:     127.0.0.1:{port} - {expected}"
    assert server.wait_for_log("^" + re.escape(line) + "$", "stdout", 5, mark), server.since(
        mark, "stdout"
    )


def test_access_log_one_line_per_request(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(b"".join(simple_get(f"/echo-path/log{i}") for i in range(5)))
        for _ in range(5):
            conn.read_response()
        port = conn.local_port
    assert server.wait_for_log(r"/echo-path/log4 ", "stdout", 5, mark)
    lines = [x for x in access_lines(server, mark) if f"127.0.0.1:{port} " in x]
    assert [re.search(r'"GET (\S+) ', x).group(1) for x in lines] == [
        f"/echo-path/log{i}" for i in range(5)
    ]


def test_error_log_goes_to_stderr(server):
    mark = server.mark()
    with RawConn(server.port) as conn:
        conn.send(simple_get("/raise-before"))
        conn.read_response()
    assert server.wait_for_log("^ERROR:    Exception in ASGI application$", "stderr", 5, mark)
    assert not [
        x for x in server.since(mark, "stdout") if "Exception in ASGI" in x or "Traceback" in x
    ]


def test_no_access_log(server_factory):
    s = server_factory("tests.apps:app", "--no-access-log")
    for i in range(3):
        resp, conn = raw_request(s.port, simple_get(f"/echo-path/{i}"))
        conn.close()
        assert resp.status == 200
    # Errors are still logged.
    resp, conn = raw_request(s.port, b"G(T / HTTP/1.1\r\n\r\n")
    conn.close()
    assert s.wait_for_log("Invalid HTTP request received", "stderr", 5)
    s.catch_up()  # an access line would have been written before its response: now visible
    assert access_lines(s) == [], s.stdout_text()
    assert "echo-path" not in s.stdout_text() + s.stderr_text()


def test_log_level_warning(server_factory):
    # No INFO lines at all (not even "running on"), so the port is chosen up front.
    port = free_port()
    s = server_factory("tests.apps:app", "--log-level", "warning", port=port)
    resp, conn = raw_request(s.port, simple_get("/"))
    conn.close()
    assert resp.status == 200
    resp, conn = raw_request(s.port, b"G(T / HTTP/1.1\r\n\r\n")
    conn.close()
    assert resp.status == 400
    assert s.wait_for_log("^WARNING:  Invalid HTTP request received.$", "stderr", 5)
    s.catch_up()  # every line written for the two answers is visible now
    assert not [x for x in s.lines("stderr") + s.lines("stdout") if x.startswith("INFO:")]


def test_log_level_debug_still_serves(server_factory):
    s = server_factory("tests.apps:app", "--log-level", "debug")
    resp, conn = raw_request(s.port, simple_get("/echo-path/dbg"))
    conn.close()
    assert resp.body == b"/echo-path/dbg"
    assert s.wait_for_log(r'"GET /echo-path/dbg HTTP/1.1" 200 OK', "stdout", 5)


def test_custom_log_config_logger_names_and_args(server_factory, tmp_path):
    # A plain logging.Formatter (not ours) on the access and error loggers: the logger names
    # and the access record's args (client, method, path, version, status) are Uvicorn's.
    import json as _json

    from tests.support.common import IS_PALFREY

    prefix = "palfrey" if IS_PALFREY else "uvicorn"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(name)s|%(levelname)s|%(message)s"},
            "args": {"()": "tests.apps.ArgsFormatter"},
        },
        "handlers": {
            "err": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
            "acc": {
                "class": "logging.StreamHandler",
                "formatter": "args",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            prefix: {"handlers": ["err"], "level": "INFO", "propagate": False},
            f"{prefix}.error": {"level": "INFO"},
            f"{prefix}.access": {"handlers": ["acc"], "level": "INFO", "propagate": False},
        },
    }
    cfg = tmp_path / "log.json"
    cfg.write_text(_json.dumps(config))
    port = free_port()
    s = server_factory("tests.apps:app", "--log-config", str(cfg), port=port)
    resp, conn = raw_request(s.port, simple_get("/echo-path/cfg?z=1"))
    with conn:
        client_port = conn.local_port
    assert resp.status == 200
    expected = (
        f"ARGS {prefix}.access ('127.0.0.1:{client_port}', 'GET', '/echo-path/cfg?z=1', '1.1', 200)"
    )
    assert s.wait_for_log("^" + re.escape(expected) + "$", "stdout", 5), s.stdout_text()
    resp, conn = raw_request(s.port, b"G(T / HTTP/1.1\r\n\r\n")
    conn.close()
    assert s.wait_for_log(
        rf"^{prefix}\.error\|WARNING\|Invalid HTTP request received\.$", "stderr", 5
    ), s.stderr_text()
