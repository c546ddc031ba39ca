"""Access log lines without credentials: a `?token=` value never reaches a log."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from aiohttp.web import BaseRequest, StreamResponse

from hub.logs import redact


def log_access(
    logger: logging.Logger, remote: str | None, method: str, path_qs: str, status: int, secs: float
) -> None:
    logger.info('%s "%s %s" %d %.3fs', remote, method, redact(path_qs), status, secs)


class AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)  # off with access_log = false

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log_access(
            self.logger, request.remote, request.method, request.path_qs, response.status, time
        )


_ACCESS = logging.getLogger("aiohttp.access")


@web.middleware
async def streams_left_logged(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A stream served by aiohttp whose client leaves gets its access line too: aiohttp
    cancels the handler and logs none. Only streaming answers (200) have written their
    head before the handler ends, so a cancelled handler with output is one of them."""
    started = time.monotonic()
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if request.writer.output_size > 0:
            seconds = time.monotonic() - started
            log_access(_ACCESS, request.remote, request.method, request.path_qs, 200, seconds)
        raise
