"""``--log-level trace``: log every ASGI message on ``palfrey.asgi``, as Uvicorn does.

Installed only at trace level; bodies and headers are replaced by placeholders so the
log shows the conversation, not the payload.
"""

from __future__ import annotations

import logging
from typing import Any

from palfrey.logging import TRACE_LOG_LEVEL

_PLACEHOLDERS = {
    "body": "<{length} bytes>",
    "bytes": "<{length} bytes>",
    "text": "<{length} chars>",
    "headers": "<...>",
}


def message_with_placeholders(message: Any) -> Any:
    """A copy of an ASGI message (or scope) with payload fields replaced by their size."""
    new = dict(message)
    for key, fmt in _PLACEHOLDERS.items():
        content = message.get(key)
        if content is not None:
            new[key] = fmt.format(length=len(content))
    return new


class MessageLoggerMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.task_counter = 0
        self.logger = logging.getLogger("palfrey.asgi")

    def _trace(self, msg: str, *args: Any) -> None:
        self.logger.log(TRACE_LOG_LEVEL, msg, *args)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.task_counter += 1
        task = self.task_counter
        client = scope.get("client")
        prefix = f"{client[0]}:{client[1]} - ASGI" if client else "ASGI"

        async def inner_receive() -> Any:
            message = await receive()
            self._trace("%s [%d] Receive %s", prefix, task, message_with_placeholders(message))
            return message

        async def inner_send(message: Any) -> None:
            self._trace("%s [%d] Send %s", prefix, task, message_with_placeholders(message))
            await send(message)

        self._trace("%s [%d] Started scope=%s", prefix, task, message_with_placeholders(scope))
        try:
            await self.app(scope, inner_receive, inner_send)
        except BaseException:
            self._trace("%s [%d] Raised exception", prefix, task)
            raise
        else:
            self._trace("%s [%d] Completed", prefix, task)
