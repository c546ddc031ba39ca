"""Mercure as its clients speak it: tokens of both generations, form publishes, streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt
from aiohttp import ClientSession

from tests.support.sse_client import SSEStream

MERCURE_KEY = "mercure-secret-for-tests-0123456789abcdef"
AUDIENCE = "http://127.0.0.1/.well-known/mercure"
PATH = "/.well-known/mercure"


def mercure_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "mercure": True,
        "mercure_jwt_key": MERCURE_KEY,
        "mercure_anonymous": True,
        "mercure_audience": AUDIENCE,
        **overrides,
    }


def classic_token(
    publish: Sequence[str] = (), subscribe: Sequence[str] = (), key: str = MERCURE_KEY, **kw: Any
) -> str:
    claims: dict[str, Any] = {"mercure": {"publish": list(publish), "subscribe": list(subscribe)}}
    return jwt.encode({**claims, **kw}, key, "HS256")


def modern_token(
    details: Sequence[dict[str, Any]], audience: str = AUDIENCE, exp: float | None = None, **kw: Any
) -> str:
    import time

    claims = {
        "aud": audience,
        "exp": exp if exp is not None else time.time() + 600,
        "authorization_details": list(details),
        **kw,
    }
    return jwt.encode(claims, MERCURE_KEY, "HS256", headers={"typ": "at+jwt"})


def detail(actions: Sequence[str], *matchers: str | tuple[str, str]) -> dict[str, Any]:
    topics = [
        {"match": m} if isinstance(m, str) else {"match": m[0], "matchType": m[1]} for m in matchers
    ]
    return {"type": "mercure", "actions": list(actions), "topics": topics}


PUBLISH_ALL = classic_token(publish=["*"])


class MercureClient:
    def __init__(self, session: ClientSession, address: tuple[str, int] = ("", 0)) -> None:
        self.session = session
        self.address = address  # host and port, for raw requests
        self.streams: list[SSEStream] = []

    def close(self) -> None:
        """Every stream opened, closed (before the session is: no connection left behind)."""
        for stream in self.streams:
            stream.close()

    async def publish(
        self,
        topics: str | Sequence[str],
        data: str = "",
        *,
        token: str = PUBLISH_ALL,
        **fields: str,
    ) -> tuple[int, str]:
        pairs = [("topic", t) for t in ([topics] if isinstance(topics, str) else topics)]
        pairs += [("data", data), *fields.items()]
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.post(PATH, data=pairs, headers=headers) as response:
            return response.status, await response.text()

    async def open(
        self,
        params: Sequence[tuple[str, str]],
        *,
        token: str | None = None,
        last_event_id: str | None = None,
        cookies: dict[str, str] | None = None,
    ) -> tuple[int, SSEStream | str, dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        response = await self.session.get(PATH, params=list(params), headers=headers)
        if response.status != 200:
            text = await response.text()
            return response.status, text, dict(response.headers)
        stream = SSEStream(response)
        self.streams.append(stream)
        await stream.wait_retry()
        return 200, stream, dict(response.headers)

    async def subscribe(self, *topics: str, **kw: Any) -> SSEStream:
        status, stream, _ = await self.open([("topic", t) for t in topics], **kw)
        assert isinstance(stream, SSEStream), stream
        assert status == 200
        return stream
