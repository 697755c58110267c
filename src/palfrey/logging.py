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
import logging
import sys
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
