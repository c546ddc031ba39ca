"""A Mercure subscriber's stream: the hub's own subscription on the Mercure log, with
the subscriber's topic matchers and private grants as a filter and each update
written as Mercure frames it (its own id, `event`, `retry`).

Its position is on the log, which holds every topic's updates, so it passes over
the updates it does not select. Live, the index (`hub.mercure.index`) offers it
only the updates it selects, and vouches that the ones in between were seen and
not for it; anything the index cannot vouch for is read from history again.
"""

from __future__ import annotations

from typing import Protocol

from hub.broker import Entry
from hub.delivery import cursor
from hub.delivery.backfill import StreamObserver
from hub.delivery.cursor import NOWHERE, Position
from hub.delivery.subscription import Subscription
from hub.mercure.tokens import Grants
from hub.mercure.topics import Selector, matches_any
from hub.mercure.update import GENERATED, LOG, POSITION, Update, decode

TAG = cursor.channel_tag(LOG)


def generated_id(epoch: int, entry: Entry) -> str:
    """The id of an update its publisher gave none: its place in the log."""
    return GENERATED + cursor.encode_part(TAG, Position(epoch, entry.offset, entry.stamp))


def readable(update: Update, grants: Grants) -> bool:
    """A public update, or a private one the token allows on one of its topics."""
    return not update.private or matches_any(grants.subscribe, update.topics)


class Voucher(Protocol):
    def vouches(self, epoch: int, offset: int) -> bool:
        """Whether every log entry after `offset` (in `epoch`) reached the index live."""

    def frame(self, epoch: int, entry: Entry) -> bytes: ...


class MercureSubscription(Subscription):
    __slots__ = ("grants", "selectors", "voucher")

    def __init__(
        self,
        selectors: tuple[Selector, ...],
        grants: Grants,
        voucher: Voucher,
        queue_size: int,
        observer: StreamObserver | None,
        queue_bytes: int,
    ) -> None:
        super().__init__((LOG,), queue_size, observer, queue_bytes)
        self.selectors = selectors
        self.grants = grants
        self.voucher = voucher

    def may_read(self, update: Update) -> bool:
        return readable(update, self.grants)

    def wants(self, update: Update) -> bool:
        return matches_any(self.selectors, update.topics) and self.may_read(update)

    @property
    def position(self) -> Position | None:
        return self._positions[0]

    def cursor(self) -> str:
        # A position that names no update (a reset's): resumable, never taken for an update's.
        return POSITION + super().cursor()

    def opening(self, retry_ms: int) -> bytes:
        # No opening event: Mercure clients hand every event to the app. `retry` only.
        return f"retry: {retry_ms}\n".encode()

    def history_frame(self, epoch: int, entry: Entry) -> bytes:
        update = decode(entry.data)
        if update is None or not self.wants(update):
            return b""
        return update.frame(generated_id(epoch, entry))

    def _place(self, channel: str, epoch: int, entry: Entry) -> bool:
        position = self._positions[0]
        if position is None:
            return False
        if position.epoch == epoch and entry.offset <= position.offset:
            return True  # already sent (backfill and live overlap)
        follows = (position.epoch == epoch or position == NOWHERE) and (
            entry.offset == position.offset + 1 or self.voucher.vouches(epoch, position.offset)
        )
        if follows:
            self._set(0, Position(epoch, entry.offset, entry.stamp))
            self._emit("", self.voucher.frame(epoch, entry))
        return follows
