"""Reading a request body through aiohttp: bounded in size, optionally in time, and asked
for (`Expect: 100-continue`) only from a client whose token passed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, web

from hub.errors import BadRequest, ExpectationFailed, HeadTimeout, HubError, PayloadTooLarge
from hub.http.problem import CONTENT_TYPE as PROBLEM
from hub.http.problem import error_answer


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes, over {limit}")
    body = bytearray()
    try:
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"the body is over {limit} bytes")
    except web.RequestPayloadError as exc:  # a broken chunk, a Content-Encoding that fails
        raise BadRequest(f"the body could not be read: {exc}") from None
    return bytes(body)


Check = Callable[[web.Request], Awaitable[object]]
Expect = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def expect_continue(check: Check) -> Expect:
    """An `Expect: 100-continue` answered `100 Continue` only once `check` (the token) has
    passed: a stranger is refused before it sends its body, not invited to send it."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version != HttpVersion11:
            return None
        try:
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise ExpectationFailed(f"unknown Expect: {request.headers['Expect']!r}")
            await check(request)
        except HubError as exc:
            status, headers, body = error_answer(exc, f"{request.method} {request.path}")
            return web.Response(status=status, body=body, content_type=PROBLEM, headers=headers)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # as aiohttp's own: the answer proper is still to come
        return None

    return expect


async def read_body_within(request: web.Request, limit: int, seconds: float) -> bytes:
    """As `read_body`, and 408 if the body is not all there within `seconds` (a client
    trickling its parameters must not hold a connection)."""
    try:
        async with asyncio.timeout(seconds):
            return await read_body(request, limit)
    except TimeoutError:
        raise HeadTimeout(f"the body did not arrive within {seconds:g} s") from None
