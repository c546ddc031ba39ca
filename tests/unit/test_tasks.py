"""Stopping background tasks: a task that swallows a cancellation does not hang a shutdown."""

from __future__ import annotations

import asyncio

import pytest

from hub.tasks import stop


async def test_a_plain_task_is_cancelled_and_awaited() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await stop(task)
    assert task.cancelled()


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a library racing its own timeout against the cancel may

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop(task)
    assert swallowed == 1
    assert task.cancelled()


async def test_a_task_that_never_stops_is_left_behind_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(deaf(), name="deaf")
    await asyncio.sleep(0)
    await stop(task, grace=0.5)
    assert not task.done()
    assert "deaf did not stop" in caplog.text
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken")
    await asyncio.sleep(0)
    await stop(task)
    assert "broken ended with RuntimeError('boom')" in caplog.text


async def test_no_task_is_nothing_to_stop() -> None:
    await stop(None)
