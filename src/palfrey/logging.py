"""Log formatting: Uvicorn's line shapes under Palfrey's logger names.

Loggers:
  ``palfrey.error``  server messages (startup, shutdown, warnings, tracebacks)
  ``palfrey.access`` one record per response; ``record.args`` is
                     ``(client_addr, method, full_path, http_version, status_code)``
                     exactly as Uvicorn's, so formatters written for Uvicorn keep working
  ``palfrey.asgi``   ASGI message tracing at ``--log-level trace``
"""

from __future__ import annotations

import http
import json
import logging
import os
import sys
import time
from copy import copy
from typing import Any, Literal

from click import style  # ANSI styling, used only when colours are on

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

_LEVEL_COLOURS = {
    TRACE_LOG_LEVEL: "blue",
    logging.DEBUG: "cyan",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bright_red",
}

# Status class (first digit) -> colour, for the access line.
_STATUS_COLOURS = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}


def _stream_is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class ColourizedFormatter(logging.Formatter):
    """Adds ``%(levelprefix)s``: the level name and a colon padded to 9 columns
    (``INFO:     ``, ``WARNING:  ``), coloured when ``use_colors`` is on.

    With colours on, a record's ``extra={"color_message": ...}`` replaces its message, so
    the server can highlight parts of a line without changing the plain text.
    """

    # The stream this formatter's handler writes to in the default config; only used to
    # decide colours when ``use_colors`` is None (auto).
    auto_color_stream = "stdout"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        if use_colors in (True, False):
            self.use_colors = bool(use_colors)
        else:
            self.use_colors = _stream_is_tty(getattr(sys, self.auto_color_stream))
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def _levelprefix(self, record: logging.LogRecord) -> str:
        name = record.levelname
        # Pad on the plain name so coloured and plain lines line up the same.
        pad = " " * (8 - len(name))
        if self.use_colors:
            colour = _LEVEL_COLOURS.get(record.levelno)
            if colour:
                name = style(name, fg=colour)
        return f"{name}:{pad}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Work on a copy: other handlers of the same record must see it unchanged.
        rec = copy(record)
        if self.use_colors and "color_message" in rec.__dict__:
            rec.msg = rec.__dict__["color_message"]
            rec.__dict__["message"] = rec.getMessage()
        rec.__dict__["levelprefix"] = self._levelprefix(rec)
        return super().formatMessage(rec)


class DefaultFormatter(ColourizedFormatter):
    """Formatter of the ``palfrey.error`` lines (written to stderr)."""

    auto_color_stream = "stderr"


class AccessFormatter(ColourizedFormatter):
    """Formatter of the ``palfrey.access`` lines (written to stdout).

    Provides ``%(client_addr)s``, ``%(request_line)s`` (``GET /?a=1 HTTP/1.1``) and
    ``%(status_code)s`` (``200 OK``) from the record's args.
    """

    auto_color_stream = "stdout"

    def get_status_code(self, status_code: int) -> str:
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:  # a code the stdlib does not name, e.g. 599
            phrase = ""
        text = f"{status_code} {phrase}"
        if self.use_colors:
            colour = _STATUS_COLOURS.get(status_code // 100)
            if colour:
                text = style(text, fg=colour)
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:
        if getattr(record, "access_log_format", False):
            return record.getMessage()  # --access-log-format: the line as the format made it
        rec = copy(record)
        client_addr, method, full_path, http_version, status_code = rec.args  # type: ignore[misc]
        request_line = f"{method} {full_path} HTTP/{http_version}"
        if self.use_colors:
            request_line = style(request_line, bold=True)
        rec.__dict__.update(
            client_addr=client_addr,
            request_line=request_line,
            status_code=self.get_status_code(int(status_code)),
        )
        return super().formatMessage(rec)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``;
    for Uvicorn-shaped access records also ``client``, ``method``, ``path``,
    ``http_version`` and ``status``; ``exception`` with a traceback. For --log-config
    (``"()": "palfrey.logging.JSONFormatter"``), e.g. for a log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (record.name == "palfrey.access" and isinstance(record.args, tuple)
                and len(record.args) == 5):
            client, method, path, http_version, status = record.args
            entry.update(client=client, method=method, path=path,
                         http_version=http_version, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class AccessLogFormat:
    """``--access-log-format``: gunicorn's access-log atoms, rendered into the line.

    ``%(h)s`` remote address, ``%(l)s`` "-", ``%(u)s`` user ("-"), ``%(t)s`` time
    (``[01/Dec/2026:10:00:00 +0000]``), ``%(r)s`` request line, ``%(m)s`` method, ``%(U)s``
    path, ``%(q)s`` query string, ``%(H)s`` protocol, ``%(s)s`` status, ``%(B)s`` response
    body bytes, ``%(b)s`` the same or "-" for none, ``%(f)s`` referer, ``%(a)s`` user agent,
    ``%(T)s`` request time in whole seconds, ``%(M)s`` in milliseconds, ``%(D)s`` in
    microseconds, ``%(L)s`` in decimal seconds, ``%(p)s`` process id, ``%({name}i)s`` a
    request header, ``%({name}o)s`` a response header, ``%({name}e)s`` an environment
    variable. Unknown atoms and absent values render as "-". The request time runs from
    the first byte of the request head to the last byte of the response.

    Raises ValueError for a format that cannot be rendered."""

    _TIMED = ("%(T)s", "%(M)s", "%(D)s", "%(L)s")

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.timed = any(atom in fmt for atom in self._TIMED)  # the core stamps requests
        try:
            fmt % _Atoms({}, [], [])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{fmt!r} is not an access-log format: {exc}") from None

    def render(
        self,
        scope: dict,
        status: int,
        response_headers: Any,
        response_bytes: int,
        seconds: float | None,
    ) -> str:
        client = scope.get("client")
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope.get("path", "")
        method = scope.get("method", "GET")  # a WebSocket handshake is a GET
        protocol = f"HTTP/{scope.get('http_version', '1.1')}"
        target = path + ("?" + query if query else "")
        atoms = {
            "h": client[0] if client else "-",
            "l": "-",
            "u": "-",
            "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            "r": f"{method} {target} {protocol}",
            "m": method,
            "U": path,
            "q": query,
            "H": protocol,
            "s": str(status),
            "B": str(response_bytes),
            "b": str(response_bytes) if response_bytes else "-",
            "p": f"<{os.getpid()}>",
        }
        if seconds is not None:
            atoms.update(
                T=str(int(seconds)),
                M=str(int(seconds * 1_000)),
                D=str(int(seconds * 1_000_000)),
                L=f"{seconds:.6f}",
            )
        return self.fmt % _Atoms(atoms, scope.get("headers", ()), response_headers or ())


class _Atoms(dict):
    """gunicorn's safe atoms: "-" for what is unknown; ``{name}i``, ``{name}o`` and
    ``{name}e`` looked up in the request headers, response headers and environment."""

    def __init__(self, atoms: dict, request_headers: Any, response_headers: Any) -> None:
        super().__init__(atoms)
        self.request_headers = request_headers
        self.response_headers = response_headers

    def __missing__(self, key: str) -> str:
        if key in ("f", "a"):
            return self.__missing__("{referer}i" if key == "f" else "{user-agent}i")
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2].lower(), key[-1]
            if kind == "e":
                return os.environ.get(key[1:-2], "-")
            headers = {"i": self.request_headers, "o": self.response_headers}.get(kind)
            if headers is not None:
                wanted = name.encode("latin-1")
                for field, value in headers:
                    if bytes(field).lower() == wanted:
                        return bytes(value).decode("latin-1")
        return "-"


# The default logging setup (``logging.config.dictConfig``). Config copies it before
# applying --use-colors, so this module-level dict is never mutated.
LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "palfrey.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "palfrey.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "palfrey": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "palfrey.error": {"level": "INFO"},
        "palfrey.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}
