"""Palfrey: a fast, strict ASGI server; a drop-in for Uvicorn."""

from palfrey._version import __version__
from palfrey.config import Config
from palfrey.server import Server, run

__all__ = ["Config", "Server", "__version__", "run"]
