"""The framing decision and the field encoding, alone: what the core does when a response starts
(RFC 9110 6.4.1 and 8.6, RFC 9112 6.1-6.3 and 9.6), through palfrey._parser.response_framing.

The wire tests (test_http_framing.py and others) see the same rules from outside; these pin
each input of the decision separately, which the wire cannot do.
"""

from __future__ import annotations

import pytest

from palfrey._parser import response_framing

pytestmark = pytest.mark.palfrey_only  # the compiled core itself

CL = b"content-length"
TE = b"transfer-encoding"


def framing(status=200, method="GET", version="1.1", headers=(), keep_alive=True) -> dict:
    return response_framing(status, method, version, list(headers), keep_alive)


def decision(framing_name, length=None, keep_alive=True, add_chunked=False, add_close=False):
    return {"framing": framing_name, "length": length, "keep_alive": keep_alive,
            "add_chunked": add_chunked, "add_close": add_close}  # fmt: skip


def without_fields(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "fields"}


# -- which framing ---------------------------------------------------------------------------------


NO_CONTENT = [
    (200, "HEAD"), (404, "HEAD"), (100, "GET"), (103, "GET"), (199, "POST"), (204, "GET"),
    (304, "GET"), (204, "HEAD"),
]  # fmt: skip


@pytest.mark.parametrize("status,method", NO_CONTENT)
@pytest.mark.parametrize("headers", [[], [(CL, b"13")], [(TE, b"chunked")]], ids=["", "cl", "te"])
def test_no_content_whatever_the_fields_say(status, method, headers):
    # RFC 9110 6.4.1: HEAD, 1xx, 204 and 304 responses end with their header section.
    assert without_fields(framing(status, method, headers=headers)) == decision("none")


@pytest.mark.parametrize("status,method", [(304, "GET"), (200, "HEAD")])
def test_head_and_304_keep_the_apps_content_length(status, method):
    # They describe the representation a GET would get (RFC 9110 8.6).
    result = framing(status, method, headers=[(CL, b"13"), (b"ETag", b'"x"')])
    assert result["fields"] == b'content-length: 13\r\netag: "x"\r\n'


@pytest.mark.parametrize("status", [100, 103, 199, 204])
@pytest.mark.parametrize("field", [(CL, b"0"), (b"Transfer-Encoding", b"chunked")])
def test_1xx_and_204_drop_content_length_and_transfer_encoding(status, field):
    # RFC 9110 8.6, RFC 9112 6.1: never in these, whatever the app sent (SPEC 2).
    result = framing(status, headers=[field, (b"X-App", b"yes")])
    assert result["fields"] == b"x-app: yes\r\n"
    assert without_fields(result) == decision("none")


@pytest.mark.parametrize("version", ["1.0", "1.1", "2"])
def test_content_length_delimits_the_body(version):
    result = framing(version=version, headers=[(b"Content-Length", b"5")])
    assert without_fields(result) == decision("length", length=5)
    assert result["fields"] == b"content-length: 5\r\n"


def test_zero_content_length():
    assert without_fields(framing(headers=[(CL, b"0")])) == decision("length", length=0)


def test_http11_without_length_is_chunked_by_the_server():
    assert without_fields(framing()) == decision("chunked", add_chunked=True)


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"gzip, chunked"])
def test_app_chunked_is_not_added_again(value):
    result = framing(headers=[(TE, value)])
    assert without_fields(result) == decision("chunked")
    assert result["fields"] == b"transfer-encoding: " + value + b"\r\n"


def test_http10_without_length_is_delimited_by_close():
    # RFC 9112 6.3: HTTP/1.0 has no chunked coding; the close ends the body.
    assert without_fields(framing(version="1.0")) == decision(
        "close", keep_alive=False, add_close=True
    )


def test_http10_drops_the_apps_chunked_coding():
    # RFC 9112 6.1: no Transfer-Encoding in an answer to HTTP/1.0; the close ends the body.
    result = framing(version="1.0", headers=[(TE, b"chunked"), (b"x-app", b"yes")])
    assert without_fields(result) == decision("close", keep_alive=False, add_close=True)
    assert result["fields"] == b"x-app: yes\r\n"


def test_http10_with_length_and_no_keep_alive():
    assert without_fields(framing(version="1.0", headers=[(CL, b"3")], keep_alive=False)) == (
        decision("length", length=3, keep_alive=False, add_close=True)
    )


def test_http2_streams_the_body():
    assert without_fields(framing(version="2")) == decision("stream")
    assert without_fields(framing(version="2", method="HEAD")) == decision("none")
    # HTTP/2 has no Connection field: never added, even when the connection is not reused.
    assert without_fields(framing(version="2", keep_alive=False)) == decision(
        "stream", keep_alive=False
    )


# -- keep-alive ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, CLOSE", b"foo , close"])
def test_app_connection_close_ends_keep_alive(value):
    result = framing(headers=[(CL, b"2"), (b"Connection", value)])
    # The app said it: the server does not add a second Connection field.
    assert without_fields(result) == decision("length", length=2, keep_alive=False)
    assert result["fields"] == b"content-length: 2\r\nconnection: " + value + b"\r\n"


@pytest.mark.parametrize("value", [b"keep-alive", b"closed", b"upgrade"])
def test_other_connection_tokens_keep_alive(value):
    result = framing(headers=[(CL, b"2"), (b"connection", value)])
    assert without_fields(result) == decision("length", length=2)


def test_a_connection_that_cannot_be_reused_says_close():
    assert without_fields(framing(headers=[(CL, b"2")], keep_alive=False)) == decision(
        "length", length=2, keep_alive=False, add_close=True
    )
    assert without_fields(framing(keep_alive=False)) == decision(
        "chunked", keep_alive=False, add_chunked=True, add_close=True
    )


# -- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[(CL, b"3"), (TE, b"chunked")], [(TE, b"gzip"), (CL, b"3")]],
    ids=["cl-then-te", "te-then-cl"],
)
def test_content_length_with_transfer_encoding_is_refused(headers):
    # RFC 9112 6.2: never both; a recipient could not tell where the body ends.
    with pytest.raises(RuntimeError, match="^Response has both content-length and transfer-enc"):
        framing(headers=headers)


def test_conflicting_content_lengths_are_refused():
    with pytest.raises(RuntimeError, match="^Response has conflicting content-length headers"):
        framing(headers=[(CL, b"3"), (b"Content-Length", b"4")])


@pytest.mark.parametrize("value", [b"", b"abc", b"-1", b"+1", b" 1", b"1.0", b"1" * 19])
def test_invalid_content_length_is_refused(value):
    with pytest.raises(RuntimeError, match="^Invalid content-length header"):
        framing(headers=[(CL, value)])


@pytest.mark.parametrize(
    "name",
    [b"", b"bad name", b"x:y", b"caf\xe9", b"a\r\nb", b"(x)", b"x\x00", b"a/b", b'"q"', b"\x7f"],
)
def test_invalid_field_names_are_refused(name):
    # RFC 9110 5.1: a field name is a token.
    with pytest.raises(RuntimeError, match=r"^Invalid HTTP header name\.$"):
        framing(headers=[(name, b"v")])


@pytest.mark.parametrize("value", [b"a\r\nb", b"a\nb", b"a\rb", b"a\x00b", b"\x7f", b"x\x1f"])
def test_invalid_field_values_are_refused(value):
    # RFC 9110 5.5: no CTL but HTAB; a CR or LF would split the response.
    with pytest.raises(RuntimeError, match=r"^Invalid HTTP header value\.$"):
        framing(headers=[(b"x-v", value)])


@pytest.mark.parametrize("header", [("x-str", b"v"), (b"x-v", "str"), (b"x-v", None)])
def test_names_and_values_must_be_bytes(header):
    with pytest.raises(RuntimeError, match="^Invalid HTTP header: names and values must be bytes"):
        framing(headers=[header])


# -- the encoding ----------------------------------------------------------------------------------


def test_fields_are_written_in_order_names_lower_cased_values_raw():
    headers = [
        (b"X-Mixed-Case", b"Value With Spaces"),
        (b"x-dup", b"one"),
        (b"X-DUP", b"two"),
        (b"x-tab", b"a\tb"),  # HTAB is allowed inside a value
        (b"x-latin", b"caf\xe9 \x80"),  # obs-text too (RFC 9110 5.5)
        (b"!#$%&'*+-.^_`|~09az", b""),  # every tchar class; an empty value
    ]
    assert framing(headers=headers)["fields"] == (
        b"x-mixed-case: Value With Spaces\r\n"
        b"x-dup: one\r\n"
        b"x-dup: two\r\n"
        b"x-tab: a\tb\r\n"
        b"x-latin: caf\xe9 \x80\r\n"
        b"!#$%&'*+-.^_`|~09az: \r\n"
    )


def test_header_items_may_be_any_pair():
    # ASGI servers take [name, value] lists as well as tuples.
    result = framing(headers=[[b"Content-Length", b"1"], (b"x-a", b"b")])
    assert result["fields"] == b"content-length: 1\r\nx-a: b\r\n"
    assert result["length"] == 1


def test_no_fields():
    assert framing(headers=[])["fields"] == b""



@pytest.mark.parametrize("values", [(b"05", b"5"), (b"5", b"5")], ids=["spellings", "same"])
def test_agreeing_content_lengths_leave_as_one_field(values):
    # RFC 9110 8.6: a recipient may reject several; the core sends the value once (this was
    # found by the response fuzz target: "05" and "5" both reached the wire).
    result = framing(headers=[(CL, value) for value in values])
    assert result["fields"].count(b"content-length:") == 1, result["fields"]
    assert result["length"] == 5
