"""Access log lines without credentials: a `?token=` value never reaches a log."""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


def redact(path: str) -> str:
    """`path` with every `token` query value replaced by ***, however its name is
    spelled (`?%74oken=` is read as `token` too)."""
    base, question, query = path.partition("?")
    if not question or "=" not in query:
        return path
    pairs = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        pairs.append(f"{name}=***" if equals and unquote_plus(name) == "token" else pair)
    return f"{base}?{'&'.join(pairs)}"


def log_access(
    logger: logging.Logger, remote: str | None, method: str, path_qs: str, status: int, secs: float
) -> None:
    logger.info('%s "%s %s" %d %.3fs', remote, method, redact(path_qs), status, secs)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log_access(
            self.logger, request.remote, request.method, request.path_qs, response.status, time
        )
