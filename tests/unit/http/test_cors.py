"""CORS: listed origins with credentials, `*` without, anyone else nothing."""

from __future__ import annotations

import pytest

from tests.support.hubs import MakeHub


@pytest.fixture
def broker_kind() -> str:
    return "memory"


async def test_listed_origin_gets_credentials_on_streams_and_preflight(make_hub: MakeHub) -> None:
    hub = await make_hub(cors_origins=("https://app.example",))
    origin = {"Origin": "https://app.example"}
    response = await hub.client.get(
        "/events", cookies={"hub_token": hub.subscriber_token()}, headers=origin
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    response.close()
    preflight = await hub.client.options(
        "/publish",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = await hub.client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    denied = await hub.client.options("/publish", headers={"Origin": "https://evil.example"})
    assert denied.status == 403


async def test_wildcard_only_when_configured_and_never_with_credentials(make_hub: MakeHub) -> None:
    hub = await make_hub(cors_origins=("*",))
    response = await hub.client.get("/healthz", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    closed = await make_hub()
    response = await closed.client.get("/healthz", headers={"Origin": "https://any.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
