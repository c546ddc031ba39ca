"""Errors of the client, with the hub's problem details when it sent some."""

from __future__ import annotations

from typing import Any


class HubClientError(Exception):
    def __init__(self, message: str, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


class PublishError(HubClientError):
    """The hub refused a publish, or could not be reached after every retry."""


class SubscribeError(HubClientError):
    """The hub refused the subscription (401, 403, 400): reconnecting would not help."""
