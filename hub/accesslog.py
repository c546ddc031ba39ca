"""Access log lines without credentials: a `?token=` value never reaches a log."""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_TOKEN = re.compile(r"(?<=[?&]token=)[^&]*")


def redact(path: str) -> str:
    return _TOKEN.sub("***", path)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            time,
        )
