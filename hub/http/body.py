"""Reading a request body through aiohttp: bounded in size, and optionally in time."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.errors import HeadTimeout, PayloadTooLarge


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes, over {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
    return bytes(body)


async def read_body_within(request: web.Request, limit: int, seconds: float) -> bytes:
    """As `read_body`, and 408 if the body is not all there within `seconds` (a client
    trickling its parameters must not hold a connection)."""
    try:
        async with asyncio.timeout(seconds):
            return await read_body(request, limit)
    except TimeoutError:
        raise HeadTimeout(f"the body did not arrive within {seconds:g} s") from None
