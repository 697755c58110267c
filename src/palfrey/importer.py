"""Resolve ``"module:attr.sub"`` import strings (the APP argument, --loop factories)."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(Exception):
    """The import string is malformed, or names a module or attribute that does not exist.

    The message is the part after ``Error loading ASGI app.`` in Uvicorn's log line.
    """


def import_from_string(import_str: Any) -> Any:
    """Return the object named by ``module:attr[.attr...]``; non-strings pass through
    (so ``Config(app=my_app)`` and ``Config(app="pkg:app")`` share one path)."""
    if not isinstance(import_str, str):
        return import_str

    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>".'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        # Only a missing *target* module is the user's typo; a missing dependency inside
        # their module is a real error and keeps its traceback.
        if exc.name != module_str:
            raise exc from None
        raise ImportFromStringError(f'Could not import module "{module_str}".') from None

    obj: Any = module
    try:
        for attr in attrs_str.split("."):
            obj = getattr(obj, attr)
    except AttributeError:
        raise ImportFromStringError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from None
    return obj
