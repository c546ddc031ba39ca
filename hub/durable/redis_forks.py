"""The forks of durable streams held in Redis: a fork and its source may sit in different
slots, so they are kept in step by separate script calls. A source keeps the set of its
forks' names (counted before a fork is made); names that turn out not to be forks any
more are forgotten (`prune`), so a source is kept too long at worst, never dropped while
a fork reads it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hub.durable import offsets
from hub.durable.offsets import offset_at, position
from hub.durable.replies import messages, snapshot, text
from hub.durable.store import (
    MAX_FORK_DEPTH,
    PAGE,
    Config,
    ForkTooDeep,
    Message,
    SourceNotFound,
    StreamGone,
    forked,
    sub_offset_prefix,
)

Run = Callable[..., Awaitable[list[Any]]]


class Forks:
    def __init__(self, run: Run) -> None:
        self._run = run  # one script call on a stream's slot: run(name, op, *args)

    async def fork(self, name: str, config: Config) -> tuple[Config, int, bytes]:
        """The fork's config completed from its source (which counts `name` among its forks
        from now on), its depth, and what it keeps of an append it forks inside."""
        assert config.forked_from is not None
        source_name = config.forked_from
        reply = await self._run(source_name, "fork", name)
        status = text(reply[0])
        if status == "notfound":
            raise SourceNotFound(source_name)
        if status == "gone":
            raise StreamGone(source_name)
        if status == "toodeep":
            raise ForkTooDeep(source_name)
        try:
            completed = forked(config, snapshot(reply))
            prefix = b""
            if config.fork_sub_offset:
                assert completed.fork_offset is not None
                following = await self.following(source_name, completed.fork_offset)
                prefix = sub_offset_prefix(completed, following)
        except BaseException:
            await self.prune(source_name, [name])
            raise
        return completed, int(text(reply[6])) + 1, prefix

    async def prune(self, name: str, forks: list[Any]) -> bool:
        """Forgets those of `forks` that do not exist (any more, or not yet: a create that
        failed) among the forks of `name`; True when that dropped `name` (it was gone, and
        they were its last). Counting a fork too many is safe (this undoes it); too few
        would drop bytes a fork reads."""
        freed = False
        for fork in (text(f) for f in forks):
            reply = await self._run(fork, "read", "", "1", "", 0)  # no bytes, nothing renewed
            if text(reply[0]) == "notfound" or text(reply[6]) != name:
                freed = await self.unfork(name, fork) or freed
        return freed

    async def following(self, name: str, offset: str) -> list[Message]:
        """The messages of stream `name` after `offset`, inherited ones included."""
        after = str(position(offset))
        reply = await self._run(name, "read", after, "1", "", PAGE + 1)
        if text(reply[0]) != "ok":
            return []
        return await self.inherited(reply, offset, None) + messages(reply[8:])

    async def unfork(self, source_name: str, fork: str) -> bool:
        """`fork` no longer reads through `source_name`; a source gone meanwhile is dropped,
        and its own source told in turn. True when `source_name` was dropped."""
        current, dropped = source_name, False
        for _ in range(MAX_FORK_DEPTH + 1):
            reply = await self._run(current, "unfork", fork)
            if text(reply[0]) != "dropped":
                return dropped
            dropped = dropped or current == source_name
            fork, current = current, text(reply[1])
            if not current:
                return dropped
        return dropped

    async def inherited(self, reply: list[Any], offset: str, cap: str | None) -> list[Message]:
        """What a stream (its read `reply`) inherits after `offset` from its source, up to
        its fork offset (and `cap`), through every source in turn."""
        source, fork_offset = text(reply[6]), text(reply[7])
        if not source or (offset != offsets.START and position(offset) >= int(fork_offset)):
            return []
        limit = int(fork_offset) if cap is None else min(int(fork_offset), position(cap))
        after = "" if offset == offsets.START else str(position(offset))
        # As a fork reads its source: gone or not, renewing nothing.
        upstream = await self._run(source, "read", after, "1", str(limit), PAGE + 1)
        if text(upstream[0]) != "ok":
            return []
        inherited = await self.inherited(upstream, offset, offset_at(limit))
        return inherited + messages(upstream[8:])
