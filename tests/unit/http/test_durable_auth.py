"""Who may do what to a durable stream: publisher tokens whose `publish` globs match
`stream:<name>` do anything, subscriber tokens whose `streams` claim matches read, and
nobody else touches the bytes unless the anonymous development switch is on."""

from __future__ import annotations

from typing import Any

import pytest

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, HubClient, MakeHub

PATH = "/v1/stream/chats/42"


@pytest.fixture(params=["memory"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def hub(make_hub: MakeHub) -> HubClient:
    return await make_hub(durable_streams=True)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _publisher(*grants: str) -> dict[str, str]:
    return _bearer(mint(PUBLISHER_KEY, "HS256", sub="app", publish=list(grants)))


def _subscriber(streams: list[str]) -> dict[str, str]:
    import jwt

    claims: dict[str, Any] = {"sub": "reader", "streams": streams}
    return _bearer(jwt.encode(claims, SUBSCRIBER_KEY, "HS256"))


async def _status(hub: HubClient, method: str, headers: dict[str, str], **kw: Any) -> int:
    async with hub.client.request(method, PATH, headers=headers, **kw) as response:
        return response.status


async def test_a_publisher_grant_covers_the_stream(hub: HubClient) -> None:
    writer = _publisher("stream:chats/*")
    text = {"Content-Type": "text/plain"}
    assert await _status(hub, "PUT", {**writer, **text}, data=b"hi") == 201
    assert await _status(hub, "POST", {**writer, **text}, data=b" there") == 204
    assert await _status(hub, "GET", writer) == 200
    other = _publisher("stream:other/*")
    assert await _status(hub, "POST", {**other, **text}, data=b"no") == 403
    assert await _status(hub, "GET", other) == 403
    assert await _status(hub, "DELETE", other) == 403
    assert await _status(hub, "DELETE", writer) == 204


async def test_a_subscriber_reads_what_its_streams_claim_allows_and_writes_nothing(
    hub: HubClient,
) -> None:
    writer = _publisher("stream:*")
    await _status(hub, "PUT", {**writer, "Content-Type": "text/plain"}, data=b"x")
    reader = _subscriber(["chats/*"])
    assert await _status(hub, "GET", reader) == 200
    assert await _status(hub, "HEAD", reader) == 200
    assert await _status(hub, "POST", {**reader, "Content-Type": "text/plain"}, data=b"y") == 401
    assert await _status(hub, "DELETE", reader) == 401
    assert await _status(hub, "GET", _subscriber(["other/*"])) == 403
    assert await _status(hub, "GET", _subscriber([])) == 403


async def test_no_token_no_bytes(hub: HubClient) -> None:
    writer = _publisher("stream:*")
    await _status(hub, "PUT", {**writer, "Content-Type": "text/plain"}, data=b"secret")
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
        assert await _status(hub, method, {}) == 401
    assert await _status(hub, "GET", _bearer("not.a.token")) == 401


async def test_the_anonymous_switch_lets_anyone_in(make_hub: MakeHub) -> None:
    hub = await make_hub(durable_streams=True, durable_streams_anonymous=True)
    assert await _status(hub, "PUT", {"Content-Type": "text/plain"}, data=b"open") == 201
    async with hub.client.get(PATH + "?offset=-1") as response:
        assert await response.read() == b"open"


async def test_a_fork_needs_the_right_to_read_its_source(hub: HubClient) -> None:
    owner = _publisher("stream:*")
    await _status(hub, "PUT", {**owner, "Content-Type": "text/plain"}, data=b"private")
    forker = _publisher("stream:mine/*")  # may write its own names, not read chats/42
    fork = {**forker, "Stream-Forked-From": PATH}
    async with hub.client.request("PUT", "/v1/stream/mine/copy", headers=fork) as response:
        assert response.status == 403
    async with hub.client.request("GET", "/v1/stream/mine/copy", headers=forker) as response:
        assert response.status == 404  # nothing was made
