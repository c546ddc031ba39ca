"""Access log lines without credentials: a `?token=` value never reaches a log."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
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
