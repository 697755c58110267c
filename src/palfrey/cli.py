"""The ``palfrey`` command: Uvicorn's flags, Palfrey's own, ``PALFREY_*`` env vars.

Every default comes from ``Config``'s signature (``DEFAULTS[...]``); none is written here.
Each option can also be set as ``PALFREY_<NAME>`` (``--log-level`` -> ``PALFREY_LOG_LEVEL``),
or as Uvicorn's ``UVICORN_<NAME>``; the command line wins over the environment, and
``PALFREY_*`` over ``UVICORN_*``. ``--help`` shows the options in groups.
"""

from __future__ import annotations

import os
import platform
import ssl
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from palfrey._version import __version__
from palfrey.config import (
    DEFAULTS,
    HTTP_CHOICES,
    INTERFACE_CHOICES,
    LIFESPAN_CHOICES,
    LOG_LEVELS,
    LOOP_CHOICES,
    WS_CHOICES,
)
from palfrey.logging import AccessLogFormat
from palfrey.main import run

ENV_PREFIX = "PALFREY_"

# --help sections, in this order (each option names its group with rich_help_panel).
APPLICATION = "Application"
BINDING = "Socket binding"
PROTOCOLS = "Event loop and protocols"
WEBSOCKET = "WebSocket"
LOGGING = "Logging"
HTTP = "HTTP responses"
PROXIES = "Proxies"
TLS = "TLS"
LIMITS = "Limits and timeouts"
PROCESSES = "Processes and reload"
COMPAT = "Uvicorn compatibility (accepted, no effect)"
OTHER = "Other"
GROUPS = (
    APPLICATION,
    BINDING,
    PROTOCOLS,
    WEBSOCKET,
    LOGGING,
    HTTP,
    PROXIES,
    TLS,
    LIMITS,
    PROCESSES,
    COMPAT,
    OTHER,
)



class GroupedCommand(TyperCommand):
    """Plain click help (one "Error:" line for bad values, no rich panels), with the
    options listed under the headings in GROUPS."""

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments = []
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                group = getattr(param, "rich_help_panel", None) or OTHER
                groups.setdefault(group, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for group in sorted(groups, key=lambda g: GROUPS.index(g) if g in GROUPS else 99):
            with formatter.section(group):
                formatter.write_dl(groups[group])


def _env(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def _parse_loop(value: str) -> str:
    if value in LOOP_CHOICES or (":" in value and all(value.partition(":")[::2])):
        return value
    accepted = ", ".join(repr(choice) for choice in LOOP_CHOICES)
    raise typer.BadParameter(
        f"{value!r} is not one of {accepted} or a 'module:factory' import string."
    )


class BooleanValue(click.types.BoolParamType):
    """A boolean that takes a value (``--ws-per-message-deflate false``), as Uvicorn's:
    click's BOOL (1/0, true/false, yes/no, on/off...) with a shorter error."""

    name = "boolean"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is not a boolean: use true or false.", param, ctx)


class NumberedChoice(click.ParamType):
    """click.Choice for the ssl module's numbered constants: the number is the value, the
    error lists each number with its name (``17 (PROTOCOL_TLS_SERVER)``)."""

    name = "integer"

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number not in self.names:
            accepted = ", ".join(f"{n} ({name})" for n, name in sorted(self.names.items()))
            self.fail(f"{value!r} is not one of {accepted}.", param, ctx)
        return number


# ssl._SSLMethod values (PROTOCOL_TLS_SERVER = 17, ...) and ssl.VerifyMode, by number.
_SSL_VERSIONS = NumberedChoice({int(method): method.name for method in ssl._SSLMethod})
_CERT_REQS = NumberedChoice({int(mode): mode.name for mode in ssl.VerifyMode})


def _parse_access_log_format(value: str) -> str:
    try:
        AccessLogFormat(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _parse_header(value: str) -> str:
    """Check the NAME:VALUE shape here, so a typo is a usage error, not a traceback."""
    name, sep, _ = value.partition(":")
    if not sep or not name.strip():
        raise typer.BadParameter(f"{value!r} is not in NAME:VALUE form.")
    return value


def _print_version(value: bool) -> None:
    if value:
        typer.echo(
            f"Running palfrey {__version__} with {platform.python_implementation()} "
            f"{platform.python_version()} on {platform.system()}"
        )
        raise typer.Exit()


def _opt(flag: str, help: str, group: str, **kwargs: Any) -> Any:
    """An option that can also come from ``PALFREY_<NAME>``, listed under ``group``."""
    name = flag.split("/")[0].lstrip("-")
    kwargs.setdefault("envvar", _env(name))
    return typer.Option(
        flag,
        help=help,
        show_envvar=kwargs["envvar"] is not None,
        rich_help_panel=group,
        **kwargs,
    )


def _headers_from_env() -> list[str]:
    """``PALFREY_HEADER``, one Name:Value per line. Read here rather than by typer, whose
    list splitting is on whitespace, which header values contain."""
    raw = os.environ.get(_env("header"), "")
    return [_parse_header(line.strip()) for line in raw.splitlines() if line.strip()]


cli = typer.Typer(
    add_completion=False,
    # Plain click output: a bad value is one "Error: ..." line, not a rich panel.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@cli.command(
    cls=GroupedCommand,
    help="Run the ASGI application APP (an import string, e.g. main:app).",
)
def serve(
    ctx: typer.Context,
    app: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            envvar=_env("app"),
            show_envvar=True,
            show_default=False,
            help="The ASGI app as module:attribute, e.g. main:app or palfrey.demo:app.",
        ),
    ] = None,
    # -- Application ---------------------------------------------------------------------
    factory: Annotated[
        bool,
        _opt(
            "--factory",
            "Treat APP as an application factory, i.e. a () -> <ASGI app> callable.",
            APPLICATION,
        ),
    ] = DEFAULTS["factory"],
    app_dir: Annotated[
        str,
        _opt(
            "--app-dir",
            "Look for APP in the specified directory, by adding this to the PYTHONPATH. "
            "Defaults to the current working directory.",
            APPLICATION,
        ),
    ] = DEFAULTS["app_dir"],
    interface: Annotated[
        str,
        _opt(
            "--interface",
            "Select ASGI3, ASGI2, or WSGI as the application interface.",
            APPLICATION,
            click_type=click.Choice(INTERFACE_CHOICES),
        ),
    ] = DEFAULTS["interface"],
    lifespan: Annotated[
        str,
        _opt(
            "--lifespan",
            "Lifespan implementation.",
            APPLICATION,
            click_type=click.Choice(LIFESPAN_CHOICES),
        ),
    ] = DEFAULTS["lifespan"],
    env_file: Annotated[
        Path | None,
        _opt(
            "--env-file",
            "Environment configuration file (python-dotenv).",
            APPLICATION,
            exists=True,
            dir_okay=False,
        ),
    ] = DEFAULTS["env_file"],
    reset_contextvars: Annotated[
        bool,
        _opt(
            "--reset-contextvars",
            "Run each ASGI request in a fresh contextvars.Context. Hides context set in the "
            "lifespan.",
            APPLICATION,
        ),
    ] = DEFAULTS["reset_contextvars"],
    # -- Socket binding ------------------------------------------------------------------
    host: Annotated[str, _opt("--host", "Bind socket to this host.", BINDING)] = DEFAULTS["host"],
    port: Annotated[
        int,
        _opt(
            "--port",
            "Bind socket to this port. If 0, an available port will be picked.",
            BINDING,
            min=0,
            max=65535,
        ),
    ] = DEFAULTS["port"],
    uds: Annotated[str | None, _opt("--uds", "Bind to a UNIX domain socket.", BINDING)] = DEFAULTS[
        "uds"
    ],
    fd: Annotated[
        int | None,
        _opt("--fd", "Bind to socket from this file descriptor.", BINDING, min=0),
    ] = DEFAULTS["fd"],
    backlog: Annotated[
        int,
        _opt("--backlog", "Maximum number of connections to hold in backlog.", BINDING, min=0),
    ] = DEFAULTS["backlog"],
    # -- Event loop and protocols --------------------------------------------------------
    loop: Annotated[
        str,
        _opt(
            "--loop",
            "Event loop: auto (uvloop if installed), asyncio, uvloop, none, or module:factory. "
            "zuvloop is accepted and served on uvloop.",
            PROTOCOLS,
            parser=_parse_loop,
            metavar="[auto|asyncio|uvloop|none|MODULE:FACTORY]",
        ),
    ] = DEFAULTS["loop"],
    http: Annotated[
        str,
        _opt(
            "--http",
            "HTTP implementation. httptools, h11 and zttp are accepted and mapped to "
            "Palfrey's own.",
            PROTOCOLS,
            click_type=click.Choice(HTTP_CHOICES),
        ),
    ] = DEFAULTS["http"],
    http2: Annotated[
        bool,
        _opt(
            "--http2",
            "Enable HTTP/2: ALPN h2 over TLS; prior knowledge and the h2c upgrade in cleartext. "
            "Needs the h2 package (pip install 'palfrey[http2]').",
            PROTOCOLS,
        ),
    ] = DEFAULTS["http2"],
    h2_max_concurrent_streams: Annotated[
        int,
        _opt(
            "--h2-max-concurrent-streams",
            "HTTP/2: streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).",
            PROTOCOLS,
            min=1,
        ),
    ] = DEFAULTS["h2_max_concurrent_streams"],
    h2_max_header_list_size: Annotated[
        int | None,
        _opt(
            "--h2-max-header-list-size",
            "HTTP/2: largest request header list in bytes, as RFC 9113 counts it "
            "(SETTINGS_MAX_HEADER_LIST_SIZE). [default: --limit-header-size]",
            PROTOCOLS,
            min=1,
        ),
    ] = DEFAULTS["h2_max_header_list_size"],
    h2_initial_window_size: Annotated[
        int,
        _opt(
            "--h2-initial-window-size",
            "HTTP/2: bytes of request body a stream may send before the app reads it "
            "(SETTINGS_INITIAL_WINDOW_SIZE).",
            PROTOCOLS,
            min=1,
            max=2**31 - 1,
        ),
    ] = DEFAULTS["h2_initial_window_size"],
    h2_max_frame_size: Annotated[
        int,
        _opt(
            "--h2-max-frame-size",
            "HTTP/2: largest frame payload a client may send, in bytes (SETTINGS_MAX_FRAME_SIZE).",
            PROTOCOLS,
            min=16384,
            max=16777215,
        ),
    ] = DEFAULTS["h2_max_frame_size"],
    # -- WebSocket -----------------------------------------------------------------------
    ws: Annotated[
        str,
        _opt(
            "--ws",
            "WebSocket implementation: wsproto (auto); websockets and websockets-sansio are "
            "accepted and mapped to it; none serves upgrade requests as plain HTTP.",
            WEBSOCKET,
            click_type=click.Choice(WS_CHOICES),
        ),
    ] = DEFAULTS["ws"],
    ws_max_size: Annotated[
        int, _opt("--ws-max-size", "WebSocket max size message in bytes.", WEBSOCKET, min=1)
    ] = DEFAULTS["ws_max_size"],
    ws_max_queue: Annotated[
        int,
        _opt(
            "--ws-max-queue",
            "The maximum length of the WebSocket message queue.",
            WEBSOCKET,
            min=1,
        ),
    ] = DEFAULTS["ws_max_queue"],
    ws_ping_interval: Annotated[
        float,
        _opt("--ws-ping-interval", "WebSocket ping interval in seconds.", WEBSOCKET, min=0),
    ] = DEFAULTS["ws_ping_interval"],
    ws_ping_timeout: Annotated[
        float,
        _opt("--ws-ping-timeout", "WebSocket ping timeout in seconds.", WEBSOCKET, min=0),
    ] = DEFAULTS["ws_ping_timeout"],
    ws_per_message_deflate: Annotated[
        str,  # typer would make a bool a flag; BooleanValue takes a value and returns a bool
        _opt(
            "--ws-per-message-deflate",
            "WebSocket per-message-deflate compression (true or false).",
            WEBSOCKET,
            click_type=BooleanValue(),
        ),
    ] = DEFAULTS["ws_per_message_deflate"],
    # -- Logging -------------------------------------------------------------------------
    log_config: Annotated[
        Path | None,
        _opt(
            "--log-config",
            "Logging configuration file. Supported formats: .ini, .json, .yaml.",
            LOGGING,
            exists=True,
            dir_okay=False,
        ),
    ] = None,  # None = Config's default LOGGING_CONFIG dict
    log_level: Annotated[
        str | None,
        _opt(
            "--log-level",
            "Log level. trace also logs every ASGI message. [default: info]",
            LOGGING,
            click_type=click.Choice(list(LOG_LEVELS), case_sensitive=False),
        ),
    ] = DEFAULTS["log_level"],
    access_log: Annotated[
        bool, _opt("--access-log/--no-access-log", "Enable/Disable access log.", LOGGING)
    ] = DEFAULTS["access_log"],
    access_log_format: Annotated[
        str | None,
        _opt(
            "--access-log-format",
            "Access-log line in gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(D)s' "
            "(remote address, request line, status, body bytes, microseconds). "
            "[default: Uvicorn's line]",
            LOGGING,
            parser=_parse_access_log_format,
        ),
    ] = DEFAULTS["access_log_format"],
    use_colors: Annotated[
        bool | None,
        _opt(
            "--use-colors/--no-use-colors",
            "Enable/Disable colorized logging. [default: on a terminal]",
            LOGGING,
        ),
    ] = DEFAULTS["use_colors"],
    # -- HTTP responses ------------------------------------------------------------------
    root_path: Annotated[
        str,
        _opt(
            "--root-path",
            "Set the ASGI 'root_path' for applications submounted below a given URL path.",
            HTTP,
        ),
    ] = DEFAULTS["root_path"],
    server_header: Annotated[
        bool,
        _opt("--server-header/--no-server-header", "Enable/Disable default Server header.", HTTP),
    ] = DEFAULTS["server_header"],
    date_header: Annotated[
        bool,
        _opt("--date-header/--no-date-header", "Enable/Disable default Date header.", HTTP),
    ] = DEFAULTS["date_header"],
    headers: Annotated[
        list[str] | None,
        _opt(
            "--header",
            "Custom default HTTP response header as Name:Value; repeatable. "
            "In $PALFREY_HEADER, separate several with newlines.",
            HTTP,
            parser=_parse_header,
            envvar=None,
            metavar="NAME:VALUE",
        ),
    ] = None,
    # -- Proxies -------------------------------------------------------------------------
    proxy_headers: Annotated[
        bool,
        _opt(
            "--proxy-headers/--no-proxy-headers",
            "Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and "
            "remote address info, from peers trusted by --forwarded-allow-ips.",
            PROXIES,
        ),
    ] = DEFAULTS["proxy_headers"],
    forwarded_allow_ips: Annotated[
        str | None,
        _opt(
            "--forwarded-allow-ips",
            "Comma separated list of IP Addresses, IP Networks, or literals (e.g. UNIX Socket "
            "path) to trust with proxy headers. Defaults to $FORWARDED_ALLOW_IPS or "
            "'127.0.0.1,::1'. '*' trusts everything.",
            PROXIES,
        ),
    ] = DEFAULTS["forwarded_allow_ips"],
    forwarded_host: Annotated[
        bool,
        _opt(
            "--forwarded-host/--no-forwarded-host",
            "Also apply X-Forwarded-Host and X-Forwarded-Port from trusted proxies (to the "
            "host header and server address).",
            PROXIES,
        ),
    ] = DEFAULTS["forwarded_host"],
    forwarded_rfc7239: Annotated[
        bool,
        _opt(
            "--forwarded-rfc7239/--no-forwarded-rfc7239",
            "Also apply the RFC 7239 Forwarded header (for, proto, host) from trusted proxies; "
            "when present it is used instead of X-Forwarded-*.",
            PROXIES,
        ),
    ] = DEFAULTS["forwarded_rfc7239"],
    # -- TLS -----------------------------------------------------------------------------
    ssl_keyfile: Annotated[str | None, _opt("--ssl-keyfile", "SSL key file.", TLS)] = DEFAULTS[
        "ssl_keyfile"
    ],
    ssl_certfile: Annotated[
        str | None, _opt("--ssl-certfile", "SSL certificate file.", TLS)
    ] = DEFAULTS["ssl_certfile"],
    ssl_keyfile_password: Annotated[
        str | None, _opt("--ssl-keyfile-password", "SSL keyfile password.", TLS)
    ] = DEFAULTS["ssl_keyfile_password"],
    ssl_version: Annotated[
        int,
        _opt(
            "--ssl-version",
            "SSL version to use (see stdlib ssl module's PROTOCOL_*).",
            TLS,
            click_type=_SSL_VERSIONS,
        ),
    ] = int(DEFAULTS["ssl_version"]),
    ssl_cert_reqs: Annotated[
        int,
        _opt(
            "--ssl-cert-reqs",
            "Whether client certificate is required (see stdlib ssl module's CERT_*).",
            TLS,
            click_type=_CERT_REQS,
        ),
    ] = int(DEFAULTS["ssl_cert_reqs"]),
    ssl_ca_certs: Annotated[
        str | None, _opt("--ssl-ca-certs", "CA certificates file.", TLS)
    ] = DEFAULTS["ssl_ca_certs"],
    ssl_ciphers: Annotated[
        str | None,
        _opt(
            "--ssl-ciphers",
            "Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.",
            TLS,
        ),
    ] = DEFAULTS["ssl_ciphers"],
    # -- Limits and timeouts -------------------------------------------------------------
    limit_concurrency: Annotated[
        int | None,
        _opt(
            "--limit-concurrency",
            "Maximum number of concurrent connections or tasks to allow, before issuing "
            "HTTP 503 responses.",
            LIMITS,
            min=1,
        ),
    ] = DEFAULTS["limit_concurrency"],
    limit_max_requests: Annotated[
        int | None,
        _opt(
            "--limit-max-requests",
            "Maximum number of requests to service before terminating the process.",
            LIMITS,
            min=1,
        ),
    ] = DEFAULTS["limit_max_requests"],
    limit_max_requests_jitter: Annotated[
        int,
        _opt(
            "--limit-max-requests-jitter",
            "Maximum jitter to add to limit_max_requests, so workers do not restart all at once.",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["limit_max_requests_jitter"],
    timeout_keep_alive: Annotated[
        float,
        _opt(
            "--timeout-keep-alive",
            "Close Keep-Alive connections if no new data is received within this timeout "
            "(in seconds).",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["timeout_keep_alive"],
    timeout_request_header: Annotated[
        float,
        _opt(
            "--timeout-request-header",
            "Seconds a client has to send a whole request head once it starts; then 408 "
            "and close (slowloris).",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["timeout_request_header"],
    timeout_request_body: Annotated[
        float,
        _opt(
            "--timeout-request-body",
            "Seconds a request body may stall between two reads; then 408 (or a close, once "
            "the response has started).",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["timeout_request_body"],
    timeout_graceful_shutdown: Annotated[
        float | None,
        _opt(
            "--timeout-graceful-shutdown",
            "Maximum number of seconds to wait for graceful shutdown.",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["timeout_graceful_shutdown"],
    limit_header_size: Annotated[
        int,
        _opt(
            "--limit-header-size",
            "Largest request header section in bytes; larger -> 431.",
            LIMITS,
            min=1,
        ),
    ] = DEFAULTS["limit_header_size"],
    limit_header_line_size: Annotated[
        int,
        _opt(
            "--limit-header-line-size",
            "Longest single request header line in bytes; longer -> 431.",
            LIMITS,
            min=1,
        ),
    ] = DEFAULTS["limit_header_line_size"],
    limit_header_count: Annotated[
        int,
        _opt("--limit-header-count", "Most request headers allowed; more -> 431.", LIMITS, min=1),
    ] = DEFAULTS["limit_header_count"],
    limit_target_size: Annotated[
        int,
        _opt(
            "--limit-target-size",
            "Longest request target (path and query) in bytes; longer -> 414.",
            LIMITS,
            min=1,
        ),
    ] = DEFAULTS["limit_target_size"],
    limit_body_size: Annotated[
        int | None,
        _opt(
            "--limit-body-size",
            "Largest request body in bytes; larger -> 413. [default: unlimited]",
            LIMITS,
            min=0,
        ),
    ] = DEFAULTS["limit_body_size"],
    # -- Processes and reload ------------------------------------------------------------
    workers: Annotated[
        int | None,
        _opt(
            "--workers",
            "Number of worker processes. Defaults to $WEB_CONCURRENCY or 1. Not valid with "
            "--reload.",
            PROCESSES,
            min=1,
        ),
    ] = DEFAULTS["workers"],
    timeout_worker_healthcheck: Annotated[
        float,
        _opt(
            "--timeout-worker-healthcheck",
            "Maximum number of seconds to wait for a worker to respond to a healthcheck.",
            PROCESSES,
            min=0,
        ),
    ] = DEFAULTS["timeout_worker_healthcheck"],
    reload: Annotated[
        bool,
        _opt(
            "--reload",
            "Enable auto-reload (watchfiles when installed, else polling). Development only.",
            PROCESSES,
        ),
    ] = DEFAULTS["reload"],
    reload_dirs: Annotated[
        list[Path] | None,
        _opt(
            "--reload-dir",
            "Set reload directories explicitly, instead of using the current working "
            "directory. Repeatable.",
            PROCESSES,
            exists=True,
            file_okay=False,
            metavar="DIR",
        ),
    ] = None,
    reload_includes: Annotated[
        list[str] | None,
        _opt(
            "--reload-include",
            "Glob pattern of files to watch (default '*.py'). Repeatable.",
            PROCESSES,
            metavar="GLOB",
        ),
    ] = None,
    reload_excludes: Annotated[
        list[str] | None,
        _opt(
            "--reload-exclude",
            "Glob pattern of files not to watch (default '.*, .py[cod], .sw.*, ~*'). Repeatable.",
            PROCESSES,
            metavar="GLOB",
        ),
    ] = None,
    reload_delay: Annotated[
        float,
        _opt(
            "--reload-delay",
            "Delay between previous and next check if application needs to be reloaded.",
            PROCESSES,
            min=0,
        ),
    ] = DEFAULTS["reload_delay"],
    # -- Uvicorn compatibility -----------------------------------------------------------
    h11_max_incomplete_event_size: Annotated[
        int | None,
        _opt(
            "--h11-max-incomplete-event-size",
            "For h11, the maximum number of bytes to buffer of an incomplete event. "
            "Palfrey does not use h11: see --limit-header-size.",
            COMPAT,
            min=0,
        ),
    ] = DEFAULTS["h11_max_incomplete_event_size"],
    # -- Other ---------------------------------------------------------------------------
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=True,
            help="Display the palfrey version and exit.",
            rich_help_panel=OTHER,
        ),
    ] = False,
) -> None:
    if app is None:
        ctx.fail(
            "Missing argument 'APP': the ASGI application as module:attribute, "
            "e.g. 'palfrey main:app', or try 'palfrey palfrey.demo:app'."
        )
    if not headers:
        headers = _headers_from_env()
    kwargs: dict[str, Any] = {}
    if log_config is not None:
        kwargs["log_config"] = str(log_config)
    run(
        app,
        host=host,
        port=port,
        uds=uds,
        fd=fd,
        loop=loop,
        http=http,
        http2=http2,
        ws=ws,
        ws_max_size=ws_max_size,
        ws_max_queue=ws_max_queue,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        ws_per_message_deflate=ws_per_message_deflate,
        lifespan=lifespan,
        interface=interface,
        reload=reload,
        reload_dirs=[str(d) for d in reload_dirs] if reload_dirs else None,
        reload_includes=list(reload_includes) if reload_includes else None,
        reload_excludes=list(reload_excludes) if reload_excludes else None,
        reload_delay=reload_delay,
        workers=workers,
        env_file=env_file,
        log_level=log_level,
        access_log=access_log,
        access_log_format=access_log_format,
        use_colors=use_colors,
        proxy_headers=proxy_headers,
        server_header=server_header,
        date_header=date_header,
        forwarded_allow_ips=forwarded_allow_ips,
        forwarded_host=forwarded_host,
        forwarded_rfc7239=forwarded_rfc7239,
        root_path=root_path,
        limit_concurrency=limit_concurrency,
        backlog=backlog,
        limit_max_requests=limit_max_requests,
        limit_max_requests_jitter=limit_max_requests_jitter,
        timeout_keep_alive=timeout_keep_alive,
        timeout_request_header=timeout_request_header,
        timeout_request_body=timeout_request_body,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        timeout_worker_healthcheck=timeout_worker_healthcheck,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        ssl_keyfile_password=ssl_keyfile_password,
        ssl_version=ssl_version,
        ssl_cert_reqs=ssl_cert_reqs,
        ssl_ca_certs=ssl_ca_certs,
        ssl_ciphers=ssl_ciphers,
        headers=[tuple(header.split(":", 1)) for header in headers or []],
        factory=factory,
        app_dir=app_dir,
        h11_max_incomplete_event_size=h11_max_incomplete_event_size,
        reset_contextvars=reset_contextvars,
        limit_header_size=limit_header_size,
        limit_header_line_size=limit_header_line_size,
        limit_header_count=limit_header_count,
        limit_target_size=limit_target_size,
        limit_body_size=limit_body_size,
        h2_max_concurrent_streams=h2_max_concurrent_streams,
        h2_max_header_list_size=h2_max_header_list_size,
        h2_initial_window_size=h2_initial_window_size,
        h2_max_frame_size=h2_max_frame_size,
        **kwargs,
    )


def adopt_uvicorn_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """Read ``UVICORN_<NAME>`` as ``PALFREY_<NAME>`` when the latter is unset, so a
    Dockerfile or unit file written for Uvicorn keeps its settings after the rename."""
    for key, value in list(environ.items()):
        if key.startswith("UVICORN_"):
            environ.setdefault(ENV_PREFIX + key[len("UVICORN_") :], value)


def main() -> None:
    """Console-script entry point (``palfrey``)."""
    adopt_uvicorn_env()
    cli()
