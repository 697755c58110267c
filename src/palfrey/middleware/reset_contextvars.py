"""``--reset-contextvars``: run each request in a fresh ``contextvars.Context``.

Hides context variables set during lifespan startup from request handlers, as Uvicorn's
option does. Costs one extra task per request, so it is only installed when asked for.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any


class ResetContextvarsMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        # Awaiting the task forwards a cancellation of this one (graceful-shutdown
        # timeout) to it.
        await asyncio.get_running_loop().create_task(
            self.app(scope, receive, send), context=contextvars.Context()
        )
