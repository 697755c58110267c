"""The ``palfrey`` command: Uvicorn's flags, Palfrey's limits, ``PALFREY_*`` env vars.

Every default comes from ``Config``'s signature (``DEFAULTS[...]``); none is written here.
Each option can also be set as ``PALFREY_<NAME>`` (``--log-level`` -> ``PALFREY_LOG_LEVEL``);
the command line wins over the environment.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Annotated, Any

import typer

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
from palfrey.server import run

ENV_PREFIX = "PALFREY_"


def _choice(values: tuple[str, ...] | list[str], *, lower: bool = False) -> Any:
    """A parser accepting one of ``values``. Our own message rather than the typed-choice
    one, so it reads the same under every typer version: one line, all accepted values."""

    def parse(value: str) -> str:
        wanted = value.lower() if lower else value
        if wanted in values:
            return wanted
        accepted = ", ".join(repr(v) for v in values)
        raise typer.BadParameter(f"{value!r} is not one of {accepted}.")

    return parse


def _metavar(values: tuple[str, ...] | list[str]) -> str:
    return "[" + "|".join(values) + "]"


def _env(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def _parse_loop(value: str) -> str:
    if value in LOOP_CHOICES or (":" in value and all(value.partition(":")[::2])):
        return value
    accepted = ", ".join(repr(choice) for choice in LOOP_CHOICES)
    raise typer.BadParameter(
        f"{value!r} is not one of {accepted} or a 'module:factory' import string."
    )


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


def _opt(flag: str, help: str, **kwargs: Any) -> Any:
    """An option that can also come from ``PALFREY_<NAME>``."""
    name = flag.split("/")[0].lstrip("-")
    kwargs.setdefault("envvar", _env(name))
    return typer.Option(flag, help=help, show_envvar=kwargs["envvar"] is not None, **kwargs)


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
    context_settings={"help_option_names": ["-h", "--help"]},
)


@cli.command(help="Run the ASGI application APP (an import string, e.g. main:app).")
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
    host: Annotated[str, _opt("--host", "Bind socket to this host.")] = DEFAULTS["host"],
    port: Annotated[
        int,
        _opt(
            "--port",
            "Bind socket to this port. If 0, an available port will be picked.",
            min=0,
            max=65535,
        ),
    ] = DEFAULTS["port"],
    uds: Annotated[str | None, _opt("--uds", "Bind to a UNIX domain socket.")] = DEFAULTS["uds"],
    fd: Annotated[
        int | None, _opt("--fd", "Bind to socket from this file descriptor.", min=0)
    ] = DEFAULTS["fd"],
    loop: Annotated[
        str,
        _opt(
            "--loop",
            "Event loop: auto (uvloop if installed), asyncio, uvloop, none, or module:factory.",
            parser=_parse_loop,
            metavar="[auto|asyncio|uvloop|none|MODULE:FACTORY]",
        ),
    ] = DEFAULTS["loop"],
    http: Annotated[
        str,
        _opt(
            "--http",
            "HTTP implementation. httptools and h11 are accepted and mapped to Palfrey's own.",
            parser=_choice(HTTP_CHOICES),
            metavar=_metavar(HTTP_CHOICES),
        ),
    ] = DEFAULTS["http"],
    ws: Annotated[
        str,
        _opt(
            "--ws",
            "WebSocket implementation (stored; WebSocket support lands in a later version).",
            parser=_choice(WS_CHOICES),
            metavar=_metavar(WS_CHOICES),
        ),
    ] = DEFAULTS["ws"],
    lifespan: Annotated[
        str,
        _opt(
            "--lifespan",
            "Lifespan implementation.",
            parser=_choice(LIFESPAN_CHOICES),
            metavar=_metavar(LIFESPAN_CHOICES),
        ),
    ] = DEFAULTS["lifespan"],
    interface: Annotated[
        str,
        _opt(
            "--interface",
            "Select ASGI3, ASGI2, or WSGI as the application interface.",
            parser=_choice(INTERFACE_CHOICES),
            metavar=_metavar(INTERFACE_CHOICES),
        ),
    ] = DEFAULTS["interface"],
    env_file: Annotated[
        Path | None,
        _opt("--env-file", "Environment configuration file.", exists=True, dir_okay=False),
    ] = DEFAULTS["env_file"],
    log_config: Annotated[
        Path | None,
        _opt(
            "--log-config",
            "Logging configuration file. Supported formats: .ini, .json, .yaml.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,  # None = Config's default LOGGING_CONFIG dict
    log_level: Annotated[
        str | None,
        _opt(
            "--log-level",
            "Log level. [default: info]",
            parser=_choice(list(LOG_LEVELS), lower=True),
            metavar=_metavar(list(LOG_LEVELS)),
        ),
    ] = DEFAULTS["log_level"],
    access_log: Annotated[
        bool, _opt("--access-log/--no-access-log", "Enable/Disable access log.")
    ] = DEFAULTS["access_log"],
    use_colors: Annotated[
        bool | None,
        _opt(
            "--use-colors/--no-use-colors",
            "Enable/Disable colorized logging. [default: on a terminal]",
        ),
    ] = DEFAULTS["use_colors"],
    proxy_headers: Annotated[
        bool,
        _opt(
            "--proxy-headers/--no-proxy-headers",
            "Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote "
            "address info (stored; the proxy-headers middleware lands in a later version).",
        ),
    ] = DEFAULTS["proxy_headers"],
    server_header: Annotated[
        bool, _opt("--server-header/--no-server-header", "Enable/Disable default Server header.")
    ] = DEFAULTS["server_header"],
    date_header: Annotated[
        bool, _opt("--date-header/--no-date-header", "Enable/Disable default Date header.")
    ] = DEFAULTS["date_header"],
    forwarded_allow_ips: Annotated[
        str | None,
        _opt(
            "--forwarded-allow-ips",
            "Comma separated list of IP Addresses, IP Networks, or literals to trust with proxy "
            "headers. Defaults to $FORWARDED_ALLOW_IPS or '127.0.0.1,::1'. '*' trusts everything.",
        ),
    ] = DEFAULTS["forwarded_allow_ips"],
    root_path: Annotated[
        str,
        _opt(
            "--root-path",
            "Set the ASGI 'root_path' for applications submounted below a given URL path.",
        ),
    ] = DEFAULTS["root_path"],
    limit_concurrency: Annotated[
        int | None,
        _opt(
            "--limit-concurrency",
            "Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
            min=1,
        ),
    ] = DEFAULTS["limit_concurrency"],
    backlog: Annotated[
        int, _opt("--backlog", "Maximum number of connections to hold in backlog.", min=0)
    ] = DEFAULTS["backlog"],
    limit_max_requests: Annotated[
        int | None,
        _opt(
            "--limit-max-requests",
            "Maximum number of requests to service before terminating the process.",
            min=1,
        ),
    ] = DEFAULTS["limit_max_requests"],
    limit_max_requests_jitter: Annotated[
        int,
        _opt(
            "--limit-max-requests-jitter",
            "Maximum jitter to add to limit_max_requests, so workers do not restart all at once.",
            min=0,
        ),
    ] = DEFAULTS["limit_max_requests_jitter"],
    timeout_keep_alive: Annotated[
        float,
        _opt(
            "--timeout-keep-alive",
            "Close Keep-Alive connections if no new data is received within this timeout (in seconds).",
            min=0,
        ),
    ] = DEFAULTS["timeout_keep_alive"],
    timeout_graceful_shutdown: Annotated[
        float | None,
        _opt(
            "--timeout-graceful-shutdown",
            "Maximum number of seconds to wait for graceful shutdown.",
            min=0,
        ),
    ] = DEFAULTS["timeout_graceful_shutdown"],
    headers: Annotated[
        list[str] | None,
        _opt(
            "--header",
            "Custom default HTTP response header as Name:Value; repeatable. "
            "In $PALFREY_HEADER, separate several with newlines.",
            parser=_parse_header,
            envvar=None,
            metavar="NAME:VALUE",
        ),
    ] = None,
    factory: Annotated[
        bool,
        _opt("--factory", "Treat APP as an application factory, i.e. a () -> <ASGI app> callable."),
    ] = DEFAULTS["factory"],
    app_dir: Annotated[
        str,
        _opt(
            "--app-dir",
            "Look for APP in the specified directory, by adding this to the PYTHONPATH. "
            "Defaults to the current working directory.",
        ),
    ] = DEFAULTS["app_dir"],
    limit_header_size: Annotated[
        int,
        _opt(
            "--limit-header-size", "Largest request header section in bytes; larger -> 431.", min=1
        ),
    ] = DEFAULTS["limit_header_size"],
    limit_header_line_size: Annotated[
        int,
        _opt(
            "--limit-header-line-size",
            "Longest single request header line in bytes; longer -> 431.",
            min=1,
        ),
    ] = DEFAULTS["limit_header_line_size"],
    limit_header_count: Annotated[
        int,
        _opt("--limit-header-count", "Most request headers allowed; more -> 431.", min=1),
    ] = DEFAULTS["limit_header_count"],
    limit_target_size: Annotated[
        int,
        _opt(
            "--limit-target-size",
            "Longest request target (path and query) in bytes; longer -> 414.",
            min=1,
        ),
    ] = DEFAULTS["limit_target_size"],
    limit_body_size: Annotated[
        int | None,
        _opt(
            "--limit-body-size",
            "Largest request body in bytes; larger -> 413. [default: unlimited]",
            min=0,
        ),
    ] = DEFAULTS["limit_body_size"],
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=True,
            help="Display the palfrey version and exit.",
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
        ws=ws,
        lifespan=lifespan,
        interface=interface,
        env_file=env_file,
        log_level=log_level,
        access_log=access_log,
        use_colors=use_colors,
        proxy_headers=proxy_headers,
        server_header=server_header,
        date_header=date_header,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        limit_concurrency=limit_concurrency,
        backlog=backlog,
        limit_max_requests=limit_max_requests,
        limit_max_requests_jitter=limit_max_requests_jitter,
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        headers=[tuple(header.split(":", 1)) for header in headers or []],
        factory=factory,
        app_dir=app_dir,
        limit_header_size=limit_header_size,
        limit_header_line_size=limit_header_line_size,
        limit_header_count=limit_header_count,
        limit_target_size=limit_target_size,
        limit_body_size=limit_body_size,
        **kwargs,
    )


def main() -> None:
    """Console-script entry point (``palfrey``)."""
    cli()
