"""The SSE wire format, byte for byte: in the encoder and through the HTTP server."""

from __future__ import annotations

from hub import sse
from tests.conftest import HubClient


def test_event_body_splits_every_line_end() -> None:
    assert sse.event_body("message", "a\nb\r\nc\rd") == (
        b"event: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )


def test_event_body_keeps_empty_lines_and_spaces() -> None:
    assert sse.event_body("t", "") == b"event: t\ndata: \n\n"
    assert sse.event_body("t", "\n") == b"event: t\ndata: \ndata: \n\n"
    assert sse.event_body("t", " lead") == b"event: t\ndata:  lead\n\n"


def test_frame_and_control_lines() -> None:
    assert sse.frame("c1", b"event: t\ndata: x\n\n") == b"id: c1\nevent: t\ndata: x\n\n"
    assert sse.opening(2500, None) == b"retry: 2500\n\n"
    assert sse.opening(2500, "c1") == b"retry: 2500\nid: c1\n\n"
    assert sse.PING == b": ping\n\n"


async def test_wire_bytes_for_multiline_custom_type_and_unicode(hub: HubClient) -> None:
    stream = await hub.subscribe("wire")
    await hub.send("line 1\nline 2\r\nline 3", users=["wire"], event="chat.reply")
    await hub.send({"emoji": "🎉", "text": "héllo\nwörld"}, users=["wire"])
    await hub.send("日本語", users=["wire"], event="x:y-z_1.2")
    expected_bodies = [
        "event: chat.reply\ndata: line 1\ndata: line 2\ndata: line 3\n\n",
        'event: message\ndata: {"emoji":"🎉","text":"héllo\\nwörld"}\n\n',
        "event: x:y-z_1.2\ndata: 日本語\n\n",
    ]
    raw = b""
    while raw.count(b"\n\n") < 3:
        raw += await stream.response.content.readany()
    frames = raw.decode().split("\n\n")[:3]
    for frame, body in zip(frames, expected_bodies, strict=True):
        id_line, _, rest = frame.partition("\n")
        assert id_line.startswith("id: ")
        assert "\r" not in id_line
        assert rest + "\n\n" == body
    stream.close()


async def test_stream_opens_with_retry_and_its_starting_cursor(hub: HubClient) -> None:
    response = await hub.client.get(
        "/events", headers={"Authorization": f"Bearer {hub.subscriber_token('w2')}"}
    )
    first = (await response.content.readany()).decode()
    retry, cursor, end = first.split("\n", 2)
    assert (retry, end) == ("retry: 3000", "\n")
    assert cursor.startswith("id: ")
    assert len(cursor) > len("id: ")
    response.close()
