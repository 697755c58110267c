"""Palfrey: a fast, strict ASGI server; a drop-in for Uvicorn."""

from palfrey._version import __version__
from palfrey.config import Config
from palfrey.main import run
from palfrey.server import Server

__all__ = ["Config", "Server", "__version__", "run"]
