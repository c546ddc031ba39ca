"""A read returns a page of messages at most: a huge stream is read in bounded steps,
each continuing exactly where the last stopped, forks included."""

from __future__ import annotations

import pytest

from hub.auth.verify import mint
from hub.durable.store import PAGE
from tests.support.hubs import PUBLISHER_KEY, HubClient, MakeHub

WRITER = {
    "Authorization": f"Bearer {mint(PUBLISHER_KEY, 'HS256', sub='w', publish=['stream:*'])}",
    "Content-Type": "text/plain",
}


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _append_many(hub: HubClient, path: str, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        async with hub.client.post(path, headers=WRITER, data=f"{n}\n".encode()) as response:
            assert response.status == 204


async def _read_all(hub: HubClient, path: str) -> tuple[list[int], int]:
    numbers: list[int] = []
    offset, reads = "-1", 0
    while True:
        async with hub.client.get(f"{path}?offset={offset}", headers=WRITER) as response:
            assert response.status == 200
            numbers += [int(line) for line in (await response.text()).split()]
            offset = response.headers["Stream-Next-Offset"]
            reads += 1
            if response.headers.get("Stream-Up-To-Date") == "true":
                return numbers, reads


async def test_a_long_stream_is_read_a_page_at_a_time(make_hub: MakeHub) -> None:
    hub = await make_hub(durable_streams=True)
    async with hub.client.request("PUT", "/v1/stream/long", headers=WRITER) as response:
        assert response.status == 201
    await _append_many(hub, "/v1/stream/long", PAGE + 200)
    numbers, reads = await _read_all(hub, "/v1/stream/long")
    assert numbers == list(range(PAGE + 200))
    assert reads == 2
    fork = {**WRITER, "Stream-Forked-From": "/v1/stream/long"}
    async with hub.client.request("PUT", "/v1/stream/fork", headers=fork) as response:
        assert response.status == 201
    await _append_many(hub, "/v1/stream/fork", 300, first=PAGE + 200)
    numbers, reads = await _read_all(hub, "/v1/stream/fork")
    assert numbers == list(range(PAGE + 500))
    assert reads == 2
