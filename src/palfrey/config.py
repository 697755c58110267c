"""Config: the one place Palfrey's defaults live.

``Config.__init__``'s signature *is* the table of defaults: the CLI reads them from it
(``DEFAULTS["port"]``) and never repeats a value. Every Uvicorn 0.54 ``Config`` parameter is
accepted under the same name so ``uvicorn.Config(...)`` call sites work unchanged; the few
that have no effect in Palfrey say so below.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import json
import logging
import logging.config
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from configparser import RawConfigParser
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

from click import style

from palfrey.importer import ImportFromStringError, import_from_string
from palfrey.logging import LOGGING_CONFIG, TRACE_LOG_LEVEL, AccessLogFormat
from palfrey.protocols.common import is_token

# Exit status of a process that could not start (bad import, bind failure, lifespan
# startup failure): the same number Uvicorn uses, so supervisors can tell it apart.
STARTUP_FAILURE = 3

# How often the server's main loop and the supervisors wake (seconds): to see a stop request,
# the request limit and dead workers, and to keep the cached Date field and the connections'
# timers (checked once a wall-clock second) on time.
TICK_SECONDS = 0.1


class StartupError(Exception):
    """The server cannot start: the app does not import, a socket does not bind, a TLS key
    does not load, lifespan startup failed... ``messages`` are the ERROR lines to log (empty
    when the failure was logged where it happened). Library code raises it; ``palfrey.run``
    and the CLI log the lines and exit with STARTUP_FAILURE (3), as Uvicorn exits."""

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

# Named choices; --loop also takes a "module:factory" import string.
LOOP_CHOICES = ("auto", "asyncio", "uvloop", "none", "zuvloop")
# One HTTP implementation: ours. Uvicorn's names are accepted so existing command lines
# keep working, and mapped to the compiled core with a warning.
HTTP_CHOICES = ("auto", "palfrey", "httptools", "h11", "zttp")
WS_CHOICES = ("auto", "none", "wsproto", "websockets", "websockets-sansio")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")

SSL_PROTOCOL_VERSION: int = ssl.PROTOCOL_TLS_SERVER
# --forwarded-allow-ips when neither it nor $FORWARDED_ALLOW_IPS is set: the local host.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"

logger = logging.getLogger("palfrey.error")


class Config:
    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        loop: str = "auto",
        http: str | type = "auto",
        http2: bool = False,
        ws: str | type = "auto",
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        lifespan: Literal["auto", "on", "off"] = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any]
        | str
        | os.PathLike[str]
        | RawConfigParser
        | IO[Any]
        | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        # Beyond Uvicorn: gunicorn's atoms (logging.AccessLogFormat); None: Uvicorn's line.
        access_log_format: str | None = None,
        use_colors: bool | None = None,
        interface: Literal["auto", "asgi3", "asgi2", "wsgi"] = "auto",
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_delay: float = 0.25,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        workers: int | None = None,
        proxy_headers: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        root_path: str = "",
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        backlog: int = 2048,
        timeout_keep_alive: float = 5,
        # Beyond Uvicorn: a request head must arrive within this many seconds of its first
        # byte (slowloris), and an upload may stall no longer than this between two reads.
        timeout_request_header: float = 10,
        timeout_request_body: float = 30,
        timeout_notify: float = 30,
        timeout_graceful_shutdown: float | None = None,
        timeout_worker_healthcheck: float = 5,
        callback_notify: Callable[..., Awaitable[None]] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = SSL_PROTOCOL_VERSION,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
        ssl_ciphers: str | None = None,
        ssl_context_factory: Callable[..., ssl.SSLContext] | None = None,
        headers: list[tuple[str, str]] | None = None,
        factory: bool = False,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        app_dir: str | None = "",
        # Beyond Uvicorn: limits the compiled core enforces (SPEC.md section 2).
        limit_header_size: int = 65536,  # whole header section -> 431
        limit_header_line_size: int = 8192,  # one header line, as nginx's default -> 431
        limit_header_count: int = 100,  # -> 431
        limit_target_size: int = 8192,  # request target -> 414
        limit_body_size: int | None = None,  # -> 413; None = unlimited, as Uvicorn
        # Beyond Uvicorn: more proxy headers, opt-in, under the --forwarded-allow-ips rule.
        forwarded_host: bool = False,  # X-Forwarded-Host / X-Forwarded-Port
        forwarded_rfc7239: bool = False,  # RFC 7239 Forwarded
        # HTTP/2 (http2=True) limits, advertised in SETTINGS (RFC 9113 6.5.2).
        h2_max_concurrent_streams: int = 100,
        h2_max_header_list_size: int | None = None,  # bytes; None: limit_header_size
        h2_initial_window_size: int = 65535,  # bytes of request body a stream may have unread
        h2_max_frame_size: int = 16384,  # bytes
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = fd
        self.loop = loop
        self.http = http
        self.http2 = http2
        self.lifespan = lifespan
        self.log_config = log_config
        self.log_level = log_level
        self.access_log = access_log
        self.access_log_format = access_log_format
        self.use_colors = use_colors
        self.interface = interface
        self.server_header = server_header
        self.date_header = date_header
        self.root_path = root_path
        self.limit_concurrency = limit_concurrency
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.backlog = backlog
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_request_header = timeout_request_header
        self.timeout_request_body = timeout_request_body
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        # Gunicorn-worker hook, called from the server tick every timeout_notify seconds.
        self.timeout_notify = timeout_notify
        self.callback_notify = callback_notify
        self.headers: list[tuple[str, str]] = list(headers or [])
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.factory = factory
        self.app_dir = app_dir
        self.limit_header_size = limit_header_size
        self.limit_header_line_size = limit_header_line_size
        self.limit_header_count = limit_header_count
        self.limit_target_size = limit_target_size
        self.limit_body_size = limit_body_size
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_max_header_list_size = (
            limit_header_size if h2_max_header_list_size is None else h2_max_header_list_size
        )
        self.h2_initial_window_size = h2_initial_window_size
        self.h2_max_frame_size = h2_max_frame_size

        # Read by protocols/websocket.py (server.py binds them into the ws_protocol factory).
        self.ws = ws
        self.ws_max_size = ws_max_size
        self.ws_max_queue = max(1, ws_max_queue)  # 0 would never let a message wait
        # 0 disables keepalive pings (or waits forever for the pong), as None does.
        self.ws_ping_interval = ws_ping_interval or None
        self.ws_ping_timeout = ws_ping_timeout or None
        self.ws_per_message_deflate = ws_per_message_deflate
        # Process supervision (supervisors/): --reload and --workers. The reload paths and
        # patterns are resolved below, once logging is configured, as Uvicorn's Config does.
        self.reload = reload
        self.reload_dirs: list[Path] = []
        self.reload_dirs_excludes: list[Path] = []
        self.reload_includes: list[str] = []
        self.reload_excludes: list[str] = []
        self.reload_delay = reload_delay
        self.workers = workers or 1
        if workers is None and "WEB_CONCURRENCY" in os.environ:
            self.workers = int(os.environ["WEB_CONCURRENCY"])
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        # Proxy headers (SPEC.md section 6): middleware/proxy_headers.py, wrapped in load().
        self.proxy_headers = proxy_headers
        self.forwarded_host = forwarded_host
        self.forwarded_rfc7239 = forwarded_rfc7239
        self.forwarded_allow_ips: list[str] | str = (
            os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS)
            if forwarded_allow_ips is None
            else forwarded_allow_ips
        )
        # TLS (SPEC.md section 7): load() builds self.ssl, the server listens with it.
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.ssl: ssl.SSLContext | None = None
        # Accepted for Uvicorn compatibility, no effect: h11 is not used (our
        # limit_header_size bounds the same thing).
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars

        self._check_choices()
        self.loaded = False
        self.configure_logging()

        if (reload_dirs or reload_includes or reload_excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, "
                "please refer to documentation."
            )
        if self.should_reload:
            self._resolve_reload_paths(reload_dirs, reload_includes, reload_excludes)

        if env_file is not None:
            self._load_env_file(env_file)

        if self.reload and self.workers > 1:
            logger.warning('"workers" flag is ignored when reloading is enabled.')

    # -- validation -------------------------------------------------------------------

    def _check_choices(self) -> None:
        """Refuse unknown names at construction, with the accepted values in the message,
        instead of failing later with an import error."""
        for name, choices in (
            ("lifespan", LIFESPAN_CHOICES),
            ("interface", INTERFACE_CHOICES),
            ("http", HTTP_CHOICES),
            ("ws", WS_CHOICES),
        ):
            value = getattr(self, name)
            if isinstance(value, str) and value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}.")
        if isinstance(self.loop, str) and self.loop not in LOOP_CHOICES and ":" not in self.loop:
            raise ValueError(
                f"loop={self.loop!r} is not one of {', '.join(LOOP_CHOICES)} "
                "or a 'module:factory' import string."
            )

    def _resolve_reload_paths(
        self,
        dirs: list[str] | str | None,
        includes: list[str] | str | None,
        excludes: list[str] | str | None,
    ) -> None:
        """Uvicorn's reading of --reload-dir/--reload-include/--reload-exclude: a pattern
        that names directories also watches (include) or skips (exclude) them; watched
        directories inside an excluded one are dropped; the default is the current one."""
        given_dirs = _as_list(dirs)
        self.reload_includes, self.reload_dirs = _patterns_and_dirs(_as_list(includes), given_dirs)
        self.reload_excludes, self.reload_dirs_excludes = _patterns_and_dirs(_as_list(excludes), [])
        self.reload_dirs = [
            watched
            for watched in self.reload_dirs
            if not any(
                skipped == watched or skipped in watched.parents
                for skipped in self.reload_dirs_excludes
            )
        ]
        self.reload_includes = [p for p in self.reload_includes if p not in self.reload_excludes]
        if not self.reload_dirs:
            if given_dirs:
                logger.warning(
                    "Provided reload directories %s did not contain valid directories, "
                    "watching current working directory.",
                    given_dirs,
                )
            self.reload_dirs = [Path.cwd()]
        logger.info(
            "Will watch for changes in these directories: %s",
            sorted(str(d) for d in self.reload_dirs),
        )

    # -- derived properties (Uvicorn's names) -----------------------------------------

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        return "2.0" if self.interface == "asgi2" else "3.0"

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1)

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    # -- logging ----------------------------------------------------------------------

    def configure_logging(self) -> None:
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
        if isinstance(self.log_config, os.PathLike):
            self.log_config = os.fspath(self.log_config)

        if isinstance(self.log_config, dict):
            log_config = self.log_config
            if self.use_colors in (True, False):
                # Copy: the caller's dict (often our module-level LOGGING_CONFIG) must
                # not remember one run's colour choice.
                log_config = copy.deepcopy(log_config)
                for name in ("default", "access"):
                    formatter = log_config.get("formatters", {}).get(name)
                    if formatter is not None:
                        formatter["use_colors"] = self.use_colors
            logging.config.dictConfig(log_config)
        elif isinstance(self.log_config, str) and self.log_config.endswith(".json"):
            with open(self.log_config) as file:
                logging.config.dictConfig(json.load(file))
        elif isinstance(self.log_config, str) and self.log_config.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as exc:
                raise ImportError(
                    "Install the PyYAML package to use `--log-config` with YAML files."
                ) from exc
            with open(self.log_config) as file:
                logging.config.dictConfig(yaml.safe_load(file))
        elif self.log_config is not None:
            # .ini and anything else: fileConfig; keep loggers created before this call.
            logging.config.fileConfig(self.log_config, disable_existing_loggers=False)

        if self.log_level is not None:
            level = (
                LOG_LEVELS[self.log_level.lower()]
                if isinstance(self.log_level, str)
                else self.log_level
            )
            for name in ("palfrey.error", "palfrey.access", "palfrey.asgi"):
                logging.getLogger(name).setLevel(level)
        if self.access_log is False:
            # Uvicorn's way, kept for custom configs; the compiled core is also told
            # access_log=False so it does not build the records at all.
            access = logging.getLogger("palfrey.access")
            access.handlers = []
            access.propagate = False

    def _load_env_file(self, env_file: str | os.PathLike[str]) -> None:
        try:
            from dotenv import load_dotenv
        except ImportError as exc:
            raise ImportError("Install the python-dotenv package to use `--env-file`.") from exc
        logger.info("Loading environment from '%s'", env_file)
        load_dotenv(dotenv_path=env_file)

    # -- loading ----------------------------------------------------------------------

    def load_app(self) -> Any:
        """Import the app and return it.

        Raises StartupError with Uvicorn's message when it cannot be imported."""
        # "" (the CLI default) is the current directory: a console script's sys.path[0]
        # is its own bin/ directory, so without this `palfrey main:app` would not find
        # main.py where the user stands.
        if self.app_dir is not None and self.app_dir not in sys.path:
            sys.path.insert(0, self.app_dir)
        try:
            return import_from_string(self.app)
        except ImportFromStringError as exc:
            raise StartupError(f"Error loading ASGI app. {exc}") from None

    def load(self) -> None:
        assert not self.loaded
        self._refuse_unimplemented()
        self.http_protocol_class = self._load_http_protocol()
        self.ssl = self._load_ssl()
        self.encoded_headers = self._encode_headers()
        self.access_log_formatter: AccessLogFormat | None = None
        if self.access_log_format is not None:
            try:
                self.access_log_formatter = AccessLogFormat(self.access_log_format)
            except ValueError as exc:
                raise StartupError(str(exc)) from None

        from palfrey.lifespan import LifespanOff, LifespanOn

        self.lifespan_class = LifespanOff if self.lifespan == "off" else LifespanOn

        self.loaded_app = self._call_factory(self.load_app())
        if self.interface == "auto":
            self.interface = "asgi3" if _looks_like_asgi3(self.loaded_app) else "asgi2"
        # The wrapping order is Uvicorn's: adapter, message logger, proxy headers.
        if self.interface == "wsgi":
            from palfrey.middleware.wsgi import WSGIMiddleware

            self.loaded_app = WSGIMiddleware(self.loaded_app)
        elif self.interface == "asgi2":
            from palfrey.middleware.asgi2 import ASGI2Middleware

            self.loaded_app = ASGI2Middleware(self.loaded_app)
        if self.reset_contextvars:
            from palfrey.middleware.reset_contextvars import ResetContextvarsMiddleware

            self.loaded_app = ResetContextvarsMiddleware(self.loaded_app)
        if logger.getEffectiveLevel() <= TRACE_LOG_LEVEL:
            from palfrey.middleware.message_logger import MessageLoggerMiddleware

            self.loaded_app = MessageLoggerMiddleware(self.loaded_app)
        if self.proxy_headers:
            from palfrey.middleware.proxy_headers import ProxyHeadersMiddleware

            self.loaded_app = ProxyHeadersMiddleware(
                self.loaded_app,
                trusted_hosts=self.forwarded_allow_ips,
                forwarded_host=self.forwarded_host,
                forwarded_rfc7239=self.forwarded_rfc7239,
                unix_socket_path=self._unix_socket_path(),
            )
        self.loaded = True

    def _unix_socket_path(self) -> str | None:
        """The path of the unix socket served, if any (for the proxy trust rule)."""
        if self.uds is not None:
            return self.uds
        if self.fd is not None:
            try:
                with socket.socket(fileno=os.dup(self.fd)) as sock:
                    name = sock.getsockname()
            except OSError:
                return None
            return name if isinstance(name, str) and name else None
        return None

    def _refuse_unimplemented(self) -> None:
        """Fail at startup, loudly, for what this version cannot serve correctly."""
        problems = []
        if self.http2:
            try:
                importlib.import_module("h2.connection")
            except ImportError:
                problems.append("HTTP/2 needs the h2 package: pip install 'palfrey[http2]'")
        if not isinstance(self.http, str):
            problems.append(
                "http= takes a name (auto, palfrey, httptools, h11, zttp); Palfrey cannot run "
                f"a foreign protocol class ({self.http!r})."
            )
        if not isinstance(self.ws, str):
            problems.append(
                "ws= takes a name (auto, none, wsproto, websockets, websockets-sansio); Palfrey "
                f"cannot run a foreign protocol class ({self.ws!r})."
            )
        if problems:
            raise StartupError(*problems)

    def _load_ssl(self) -> ssl.SSLContext | None:
        """The server's SSLContext: from ``ssl_context_factory(config, default_factory)``
        when given (Uvicorn 0.54's signature), else from the ssl_* options. A certificate,
        key or password that does not load is a startup failure (exit 3), not a traceback."""

        def default_factory() -> ssl.SSLContext:
            if not self.ssl_certfile:
                raise RuntimeError(
                    "The default SSL context factory needs ssl_certfile; pass it, or build "
                    "the SSLContext inside ssl_context_factory without calling the default."
                )
            return create_ssl_context(
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_keyfile_password,
                ssl_version=self.ssl_version,
                cert_reqs=self.ssl_cert_reqs,
                ca_certs=self.ssl_ca_certs,
                ciphers=self.ssl_ciphers,
            )

        if self.ssl_context_factory is None and not self.is_ssl:
            return None
        if self.ssl_context_factory is None and not self.ssl_certfile:
            raise StartupError(
                "TLS needs a certificate: --ssl-keyfile was given without --ssl-certfile."
            )
        try:
            if self.ssl_context_factory is not None:
                context = self.ssl_context_factory(self, default_factory)
            else:
                context = default_factory()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise StartupError(f"Error loading the TLS certificate or key: {exc}") from None
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context_factory must return an ssl.SSLContext, got {type(context).__name__}"
            )
        if self.http2:
            context.set_alpn_protocols(["h2", "http/1.1"])  # RFC 9113 3.2: h2 preferred
        return context

    def server_certificate_pem(self) -> str | None:
        """The server's certificate (the first in --ssl-certfile) as PEM, for the ASGI tls
        extension; None without TLS or when it is not in a file."""
        if not self.ssl_certfile:
            return None
        try:
            text = Path(self.ssl_certfile).read_text()
        except (OSError, UnicodeError):
            return None
        end = "-----END CERTIFICATE-----"
        start = text.find("-----BEGIN CERTIFICATE-----")
        stop = text.find(end, start)
        return text[start : stop + len(end)] + "\n" if start >= 0 and stop >= 0 else None

    def _load_http_protocol(self) -> type[asyncio.BaseProtocol]:
        if self.http in ("httptools", "h11", "zttp"):
            logger.warning(
                "--http %s requested: Palfrey always serves HTTP/1.1 with its own "
                "compiled parser (llhttp); using it.",
                self.http,
            )
        try:
            from palfrey._parser import HttpProtocol
        except ImportError as exc:
            # A source checkout without `pip install .`: say what to do.
            raise StartupError(
                f"The compiled core palfrey._parser is not available ({exc}). "
                "Build it with `pip install .` (or `python setup.py build_ext --inplace`)."
            ) from None
        return HttpProtocol

    def _encode_headers(self) -> list[tuple[bytes, bytes]]:
        """Default response headers: ``server: palfrey`` unless switched off or replaced
        by a --header of that name, then the --header values, names lower-cased."""
        encoded = []
        for name, value in self.headers:
            _check_header(name, value)
            encoded.append(
                (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
            )
        if self.server_header and not any(name == b"server" for name, _ in encoded):
            encoded.insert(0, (b"server", b"palfrey"))
        return encoded

    def _call_factory(self, app: Any) -> Any:
        """Uvicorn's factory rule: with --factory, call APP and use the result; without
        it, still try a no-argument call and, if that works, warn and use the result."""
        try:
            produced = app()
        except TypeError as exc:
            if self.factory:
                raise StartupError(f"Error loading ASGI app factory: {exc}") from None
            return app
        if not self.factory:
            logger.warning(
                "ASGI app factory detected. Using it, but please consider setting the "
                "--factory flag explicitly."
            )
        return produced

    # -- event loop -------------------------------------------------------------------

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """The loop factory for ``asyncio.Runner`` (Uvicorn 0.54's name).

        auto = uvloop if importable, else asyncio's selector loop; "none" = asyncio's
        default; "module:factory" = that callable, called with no arguments per loop.
        """
        if self.loop == "none":
            return None
        if self.loop == "asyncio":
            return asyncio.SelectorEventLoop
        if self.loop == "zuvloop":
            # Uvicorn 0.54's experimental loop; not a dependency here: serve on uvloop.
            logger.warning("--loop zuvloop is not supported by Palfrey; using uvloop.")
            self.loop = "uvloop"
        if self.loop in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError as exc:
                if self.loop == "auto":
                    return asyncio.SelectorEventLoop
                raise StartupError(f"Error loading event loop 'uvloop': {exc}") from None
            return uvloop.new_event_loop
        try:
            return import_from_string(self.loop)
        except ImportFromStringError as exc:
            raise StartupError(f"Error loading custom loop setup function. {exc}") from None

    # Uvicorn before 0.36 called it this; 0.54 raises on it. Here it is an alias, so
    # code written against either returns the factory instead of crashing.
    setup_event_loop = get_loop_factory

    # -- sockets ----------------------------------------------------------------------

    def bind_socket(self) -> socket.socket:
        """Bind the listening socket in this (parent) process, for supervisors that hand
        it to children; logs the "running on" line as Uvicorn does here.

        Raises StartupError when the address cannot be bound."""
        if self.uds is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.uds)
                os.chmod(self.uds, 0o666)  # any local user may connect, as Uvicorn
            except OSError as exc:
                sock.close()
                raise StartupError(str(exc)) from None
            running = {"uds": self.uds}
        elif self.fd is not None:
            sock = socket_from_fd(self.fd)
            running = {"sockname": sock.getsockname()}
        else:
            family = socket.AF_INET6 if self.host and ":" in self.host else socket.AF_INET
            sock = socket.socket(family=family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise StartupError(str(exc)) from None
            running = {"port": sock.getsockname()[1]}
        # Listen here, not only in the children: connections that arrive while the workers
        # (or a reloaded child) start wait in the backlog instead of being refused. And
        # before the "running on" line, which clients (and tests) take as the go-ahead.
        sock.listen(self.backlog)
        log_running(self, **running)
        sock.set_inheritable(True)
        return sock


def create_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    password: str | None,
    ssl_version: int,
    cert_reqs: int,
    ca_certs: str | os.PathLike[str] | None,
    ciphers: str | None,
) -> ssl.SSLContext:
    """The server context the ssl_* options describe (Uvicorn's function, same arguments)."""
    context = ssl.SSLContext(ssl_version)
    context.load_cert_chain(certfile, keyfile, (lambda: password) if password else None)
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if ca_certs:
        context.load_verify_locations(ca_certs)
    if ciphers:
        context.set_ciphers(ciphers)
    return context


# --reload's file filter (supervisors/reload.py), as Uvicorn's: Python sources are watched;
# dotfiles, compiled Python, editor swap files and backups are not.
RELOAD_DEFAULT_INCLUDES = ("*.py",)
RELOAD_DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")


def _as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(dict.fromkeys(value))


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name too long to be a path
        return False


def _patterns_and_dirs(patterns: list[str], dirs: list[str]) -> tuple[list[str], list[Path]]:
    """The patterns, and the directories: ``dirs`` plus those the patterns name (literally,
    or as a glob relative to the current directory), resolved, outermost only."""
    found = [Path(d) for d in dirs]
    for pattern in patterns:
        if pattern == ".*":
            continue  # as a directory glob it would watch every hidden directory
        if is_dir(Path(pattern)):
            found.append(Path(pattern))
        elif pattern and not Path(pattern).is_absolute():
            try:
                found.extend(match for match in Path.cwd().glob(pattern) if is_dir(match))
            except ValueError:
                pass  # not a valid directory glob (e.g. "a**"): a file pattern only
    resolved = {path.resolve() for path in found if is_dir(path)}
    outermost = [d for d in resolved if not any(other in d.parents for other in resolved)]
    return list(dict.fromkeys(patterns)), sorted(outermost)


# Every Config parameter's default, read from the signature above, so the CLI can use
# them without restating any value.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        name: param.default
        for name, param in inspect.signature(Config.__init__).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
)


def socket_from_fd(fd: int) -> socket.socket:
    """Wrap an inherited listening fd. Unlike ``socket.fromfd(fd, AF_UNIX, ...)`` (what
    Uvicorn does), letting the kernel report the family keeps TCP peer addresses right."""
    return socket.socket(fileno=os.dup(fd))


def log_running(
    config: Config,
    *,
    port: int | None = None,
    uds: str | None = None,
    sockname: Any = None,
) -> None:
    """``Palfrey running on ... (Press CTRL+C to quit)``, in Uvicorn's three shapes."""
    if uds is not None:
        logger.info("Palfrey running on unix socket %s (Press CTRL+C to quit)", uds)
        return
    if sockname is not None:
        logger.info("Palfrey running on socket %s (Press CTRL+C to quit)", sockname)
        return
    host = "0.0.0.0" if config.host is None else config.host
    addr_format = "%s://[%s]:%d" if ":" in host else "%s://%s:%d"
    scheme = "https" if config.is_ssl else "http"
    logger.info(
        f"Palfrey running on {addr_format} (Press CTRL+C to quit)",
        scheme,
        host,
        port,
        extra={
            "color_message": "Palfrey running on "
            + style(addr_format, bold=True)
            + " (Press CTRL+C to quit)"
        },
    )


def _check_header(name: str, value: str) -> None:
    """Refuse a --header that would corrupt every response (header injection)."""
    name = name.strip()
    if not is_token(name):
        raise ValueError(f"Invalid header name {name!r}: must be an RFC 9110 token.")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"Invalid value for header {name!r}: CR, LF and NUL are not allowed.")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"Invalid value for header {name!r}: not latin-1.") from None


def _looks_like_asgi3(app: Any) -> bool:
    """Uvicorn's interface=auto rule: ASGI3 apps are coroutine functions (or objects
    whose __call__ is one); a class with __await__ is an ASGI3 class. Checking the object
    itself first also recognises functools.partial of a coroutine function, which
    Uvicorn's rule would take for ASGI2."""
    if inspect.iscoroutinefunction(app):
        return True
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.isfunction(app):
        return False
    return callable(app) and inspect.iscoroutinefunction(type(app).__call__)
