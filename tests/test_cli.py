"""The command line: every Uvicorn 0.54 flag, PALFREY_* env vars, bad values, --help, --version.

Parsing is checked in-process (``palfrey.cli.run`` replaced by a recorder, then the recorded
keyword arguments are fed to ``Config``); a few end-to-end checks run the real command."""

from __future__ import annotations

import importlib
import re
import ssl
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import palfrey.cli
from palfrey.config import DEFAULTS, Config
from tests.support.server import Proc, clean_env

pytestmark = pytest.mark.palfrey_only


@pytest.fixture
def invoke(monkeypatch):
    """Run the CLI in-process; returns (result, kwargs given to run())."""
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(palfrey.cli, "run", lambda *a, **k: calls.append((a, k)))
    for key in list(__import__("os").environ):
        if key.startswith("PALFREY_") or key in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
            monkeypatch.delenv(key)

    def run(*args: str, env: dict[str, str] | None = None):
        result = CliRunner().invoke(palfrey.cli.cli, list(args), env=env)
        kwargs = calls[-1][1] if calls else None
        calls.clear()
        return result, kwargs

    return run


# `uvicorn --help` of Uvicorn 0.54.0, every long flag.
UVICORN_054_FLAGS = {
    "--host", "--port", "--uds", "--fd", "--reload", "--reload-dir", "--reload-include",
    "--reload-exclude", "--reload-delay", "--workers", "--loop", "--http", "--http2", "--ws",
    "--ws-max-size", "--ws-max-queue", "--ws-ping-interval", "--ws-ping-timeout",
    "--ws-per-message-deflate", "--lifespan", "--interface", "--env-file", "--log-config",
    "--log-level", "--access-log", "--no-access-log", "--use-colors", "--no-use-colors",
    "--proxy-headers", "--no-proxy-headers", "--server-header", "--no-server-header",
    "--date-header", "--no-date-header", "--forwarded-allow-ips", "--root-path",
    "--limit-concurrency", "--backlog", "--limit-max-requests", "--limit-max-requests-jitter",
    "--timeout-keep-alive", "--timeout-graceful-shutdown", "--timeout-worker-healthcheck",
    "--ssl-keyfile", "--ssl-certfile", "--ssl-keyfile-password", "--ssl-version",
    "--ssl-cert-reqs", "--ssl-ca-certs", "--ssl-ciphers", "--header", "--version", "--app-dir",
    "--h11-max-incomplete-event-size", "--reset-contextvars", "--factory", "--help",
}


def uvicorn_flags() -> set[str]:
    """The list above, plus the installed Uvicorn's own flags when it is installed."""
    flags = set(UVICORN_054_FLAGS)
    try:
        command = importlib.import_module("uvicorn.main").main
    except ImportError:
        return flags
    for param in command.params:
        flags.update(o for o in param.opts + param.secondary_opts if o.startswith("--"))
    return flags


def palfrey_flags() -> set[str]:
    import typer.main

    command = typer.main.get_command(palfrey.cli.cli)
    flags = set()
    for param in command.params:
        flags.update(o for o in param.opts + param.secondary_opts if o.startswith("--"))
    flags.add("--help")  # click's, not a parameter
    return flags


def test_every_uvicorn_flag_is_accepted():
    missing = uvicorn_flags() - palfrey_flags()
    assert not missing, f"Uvicorn flags Palfrey lacks: {sorted(missing)}"


def test_defaults_match_config(invoke):
    result, kwargs = invoke("main:app")
    assert result.exit_code == 0, result.output
    for name, value in kwargs.items():
        if name in DEFAULTS and name not in ("headers", "log_config"):
            assert value == DEFAULTS[name], (name, value, DEFAULTS[name])
    assert kwargs["headers"] == []
    assert "log_config" not in kwargs  # Config's LOGGING_CONFIG default applies


def test_defaults_are_uvicorns():
    uvicorn = pytest.importorskip("uvicorn.config", reason="needs Uvicorn to compare with")

    ours = DEFAULTS
    import inspect

    theirs = {
        name: p.default
        for name, p in inspect.signature(uvicorn.Config.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    for name, value in theirs.items():
        if name == "log_config":
            continue  # the same dict with palfrey.* logger names
        assert name in ours, f"Config lacks Uvicorn's parameter {name}"
        assert ours[name] == value, (name, ours[name], value)


ALL_FLAGS = [
    "--host", "0.0.0.0", "--port", "9001", "--uds", "/tmp/x.sock", "--fd", "7",
    "--reload", "--reload-dir", ".", "--reload-include", "*.html", "--reload-exclude", "*.tmp",
    "--reload-delay", "0.5", "--workers", "3", "--loop", "asyncio", "--http", "h11",
    "--ws", "wsproto", "--ws-max-size", "1024", "--ws-max-queue", "4",
    "--ws-ping-interval", "1.5", "--ws-ping-timeout", "2.5", "--ws-per-message-deflate", "false",
    "--lifespan", "on", "--interface", "asgi2", "--log-level", "DEBUG", "--no-access-log",
    "--use-colors", "--no-proxy-headers", "--no-server-header", "--no-date-header",
    "--forwarded-allow-ips", "10.0.0.0/8,*", "--root-path", "/api", "--limit-concurrency", "10",
    "--backlog", "64", "--limit-max-requests", "100", "--limit-max-requests-jitter", "5",
    "--timeout-keep-alive", "7", "--timeout-graceful-shutdown", "3",
    "--timeout-worker-healthcheck", "9", "--ssl-keyfile", "k.pem", "--ssl-certfile", "c.pem",
    "--ssl-keyfile-password", "pw", "--ssl-version", "2", "--ssl-cert-reqs", "2",
    "--ssl-ca-certs", "ca.pem", "--ssl-ciphers", "ECDHE", "--header", "X-A: 1",
    "--header", "x-b:two:parts", "--app-dir", "src", "--h11-max-incomplete-event-size", "999",
    "--reset-contextvars", "--factory", "--http2", "--forwarded-host", "--forwarded-rfc7239",
    "--limit-header-size", "1000", "--limit-header-line-size", "500",
    "--limit-header-count", "20", "--limit-target-size", "300", "--limit-body-size", "5000",
]

EXPECTED = dict(  # noqa: C408  (keyword form reads like the call it checks)
    host="0.0.0.0", port=9001, uds="/tmp/x.sock", fd=7, reload=True, reload_dirs=["."],
    reload_includes=["*.html"], reload_excludes=["*.tmp"], reload_delay=0.5, workers=3,
    loop="asyncio", http="h11", ws="wsproto", ws_max_size=1024, ws_max_queue=4,
    ws_ping_interval=1.5, ws_ping_timeout=2.5, ws_per_message_deflate=False, lifespan="on",
    interface="asgi2", log_level="debug", access_log=False, use_colors=True,
    proxy_headers=False, server_header=False, date_header=False,
    forwarded_allow_ips="10.0.0.0/8,*", root_path="/api", limit_concurrency=10, backlog=64,
    limit_max_requests=100, limit_max_requests_jitter=5, timeout_keep_alive=7.0,
    timeout_graceful_shutdown=3.0, timeout_worker_healthcheck=9.0, ssl_keyfile="k.pem",
    ssl_certfile="c.pem", ssl_keyfile_password="pw", ssl_version=2, ssl_cert_reqs=2,
    ssl_ca_certs="ca.pem", ssl_ciphers="ECDHE", headers=[("X-A", " 1"), ("x-b", "two:parts")],
    app_dir="src", h11_max_incomplete_event_size=999, reset_contextvars=True, factory=True,
    http2=True, forwarded_host=True, forwarded_rfc7239=True, limit_header_size=1000,
    limit_header_line_size=500, limit_header_count=20, limit_target_size=300,
    limit_body_size=5000,
)


def test_every_flag_parsed(invoke):
    result, kwargs = invoke("main:app", *ALL_FLAGS)
    assert result.exit_code == 0, result.output
    for name, value in EXPECTED.items():
        assert kwargs[name] == value, (name, kwargs[name], value)
        assert type(kwargs[name]) is type(value), (name, type(kwargs[name]))
    # Every flag of the list above reached run(): nothing parsed and then dropped.
    assert set(EXPECTED) <= set(kwargs)


def test_parsed_values_build_a_config(invoke):
    _, kwargs = invoke("main:app", "--workers", "2", "--ws-max-size", "10", "--ssl-cert-reqs",
                       "1", "--log-level", "warning", "--timeout-keep-alive", "2.5")
    config = Config(**{"app": "main:app", **kwargs})
    assert config.workers == 2 and config.ws_max_size == 10
    assert config.ssl_cert_reqs == ssl.CERT_OPTIONAL
    assert config.timeout_keep_alive == 2.5


def test_env_vars(invoke):
    env = {
        "PALFREY_PORT": "9002", "PALFREY_HOST": "::1", "PALFREY_LOG_LEVEL": "warning",
        "PALFREY_PROXY_HEADERS": "false", "PALFREY_WORKERS": "4", "PALFREY_APP": "env:app",
        "PALFREY_HEADER": "X-One: 1\nX-Two: 2", "PALFREY_RELOAD_INCLUDE": "*.a *.b",
        "PALFREY_FORWARDED_RFC7239": "true", "PALFREY_SSL_KEYFILE_PASSWORD": "secret",
        "PALFREY_WS_PER_MESSAGE_DEFLATE": "0", "PALFREY_TIMEOUT_GRACEFUL_SHUTDOWN": "1.5",
    }
    result, kwargs = invoke(env=env)
    assert result.exit_code == 0, result.output
    assert kwargs["port"] == 9002 and kwargs["host"] == "::1"
    assert kwargs["log_level"] == "warning" and kwargs["proxy_headers"] is False
    assert kwargs["workers"] == 4 and kwargs["forwarded_rfc7239"] is True
    assert kwargs["headers"] == [("X-One", " 1"), ("X-Two", " 2")]
    assert kwargs["reload_includes"] == ["*.a", "*.b"]
    assert kwargs["ssl_keyfile_password"] == "secret"
    assert kwargs["ws_per_message_deflate"] is False
    assert kwargs["timeout_graceful_shutdown"] == 1.5


def test_command_line_beats_env(invoke):
    result, kwargs = invoke("cli:app", "--port", "9003", "--proxy-headers",
                            env={"PALFREY_PORT": "9004", "PALFREY_APP": "env:app",
                                 "PALFREY_PROXY_HEADERS": "false"})
    assert result.exit_code == 0, result.output
    assert kwargs["port"] == 9003 and kwargs["proxy_headers"] is True


def test_uvicorn_env_vars_are_adopted(invoke):
    environ = {"UVICORN_PORT": "9005", "UVICORN_HOST": "0.0.0.0", "PALFREY_HOST": "::",
               "UVICORN_APP": "uv:app"}
    palfrey.cli.adopt_uvicorn_env(environ)
    assert environ["PALFREY_PORT"] == "9005" and environ["PALFREY_APP"] == "uv:app"
    assert environ["PALFREY_HOST"] == "::"  # PALFREY_* wins
    result, kwargs = invoke(env={k: v for k, v in environ.items() if k.startswith("PALFREY_")})
    assert result.exit_code == 0 and kwargs["port"] == 9005


def test_uvicorn_env_end_to_end():
    from tests.support.client import raw_request, simple_get
    from tests.support.common import free_port, wait_until

    port = free_port()
    proc = Proc(env={"UVICORN_APP": "tests.apps:app", "UVICORN_PORT": str(port),
                     "UVICORN_LOG_LEVEL": "warning"})
    proc.start(wait=False)
    try:
        def answers() -> bool:
            try:
                resp, conn = raw_request(port, simple_get("/hello"), timeout=1)
            except OSError:
                return False
            conn.close()
            return resp.status == 200

        assert wait_until(answers, timeout=15), proc.stderr_text()
        assert "Started server process" not in proc.stderr_text()  # warning level applied
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    "args, option, accepted",
    [
        (["--port", "abc"], "--port", None),
        (["--port", "70000"], "--port", "65535"),
        (["--lifespan", "maybe"], "--lifespan", "'auto', 'on', 'off'"),
        (["--interface", "asgi4"], "--interface", "'asgi3', 'asgi2', 'wsgi'"),
        (["--log-level", "loud"], "--log-level", "'trace'"),
        (["--loop", "tokio"], "--loop", "'uvloop'"),
        (["--http", "h3"], "--http", "'httptools'"),
        (["--ws", "socketio"], "--ws", "'wsproto'"),
        (["--ssl-version", "99"], "--ssl-version", "17 (PROTOCOL_TLS_SERVER)"),
        (["--ssl-cert-reqs", "5"], "--ssl-cert-reqs", "2 (CERT_REQUIRED)"),
        (["--ws-per-message-deflate", "maybe"], "--ws-per-message-deflate", "true or false"),
        (["--workers", "0"], "--workers", r"greater than or equal to 1|x>=1"),
        (["--header", "novalue"], "--header", "NAME:VALUE"),
        (["--timeout-keep-alive", "-1"], "--timeout-keep-alive", r"greater than or equal to 0|x>=0"),
        (["--env-file", "/nonexistent/.env"], "--env-file", "does not exist"),
        (["--log-config", "/nonexistent.json"], "--log-config", "does not exist"),
        (["--reload-dir", "/nonexistent-dir"], "--reload-dir", "does not exist"),
    ],
)
def test_bad_values_exit_2_with_one_line(invoke, args, option, accepted):
    result, kwargs = invoke("main:app", *args)
    assert result.exit_code == 2, result.output
    assert kwargs is None
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert option in errors[0], errors[0]
    if accepted:
        # The range wording is typer's and differs between its versions.
        assert re.search(accepted, errors[0]) or accepted in errors[0], errors[0]


def test_unknown_option_and_missing_app(invoke):
    result, _ = invoke("main:app", "--no-such-flag")
    # click's wording: "No such option: --x" before 8.2, "No such option '--x'." since.
    assert result.exit_code == 2
    assert re.search(r"No such option:? '?--no-such-flag'?", result.output), result.output
    result, _ = invoke()
    assert result.exit_code == 2 and "Missing argument 'APP'" in result.output


def test_help_is_grouped_and_lists_every_flag():
    out = subprocess.run([sys.executable, "-m", "palfrey", "--help"], capture_output=True,
                         text=True, timeout=20, env=clean_env(), check=False).stdout
    headings = [line[:-1] for line in out.splitlines() if re.fullmatch(r"[A-Z][^ ].*:", line)]
    assert headings[:2] == ["Arguments", "Application"], headings
    for heading in ("Socket binding", "Logging", "Proxies", "TLS", "Limits and timeouts",
                    "Processes and reload"):
        assert heading in headings, headings
    for flag in palfrey_flags():
        assert flag in out, flag
    assert "PALFREY_FORWARDED_ALLOW_IPS" in out


def test_version():
    out = subprocess.run([sys.executable, "-m", "palfrey", "--version"], capture_output=True,
                         text=True, timeout=20, env=clean_env(), check=False)
    assert out.returncode == 0
    assert re.fullmatch(r"Running palfrey \d+\.\d+\.\d+\S* with CPython 3\.\d+\.\d+ on Linux\n",
                        out.stdout), out.stdout


# -- startup failures: exit 3 with Uvicorn's message ------------------------------------------


@pytest.mark.parametrize(
    "app, message",
    [
        ("nosuchmodule:app", 'ERROR:    Error loading ASGI app. Could not import module "nosuchmodule".'),
        ("tests.apps:nosuchattr",
         'ERROR:    Error loading ASGI app. Attribute "nosuchattr" not found in module "tests.apps".'),
        ("tests.apps", ('ERROR:    Error loading ASGI app. Import string "tests.apps" must be '
                        'in format "<module>:<attribute>".')),
    ],
)
def test_import_failures_exit_3(app, message):
    proc = Proc(app, "--port", "0")
    assert proc.run_to_exit() == 3
    assert message in proc.lines("stderr"), proc.stderr_text()
    assert "Traceback" not in proc.stderr_text()


def test_port_in_use_exits_3():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = Proc("tests.apps:app", "--port", str(port))
        assert proc.run_to_exit() == 3
    err = proc.stderr_text()
    assert re.search(r"ERROR:    \[Errno 98\] .*address already in use", err), err
    assert "Traceback" not in err
    # Lifespan started, so it is shut down again before exiting.
    assert "Application shutdown complete." in err


def test_uvicorn_command_line_works_with_the_name_changed():
    """The issue's example: only the program name changes."""
    proc = Proc("tests.apps:scope_app", "--proxy-headers", "--forwarded-allow-ips=*",
                "--workers", "1", "--log-level", "debug", "--port", "0").start()
    try:
        from tests.support.client import raw_request, simple_get

        resp, conn = raw_request(proc.port, simple_get("/", b"X-Forwarded-For: 203.0.113.9\r\n"))
        conn.close()
        assert resp.status == 200
        assert __import__("json").loads(resp.body)["client"] == ["203.0.113.9", 0]
    finally:
        proc.stop()
