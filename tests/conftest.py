"""Fixtures and hooks only; the helpers are in tests/support/ (its __init__ maps the package).

Servers run as subprocesses (``python -m palfrey tests.apps:NAME --host 127.0.0.1 --port 0``)
and are talked to over real sockets. ``PALFREY_TEST_TARGET=uvicorn`` runs the same suite
against Uvicorn; tests of behaviour where Palfrey differs on purpose are marked
``palfrey_only`` and skipped there. Every test is bounded by the one timeout in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.common import IS_PALFREY
from tests.support.server import ServerProcess, servers_stopped_at_teardown

# --loop values the loop-sensitive tests run on: "auto" is what users get (uvloop when it is
# installed); asyncio's BufferedProtocol path differs from uvloop's.
LOOPS = ("auto", "asyncio")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_uvicorn = pytest.mark.skip(reason="Palfrey-specific behaviour (beyond Uvicorn)")
    for item in items:
        if not IS_PALFREY and item.get_closest_marker("palfrey_only"):
            item.add_marker(skip_uvicorn)


@pytest.fixture
def server_factory() -> Iterator:
    """``server_factory(app="tests.apps:app", *args, env=None, port=None)`` starts a
    ServerProcess inside one test; all are stopped at teardown."""
    yield from servers_stopped_at_teardown()


@pytest.fixture(scope="module")
def module_server_factory() -> Iterator:
    """Like server_factory but the servers live for the whole module."""
    yield from servers_stopped_at_teardown()


@pytest.fixture(scope="module")
def server(module_server_factory) -> ServerProcess:
    """The default server (tests.apps:app, default options), one per test module."""
    return module_server_factory("tests.apps:app")


@pytest.fixture(scope="session")
def shared_server() -> Iterator:
    """``shared_server(app, *args)``: one server per distinct (app, args) for the whole session
    (of each xdist worker), started on first use, stopped at the end."""
    bodies = servers_stopped_at_teardown()
    make = next(bodies)
    started: dict[tuple[str, ...], ServerProcess] = {}

    def get(app: str, *args: str) -> ServerProcess:
        if (app, *args) not in started:
            started[(app, *args)] = make(app, *args)
        return started[(app, *args)]

    yield get
    next(bodies, None)  # stops them


@pytest.fixture(scope="module", params=LOOPS, ids=lambda loop: f"loop-{loop}")
def loop_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def any_loop_server(request: pytest.FixtureRequest, loop_name, shared_server) -> ServerProcess:
    """tests.apps:app on each of LOOPS in turn (the "auto" one is the module's ``server``)."""
    if loop_name == "auto":
        return request.getfixturevalue("server")
    return shared_server("tests.apps:app", "--loop", loop_name)


@pytest.fixture(scope="module")
def any_loop_scope_server(loop_name, shared_server) -> ServerProcess:
    """tests.apps:scope_app on each of LOOPS in turn."""
    return shared_server("tests.apps:scope_app", "--loop", loop_name)
