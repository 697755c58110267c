"""ASGI lifespan (SPEC.md section 4): startup before serving, shutdown after draining.

``--lifespan auto``: an app that raises before completing startup is taken not to speak
lifespan; the server logs that and carries on. ``on``: the same is a startup failure
(exit 3). ``off``: the app never sees a lifespan scope. Either way ``state`` is the dict
the app fills in at startup; each request scope gets a shallow copy of it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from palfrey.config import Config

STATE_TRANSITION_ERROR = "Got invalid state transition on lifespan protocol."

_SEND_TYPES = frozenset(
    {
        "lifespan.startup.complete",
        "lifespan.startup.failed",
        "lifespan.shutdown.complete",
        "lifespan.shutdown.failed",
    }
)


class LifespanOff:
    """--lifespan off: nothing to run; the state stays empty."""

    def __init__(self, config: Config) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class LifespanOn:
    """Drive one long-lived ``app({"type": "lifespan"}, receive, send)`` call."""

    def __init__(self, config: Config) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.logger = logging.getLogger("palfrey.error")
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error_occurred = False
        self.startup_failed = False
        self.shutdown_failed = False
        # Read by the server after startup(): True means exit with STARTUP_FAILURE.
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.logger.info("Waiting for application startup.")
        # Keep a reference: the loop holds tasks weakly, and this one lives until shutdown.
        self._task = asyncio.get_running_loop().create_task(self.main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()

        if self.startup_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occurred:
            # The app does not speak lifespan (auto) or already failed: nothing to tell it.
            return
        self.logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()

        if self.shutdown_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application shutdown complete.")

    async def main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.config.loaded_app(scope, self.receive, self.send)
        except BaseException as exc:
            started = self.startup_event.is_set()
            self.error_occurred = True
            if self.startup_failed or self.shutdown_failed:
                return  # already reported through the failed message
            if started and isinstance(exc, asyncio.CancelledError):
                return  # the loop is being torn down (forced exit): not the app's fault
            if self.config.lifespan == "auto" and not started:
                self.logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                # "on", or an app that did complete startup and then raised: it does speak
                # lifespan, so "unsupported" would mislead; show the traceback.
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            # Whatever happened, nobody may wait forever on an event the app will not set.
            self.startup_event.set()
            self.shutdown_event.set()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        assert kind in _SEND_TYPES, f"Unexpected lifespan message type {kind!r}."
        if kind.startswith("lifespan.startup."):
            assert not self.startup_event.is_set(), STATE_TRANSITION_ERROR
            assert not self.shutdown_event.is_set(), STATE_TRANSITION_ERROR
            self.startup_event.set()
        else:
            assert self.startup_event.is_set(), STATE_TRANSITION_ERROR
            assert not self.shutdown_event.is_set(), STATE_TRANSITION_ERROR
            self.shutdown_event.set()

        if kind.endswith(".failed"):
            if kind == "lifespan.startup.failed":
                self.startup_failed = True
            else:
                self.shutdown_failed = True
            if message.get("message"):
                self.logger.error(message["message"])

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()
