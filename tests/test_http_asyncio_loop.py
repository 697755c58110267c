"""A representative subset of the wire tests again, on the plain asyncio loop (--loop asyncio).

The rest of the suite runs on the default loop (uvloop when installed); the buffered read path
is taken differently by the two loops, so the parser-heavy checks run on both.
"""

from __future__ import annotations

import pytest

from tests import (
    test_http_basic as basic,
)
from tests import (
    test_http_body as body,
)
from tests import (
    test_http_errors as errors,
)
from tests import (
    test_http_fragmentation as frag,
)
from tests import (
    test_http_keepalive_pipelining as ka,
)
from tests import (
    test_http_random as rnd,
)
from tests import (
    test_http_strict as strict,
)


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("tests.apps:app", "--loop", "asyncio")


@pytest.fixture(scope="module")
def scope_server(module_server_factory):
    return module_server_factory("tests.apps:scope_app", "--loop", "asyncio")


@pytest.fixture(scope="module")
def ka_server(module_server_factory):
    return module_server_factory("tests.apps:app", "--loop", "asyncio", "--timeout-keep-alive", "1")


def test_scope_basic(server):
    basic.test_scope_basic(server)


def test_chunked_response_framing(server):
    basic.test_chunked_response_framing(server)


def test_head_keeps_headers_drops_body(server):
    basic.test_head_keeps_headers_drops_body(server)


def test_slow_reader_large_response(server):
    basic.test_slow_reader_large_response(server)


def test_pipelining_100_in_order(server):
    ka.test_pipelining_100_in_order(server)


def test_pipelining_large_bodies(server):
    ka.test_pipelining_large_bodies(server)


def test_keep_alive_timeout_closes_idle(ka_server):
    ka.test_keep_alive_timeout_closes_idle(ka_server)


def test_large_chunked_body_raw(server):
    body.test_large_chunked_body_raw(server)


def test_large_body_slow_reader(server):
    body.test_large_body_slow_reader(server)


def test_expect_continue_when_app_reads(server):
    body.test_expect_continue_when_app_reads(server, b"100-continue")


def test_disconnect_after_body(server):
    body.test_disconnect_after_body(server)


def test_exception_before_start_500(server):
    errors.test_exception_before_start_500(server)


@pytest.mark.parametrize(
    "name,data", strict.BAD_REQUESTS[:12], ids=[b[0] for b in strict.BAD_REQUESTS[:12]]
)
def test_bad_request_400(server, name, data):
    strict.test_bad_request_400(server, name, data)


@pytest.mark.parametrize("request_bytes", [frag.GET_REQ, frag.CHUNKED_REQ], ids=["get", "chunked"])
def test_split_at_every_byte(scope_server, request_bytes):
    frag.test_split_at_every_byte(scope_server, request_bytes)


def test_random_pipelined_batches(scope_server):
    rnd.test_random_pipelined_batches(scope_server)


def test_random_big_requests_fragmented(scope_server):
    rnd.test_random_big_requests_fragmented(scope_server)
