"""The --h2-* limits in force (SPEC.md section 8): a stream over MAX_CONCURRENT_STREAMS is
refused (RFC 9113 5.1.2), a header list over MAX_HEADER_LIST_SIZE is not served, a frame over
MAX_FRAME_SIZE is a FRAME_SIZE_ERROR (RFC 9113 4.2); the other streams and connections are
served."""

from __future__ import annotations

import pytest

from tests.support.h2 import (
    COMPRESSION_ERROR,
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RawH2,
    assert_served,
    data_frame,
    h2_servers,  # noqa: F401 - fixture
    module_h2_servers,  # noqa: F401 - fixture
    palfrey_h2_only,
    request_headers,
)

pytestmark = [pytest.mark.http2, pytest.mark.palfrey_only]


def test_stream_over_max_concurrent_streams_refused(h2_servers):  # noqa: F811
    server = h2_servers("--h2-max-concurrent-streams", "3")
    with RawH2(server.port) as raw:
        assert raw.setting(MAX_CONCURRENT_STREAMS) == 3
        # Four streams at once (h2 itself would refuse to open the fourth).
        raw.send([raw.headers_frame(sid, request_headers(f"/sleep?id=mcs{sid}&t=1"))
                  for sid in (1, 3, 5, 7)])
        raw.wait_for(lambda: 7 in raw.resets or raw.goaway is not None)
        if raw.goaway is not None:
            assert raw.goaway.error_code == PROTOCOL_ERROR, raw.describe()
        else:
            assert raw.resets[7] in (REFUSED_STREAM, PROTOCOL_ERROR), raw.describe()
            # The three within the limit are served.
            assert raw.wait_for(lambda: all(raw.stream_done(s) for s in (1, 3, 5))), \
                raw.describe()
            assert [raw.status(s) for s in (1, 3, 5)] == [200, 200, 200], raw.describe()
        assert raw.status(7) is None
    assert_served(server)


# Hypercorn 0.18 advertises 8192 but served a 12 KB header list (its decoder keeps h2's
# 64 KiB default).
@palfrey_h2_only
def test_header_list_over_the_limit_not_served(h2_servers):  # noqa: F811
    server = h2_servers("--h2-max-header-list-size", "8192")
    with RawH2(server.port) as raw:
        assert raw.setting(MAX_HEADER_LIST_SIZE) == 8192
        raw.send(raw.headers_frame(1, request_headers(extra=[(b"x-big", b"b" * 4000)])))
        assert raw.wait_for(lambda: raw.stream_done(1)), raw.describe()
        assert raw.status(1) == 200, raw.describe()
        raw.send(raw.headers_frame(3, request_headers(extra=[(b"x-big", b"b" * 12000)])))
        raw.wait_for(lambda: raw.stream_done(3) or raw.goaway is not None)
        # 431 (RFC 9113 10.5.1), or a stream or connection error: never served.
        assert raw.status(3) in (None, 431), raw.describe()
        assert (raw.status(3) == 431 or 3 in raw.resets
                or (raw.goaway is not None and raw.goaway.error_code in
                    (PROTOCOL_ERROR, ENHANCE_YOUR_CALM, COMPRESSION_ERROR))), raw.describe()
    assert_served(server)


# Hypercorn 0.18 does not advertise its h2_max_inbound_frame_size.
@palfrey_h2_only
def test_frame_over_max_frame_size_is_a_frame_size_error(h2_servers):  # noqa: F811
    server = h2_servers("--h2-max-frame-size", "32768")
    with RawH2(server.port) as raw:
        assert raw.setting(MAX_FRAME_SIZE) == 32768
        # 20000 bytes in one frame: over the 16384 default, under the advertised size.
        raw.send([raw.headers_frame(1, request_headers("/echo", "POST"), end_stream=False),
                  data_frame(1, b"d" * 20000, end_stream=True)])
        assert raw.wait_for(lambda: raw.stream_done(1)), raw.describe()
        assert raw.status(1) == 200 and bytes(raw.data[1]) == b"d" * 20000, raw.describe()
        raw.send([raw.headers_frame(3, request_headers("/echo", "POST"), end_stream=False),
                  data_frame(3, b"d" * 40000, end_stream=True)])
        raw.wait_for(lambda: raw.goaway is not None or raw.eof)
        assert raw.status(3) is None, raw.describe()
        assert raw.goaway is not None and raw.goaway.error_code == FRAME_SIZE_ERROR, raw.describe()
    assert_served(server)


# -- the limits HTTP/1.1 applies, over HTTP/2 too (SPEC 2, beyond Uvicorn) --------------------


@pytest.fixture(scope="module")
def limited(module_h2_servers):  # noqa: F811
    return module_h2_servers("--limit-body-size", "1000", "--limit-target-size", "200",
                             "--limit-header-count", "10", "--timeout-request-body", "1")


def test_content_length_over_limit_body_size_is_413(limited):
    with RawH2(limited.port) as raw:
        raw.send(raw.headers_frame(1, request_headers(
            "/echo", "POST", extra=[(b"content-length", b"5000")]), end_stream=False))
        assert raw.wait_for(lambda: raw.status(1) is not None), raw.describe()
        assert raw.status(1) == 413 and raw.resets.get(1) == 0, raw.describe()  # NO_ERROR
    assert_served(limited)


def test_streamed_body_over_limit_body_size_is_413(limited):
    with RawH2(limited.port) as raw:
        raw.send(raw.headers_frame(1, request_headers("/upload?t=0", "POST"), end_stream=False))
        raw.send([data_frame(1, b"x" * 600), data_frame(1, b"x" * 600)])
        assert raw.wait_for(lambda: 1 in raw.resets or raw.stream_done(1)), raw.describe()
        assert raw.status(1) in (413, None), raw.describe()  # 413, or a reset once it began
        assert 1 in raw.resets, raw.describe()
    assert_served(limited)


@pytest.mark.parametrize(("extra", "path", "status"), [
    ([], "/" + "p" * 300, 414),
    ([(b"x-h%d" % i, b"v") for i in range(11)], "/hello", 431),
])
def test_target_and_field_count_limits(limited, extra, path, status):
    with RawH2(limited.port) as raw:
        raw.send(raw.headers_frame(1, request_headers(path, extra=extra)))
        assert raw.wait_for(lambda: raw.stream_done(1)), raw.describe()
        assert raw.status(1) == status, raw.describe()
    assert_served(limited)


def test_stalled_body_gets_408(limited):
    """A stream that opens a body and sends nothing more (slowloris over HTTP/2) is answered
    408 after --timeout-request-body, while the connection stays usable."""
    with RawH2(limited.port) as raw:
        raw.send(raw.headers_frame(1, request_headers("/upload?t=0", "POST"), end_stream=False))
        assert raw.wait_for(lambda: raw.status(1) is not None, 10), raw.describe()
        assert raw.status(1) == 408, raw.describe()
        raw.send(raw.headers_frame(3, request_headers("/hello")))
        assert raw.wait_for(lambda: raw.stream_done(3)) and raw.status(3) == 200, raw.describe()


def test_unread_request_body_is_stopped_after_the_response(h2_servers):  # noqa: F811
    """RFC 9113 8.1: a complete response while the client still sends a body the app will
    not read: RST_STREAM(NO_ERROR) after it, so the client stops."""
    server = h2_servers()
    with RawH2(server.port) as raw:
        raw.send(raw.headers_frame(1, request_headers("/hello", "POST"), end_stream=False))
        raw.send(data_frame(1, b"x" * 100))
        assert raw.wait_for(lambda: 1 in raw.resets), raw.describe()
        assert raw.status(1) == 200 and raw.resets[1] == 0, raw.describe()
