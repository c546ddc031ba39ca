"""`Publisher`: publishes over one pooled HTTP session, retrying safely with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp

from hub.client.errors import PublishError

_RETRY_CAP = 5.0


class Publisher:
    """Publishes to a hub.

    Every request carries an Idempotency-Key (one is made when none is given),
    so a retry after a 503 or a lost answer can never publish twice::

        async with Publisher("http://127.0.0.1:8080", token) as publisher:
            ids = await publisher.publish({"title": "Hi"}, users=["alice"], event="notice")
    """

    def __init__(self, url: str, token: str, *, retries: int = 5, timeout: float = 10.0) -> None:
        self._url = url.rstrip("/") + "/publish"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._retries = retries
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def publish(
        self,
        data: Any,
        *,
        users: Sequence[str] = (),
        topics: Sequence[str] = (),
        event: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, str]:
        """Publish one message; returns the entry id per channel."""
        answer = await self._post(_message(data, users, topics, event), idempotency_key)
        ids: dict[str, str] = answer["ids"]
        return ids

    async def publish_batch(
        self, messages: Sequence[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, str]]:
        """Publish several messages in order, all or none; returns their ids."""
        answer = await self._post(list(messages), idempotency_key)
        return [result["ids"] for result in answer["results"]]

    async def _post(self, body: Any, idempotency_key: str | None) -> dict[str, Any]:
        headers = {**self._headers, "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        delay = 0.1
        for attempt in range(self._retries + 1):
            try:
                async with self._pool().post(self._url, json=body, headers=headers) as response:
                    if response.status == 503 and attempt < self._retries:
                        delay = float(response.headers.get("Retry-After", delay))
                    elif response.status != 200:
                        problem = await response.json(content_type=None)
                        detail = problem.get("detail") if isinstance(problem, dict) else problem
                        raise PublishError(
                            f"publish refused ({response.status}): {detail}",
                            response.status,
                            problem,
                        )
                    else:
                        answer: dict[str, Any] = await response.json()
                        return answer
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt == self._retries:
                    raise PublishError(f"the hub at {self._url} cannot be reached: {exc}") from exc
            await asyncio.sleep(min(delay, _RETRY_CAP))
            delay *= 2
        raise PublishError(f"the hub at {self._url} is unavailable (503 after every retry)", 503)


def _message(
    data: Any, users: Sequence[str], topics: Sequence[str], event: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"users": list(users), "topics": list(topics), "data": data}
    if event is not None:
        message["event"] = event
    return message
