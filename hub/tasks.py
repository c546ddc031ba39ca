"""Stopping a background task without trusting it to stop.

`task.cancel()` then `await task` waits forever if a library the task is inside
swallows the cancellation (an asyncio timeout racing the cancel, a retry loop that
catches too much) and the task carries on. A shutdown must not hang on that: the
cancel is repeated, and after `grace` seconds the task is left behind with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

_RETRY = 0.25


async def stop(task: asyncio.Task[Any] | None, grace: float = 5.0) -> None:
    """Cancels `task` and waits for it to end, at most about `grace` seconds."""
    if task is None:
        return
    for _ in range(max(1, round(grace / _RETRY))):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=_RETRY)
    if not task.done():
        log.warning("background task %s did not stop; left behind", task.get_name())
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task %s ended with %r", task.get_name(), task.exception())
