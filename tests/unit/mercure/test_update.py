"""Publish forms read field by field, the log envelope, and the frame subscribers get."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from hub.errors import BadRequest, HubError, PayloadTooLarge
from hub.mercure.update import LOG, Update, decode, parse_form


def form(*pairs: tuple[str, str]) -> bytes:
    return urlencode(pairs).encode()


def test_a_full_form() -> None:
    update = parse_form(
        form(
            ("topic", "urn:a"),
            ("topic", "urn:b"),
            ("data", "x"),
            ("private", ""),
            ("id", "i"),
            ("type", "t"),
            ("retry", "10"),
            ("target", "ignored"),
        ),
        100,
    )
    assert update == Update(("urn:a", "urn:b"), "x", True, "i", "t", 10)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", BadRequest),
        (form(("data", "x")), BadRequest),
        (form(("topic", "a"), ("data", "x"), ("data", "y")), BadRequest),
        (form(("topic", "a"), ("id", "#1")), BadRequest),
        (form(("topic", "a"), ("retry", "-1")), BadRequest),
        (form(("topic", "a"), ("retry", "\uff11")), BadRequest),
        (form(("topic", "a"), ("type", "x\ny")), BadRequest),
        (form(("topic", "a\x7f")), BadRequest),
        (b"topic=%ff", BadRequest),
        (b"topic=a&&&", BadRequest),
        (form(("topic", "a"), ("data", "é" * 60)), PayloadTooLarge),
        (form(*[("topic", f"t{n}") for n in range(40)]), BadRequest),
    ],
)
def test_bad_forms(body: bytes, error: type[HubError]) -> None:
    with pytest.raises(error):
        parse_form(body, 100)


def test_the_envelope_round_trips_and_frames_as_sse() -> None:
    update = Update(("urn:a",), "l1\r\nl2", True, "", "kind", 5)
    message = update.message()
    assert message.channels == (LOG,)
    assert message.event == "kind"
    assert decode(message.data) == update
    assert update.frame("#gen") == b"id: #gen\nevent: kind\nretry: 5\ndata: l1\ndata: l2\n\n"
    assert Update(("urn:a",), "", id="mine").frame("#gen") == b"id: mine\ndata: \n\n"


def test_entries_that_are_no_update_decode_to_none() -> None:
    assert decode("not json") is None
    assert decode('{"d": "no topics"}') is None
    assert decode('{"t": 5, "d": ""}') is None
