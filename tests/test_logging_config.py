"""Logging: the default lines, --no-access-log, --log-config (.json, .yaml, .ini),
--log-level trace (ASGI messages), --use-colors; and --env-file."""

from __future__ import annotations

import json

import pytest

from tests.support.client import raw_request, simple_get
from tests.support.server import Proc

pytestmark = pytest.mark.palfrey_only

LOG_DICT = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "CUSTOM %(name)s %(levelname)s %(message)s"},
        "access": {
            "()": "palfrey.logging.AccessFormatter",
            "fmt": "ACCESS %(client_addr)s %(request_line)s %(status_code)s",
            "use_colors": False,
        },
    },
    "handlers": {
        "err": {"class": "logging.StreamHandler", "formatter": "plain",
                "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access",
                   "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "palfrey.error": {"handlers": ["err"], "level": "INFO", "propagate": False},
        "palfrey.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

INI = """\
[loggers]
keys=root,error,access

[handlers]
keys=err,access

[formatters]
keys=plain,access

[logger_root]
level=WARNING
handlers=

[logger_error]
level=INFO
handlers=err
propagate=0
qualname=palfrey.error

[logger_access]
level=INFO
handlers=access
propagate=0
qualname=palfrey.access

[handler_err]
class=StreamHandler
formatter=plain
args=(sys.stderr,)

[handler_access]
class=StreamHandler
formatter=access
args=(sys.stdout,)

[formatter_plain]
format=CUSTOM %(name)s %(levelname)s %(message)s

[formatter_access]
class=palfrey.logging.AccessFormatter
format=ACCESS %(client_addr)s %(request_line)s %(status_code)s
"""


def hit(proc, path: str = "/hello") -> int:
    resp, conn = raw_request(proc.port, simple_get(path))
    port = conn.local_port
    conn.close()
    assert resp.status == 200
    return port


def serve(*args: str, env: dict[str, str] | None = None) -> Proc:
    return Proc("tests.apps:app", "--port", "0", *args, env=env).start()


def test_default_lines():
    proc = serve()
    try:
        port = hit(proc)
        assert proc.wait_for_log(
            rf'^INFO:     127\.0\.0\.1:{port} - "GET /hello HTTP/1\.1" 200 OK$', "stdout", 5)
        assert "\x1b[" not in proc.stderr_text() + proc.stdout_text()  # not a terminal
    finally:
        proc.stop()


def test_no_access_log():
    proc = serve("--no-access-log")
    try:
        hit(proc)
        hit(proc, "/scope")
        assert not proc.wait_for_log("GET", "stdout", 0.5)
    finally:
        proc.stop()


@pytest.mark.parametrize("fmt", ["json", "yaml", "yml", "ini"])
def test_log_config_file(tmp_path, fmt):
    path = tmp_path / f"logging.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(LOG_DICT))
    elif fmt == "ini":
        path.write_text(INI)
    else:
        yaml = pytest.importorskip("yaml", reason="PyYAML is in the [test] extra")
        path.write_text(yaml.safe_dump(LOG_DICT))
    proc = Proc("tests.apps:app", "--port", "0", "--log-config", str(path))
    # The "running on" line has the custom format, so wait for that.
    proc.start(wait=False)
    try:
        m = proc.wait_for_log(r"^CUSTOM palfrey\.error INFO Palfrey running on "
                              r"http://127\.0\.0\.1:(\d+)", "stderr", 15, check_alive=True)
        assert m, proc.stderr_text()
        proc.port = int(m.group(1))
        port = hit(proc)
        assert proc.wait_for_log(rf"^ACCESS 127\.0\.0\.1:{port} GET /hello HTTP/1\.1 200 OK$",
                                 "stdout", 5), proc.stdout_text()
    finally:
        proc.stop()


def test_log_level_trace_logs_asgi_messages():
    proc = serve("--log-level", "trace")
    try:
        port = hit(proc, "/hello")
        prefix = rf"^TRACE:    127\.0\.0\.1:{port} - ASGI \[\d+\]"
        for what in (r"Started scope=\{.*'path': '/hello'",
                     r"Send \{'type': 'http.response.start'.*'headers': '<\.\.\.>'",
                     r"Send \{'type': 'http.response.body', 'body': '<13 bytes>'", "Completed"):
            assert proc.wait_for_log(prefix + " " + what, "stderr", 5), (what, proc.stderr_text())
        # The lifespan conversation is traced too (no client: plain "ASGI").
        assert proc.wait_for_log(r"^TRACE:    ASGI \[\d+\] Receive \{'type': 'lifespan.startup'\}",
                                 "stderr", 5)
    finally:
        proc.stop()


def test_log_level_info_does_not_trace():
    proc = serve("--log-level", "info")
    try:
        hit(proc)
        assert not proc.wait_for_log("TRACE", "stderr", 0.3)
    finally:
        proc.stop()


def test_use_colors_forced_on_and_off():
    proc = serve("--use-colors")
    try:
        hit(proc)
        assert proc.wait_for_log(r"\x1b\[32mINFO\x1b\[0m:     Started server process", "stderr", 5)
        assert proc.wait_for_log(r'\x1b\[1mGET /hello HTTP/1\.1\x1b\[0m" \x1b\[32m200 OK',
                                 "stdout", 5), proc.stdout_text()
    finally:
        proc.stop()
    proc = serve("--no-use-colors")
    try:
        hit(proc)
        assert proc.wait_for_log("GET /hello", "stdout", 5)
        assert "\x1b[" not in proc.stderr_text() + proc.stdout_text()
    finally:
        proc.stop()


def test_env_file(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("PALFREY_TEST_FROM_ENV_FILE=hello-dotenv\n")
    proc = Proc("tests.apps_config:env_app", "--port", "0", "--env-file", str(env_file)).start()
    try:
        assert f"INFO:     Loading environment from '{env_file}'" in proc.lines("stderr")
        resp, conn = raw_request(proc.port, simple_get("/"))
        conn.close()
        assert json.loads(resp.body) == {"value": "hello-dotenv"}
    finally:
        proc.stop()


def test_env_file_via_palfrey_env_var(tmp_path):
    env_file = tmp_path / "other.env"
    env_file.write_text("PALFREY_TEST_FROM_ENV_FILE=via-env\n")
    proc = Proc("tests.apps_config:env_app", "--port", "0",
                env={"PALFREY_ENV_FILE": str(env_file)}).start()
    try:
        resp, conn = raw_request(proc.port, simple_get("/"))
        conn.close()
        assert json.loads(resp.body) == {"value": "via-env"}
    finally:
        proc.stop()
