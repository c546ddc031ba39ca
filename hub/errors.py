"""The hub's exception tree; each maps to one HTTP status and a problem+json body (RFC 9457)."""

from __future__ import annotations

from typing import Any, ClassVar


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}

    def problem(self) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class BadRequest(HubError):
    status = 400
    title = "Bad request"


class MalformedHead(BadRequest):
    """llhttp refused a request head: answered by the front, never handed on."""


class VersionNotSupported(HubError):
    status = 505
    title = "HTTP version not supported"


class NotSupported(HubError):
    status = 501
    title = "Not implemented"


class ExpectationFailed(HubError):
    status = 417
    title = "Expectation failed"


class HeadTimeout(HubError):
    status = 408
    title = "Request timeout"


class Unauthorized(HubError):
    status = 401
    title = "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="hub"'}


class Forbidden(HubError):
    status = 403
    title = "Forbidden"


class TooManyStreams(HubError):
    status = 429
    title = "Too many streams"


class PayloadTooLarge(HubError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(HubError):
    status = 415
    title = "Unsupported media type"


class IdempotencyConflict(HubError):
    status = 422
    title = "Idempotency-Key reused"


class BrokerUnavailable(HubError):
    """The broker (Redis) cannot be reached; the caller may retry later."""

    status = 503
    title = "Service unavailable"
    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""
