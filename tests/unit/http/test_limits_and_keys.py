"""Limits (streams per user, query length, body size) and public-key tokens, over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hub.auth.verify import TokenVerifier
from hub.errors import ConfigError
from tests.support.hubs import PUBLISHER_KEY, HubClient, MakeHub


@pytest.fixture
def broker_kind() -> str:
    return "memory"


async def test_streams_per_user_are_limited(make_hub: MakeHub) -> None:
    hub = await make_hub(max_streams_per_user=2)
    first, second = await hub.subscribe("pia"), await hub.subscribe("pia")
    response = await hub.client.get(
        "/events", headers={"Authorization": f"Bearer {hub.subscriber_token('pia')}"}
    )
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    other = await hub.subscribe("quinn")  # the limit is per user
    first.close()
    async with asyncio.timeout(10):
        while True:  # the closed stream's slot frees up
            response = await hub.client.get(
                "/events", headers={"Authorization": f"Bearer {hub.subscriber_token('pia')}"}
            )
            if response.status == 200:
                break
            await asyncio.sleep(0.02)
    response.close()
    second.close()
    other.close()


async def test_overlong_query_and_too_many_topics_are_400(hub: HubClient) -> None:
    headers = {"Authorization": f"Bearer {hub.subscriber_token()}"}
    response = await hub.client.get("/events", params={"x": "y" * 9000}, headers=headers)
    assert response.status == 400
    assert "query string" in (await response.json())["detail"]
    topics = [("topic", f"t{n}") for n in range(33)]
    response = await hub.client.get("/events", params=topics, headers=headers)
    assert response.status == 400
    assert "too many topics" in (await response.json())["detail"]


async def test_keys_are_not_interchangeable_over_http(hub: HubClient) -> None:
    publisher_token = hub.publisher_token()
    response = await hub.client.get(
        "/events", headers={"Authorization": f"Bearer {publisher_token}"}
    )
    assert response.status == 401
    unsigned = jwt.encode({"sub": "alice"}, None, algorithm="none")  # type: ignore[arg-type]
    response = await hub.client.get("/events", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status == 401
    status, _ = await hub.post({"users": ["a"], "data": 1}, token=hub.subscriber_token())
    assert status == 401
    forged = jwt.encode({"sub": "x", "publish": ["*"]}, PUBLISHER_KEY + "x", algorithm="HS256")
    status, _ = await hub.post({"users": ["a"], "data": 1}, token=forged)
    assert status == 401


async def test_oversized_body_is_refused_before_it_is_read(hub: HubClient) -> None:
    host, port = hub.client.host, hub.client.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + hub.publisher_token().encode() + b"\r\n"
        b"Content-Length: 1000000000\r\n\r\n{"
    )
    await writer.drain()
    async with asyncio.timeout(10):
        status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_rs256_tokens_with_a_public_key_file(make_hub: MakeHub, tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "subscribers.pem").write_bytes(pem)
    hub = await make_hub(
        subscriber_jwt_algorithm="RS256", subscriber_jwt_key=str(tmp_path / "subscribers.pem")
    )
    token = jwt.encode({"sub": "rsa-user"}, private, algorithm="RS256")
    stream = await hub.subscribe("rsa-user", token=token)
    await hub.send("signed elsewhere", users=["rsa-user"])
    assert (await stream.next()).data == "signed elsewhere"
    stream.close()
    hs_token = hub.subscriber_token("rsa-user")
    response = await hub.client.get("/events", headers={"Authorization": f"Bearer {hs_token}"})
    assert response.status == 401


async def test_concurrent_opens_cannot_pass_the_streams_per_user_limit(make_hub: MakeHub) -> None:
    hub = await make_hub(max_streams_per_user=2)
    headers = {"Authorization": f"Bearer {hub.subscriber_token('rush')}"}
    responses = await asyncio.gather(
        *(hub.client.get("/events", headers=headers) for _ in range(20))
    )
    assert sorted(r.status for r in responses) == [200, 200] + [429] * 18
    for response in responses:
        response.close()


@pytest.mark.parametrize("kind", ["garbage", "wrong_curve_type", "private"])
def test_unusable_public_keys_stop_start_up(kind: str, tmp_path: Path) -> None:
    ec_private = ec.generate_private_key(ec.SECP256R1())
    keys = {
        "garbage": "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
        "wrong_curve_type": ec_private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "private": rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode(),
    }
    with pytest.raises(ConfigError, match="HUB_SUBSCRIBER_JWT_KEY"):
        TokenVerifier(keys[kind], "RS256", "subscriber")
