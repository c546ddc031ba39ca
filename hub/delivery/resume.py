"""Where a stream resumes on one channel: decisions over a page of history, without I/O.

A position names the last entry the client has: its epoch, offset and stamp. The
page is the channel's history read after that offset. `plan` tells where the
stream continues and which reset (if any) the client is owed; the reads
themselves are `hub.delivery.backfill`'s.
"""

from __future__ import annotations

from hub.broker import HistoryPage
from hub.delivery.cursor import NOWHERE, Position
from hub.delivery.reasons import Reset

# The Last-Event-ID that asks for all retained history.
EARLIEST = "earliest"


def now(page: HistoryPage) -> Position:
    """Where a stream "from now" starts: the channel's top (`page` read with no offset)."""
    return Position(page.epoch, page.top, page.anchor or 0)


def _lost(position: Position, page: HistoryPage) -> bool:
    """Whether the channel (in the position's epoch) no longer holds the entry the
    position names: its top is below it, or the entry there has another stamp."""
    if position.offset > page.top:
        return True
    return bool(position.stamp) and page.anchor is not None and page.anchor != position.stamp


def plan(
    position: Position, page: HistoryPage, earliest: bool = False
) -> tuple[Position, Reset | None]:
    """Where a channel continues after `position`, given `page` (its history after
    `position.offset`), and the reset owed. `earliest`: the client asked for all
    retained history, so none of it being gone is a gap.

    A start at offset 0 below `position.offset` starts over: `page` does not reach
    back to it, so the caller reads again from there (and plans again: the reset
    returned here already covers any gap that read shows).
    """
    if page.epoch == 0:  # the channel is gone: wiped or expired
        return NOWHERE, None if position == NOWHERE else Reset.TRIMMED
    reason = None
    if position.epoch != page.epoch or _lost(position, page):
        if position.epoch != page.epoch:
            # All of a new epoch is unseen: a gap, unless the client had nothing before.
            reason = None if position == NOWHERE else Reset.TRIMMED
        else:
            # A failover lost what the client had (or the channel went back to an older
            # snapshot): newer entries may reuse those offsets, so all retained is sent again.
            reason = Reset.LOST
        if position.offset:
            return Position(page.epoch, 0), reason
        position = Position(page.epoch, 0)
    elif not position.stamp and page.anchor is not None:
        position = position._replace(stamp=page.anchor)  # a cursor without one is checked next
    first = page.entries[0].offset if page.entries else page.top + 1
    if first > position.offset + 1:
        if reason is None and not earliest:
            reason = Reset.TRIMMED
        position = Position(page.epoch, first - 1)
    return position, reason
