"""The index of Mercure streams: who an update goes to, once, and when a stream may skip
the log entries between two of its updates (the index saw them) or must read history."""

from __future__ import annotations

from hub.broker import Entry
from hub.delivery import cursor
from hub.delivery.cursor import Position
from hub.mercure.index import MercureIndex
from hub.mercure.subscription import TAG, MercureSubscription
from hub.mercure.tokens import ANONYMOUS, Grants
from hub.mercure.topics import selector
from hub.mercure.update import LOG, Update

EPOCH = 7


def entry(offset: int, *topics: str, private: bool = False, data: str = "") -> Entry:
    message = Update(topics, data or f"u{offset}", private).message()
    return Entry.create(offset, message.event, message.data)


def settled(
    index: MercureIndex, *selectors: str, at: int = 0, grants: Grants = ANONYMOUS
) -> MercureSubscription:
    """A stream caught up at offset `at`, registered with the index."""
    sub = MercureSubscription(
        tuple(selector(s) for s in selectors), grants, index, 100, None, 2**20
    )
    sub.start_from(cursor.encode_part(TAG, Position(EPOCH, at)))
    sub.settle(sub.resyncs)
    index.add(sub)
    return sub


def sent(sub: MercureSubscription) -> list[str]:
    frames = sub.take().decode() if sub.has_output else ""
    return [line[6:] for line in frames.splitlines() if line.startswith("data: ")]


def test_each_stream_gets_what_it_selects_once() -> None:
    index = MercureIndex()
    exact = settled(index, "urn:a")
    template = settled(index, "urn:{kind}")
    everything = settled(index, "*", "urn:a", "urn:{kind}")
    other = settled(index, "urn:b")
    index.offer(LOG, EPOCH, entry(1, "urn:a"))
    index.offer(LOG, EPOCH, entry(2, "urn:c", "urn:a"))
    assert sent(exact) == ["u1", "u2"]
    assert sent(template) == ["u1", "u2"]
    assert sent(everything) == ["u1", "u2"]
    assert sent(other) == []
    assert not other.needs_sync  # it saw nothing, and missed nothing


def test_a_stream_skips_what_the_index_saw_was_not_for_it() -> None:
    index = MercureIndex()
    sub = settled(index, "urn:a")
    for offset in range(1, 5):
        index.offer(LOG, EPOCH, entry(offset, "urn:b"))
    index.offer(LOG, EPOCH, entry(5, "urn:a"))
    assert sent(sub) == ["u5"]
    assert not sub.needs_sync
    assert sub.position == Position(EPOCH, 5)


def test_private_updates_only_with_a_grant() -> None:
    index = MercureIndex()
    anonymous = settled(index, "urn:a")
    granted = settled(index, "urn:a", grants=Grants(subscribe=(selector("urn:{x}"),)))
    index.offer(LOG, EPOCH, entry(1, "urn:a", private=True))
    index.offer(LOG, EPOCH, entry(2, "urn:a"))
    assert sent(anonymous) == ["u2"]
    assert sent(granted) == ["u1", "u2"]


def test_a_gap_in_the_log_sends_the_streams_it_cannot_vouch_for_to_history() -> None:
    index = MercureIndex()
    behind = settled(index, "urn:a", at=0)
    index.offer(LOG, EPOCH, entry(1, "urn:b"))
    index.offer(LOG, EPOCH, entry(2, "urn:b"))
    assert not behind.needs_sync
    index.offer(LOG, EPOCH, entry(9, "urn:b"))  # 3 to 8 never arrived live
    assert behind.needs_sync  # one of them may have been for it
    later = settled(index, "urn:a", at=8)
    index.offer(LOG, EPOCH, entry(10, "urn:a"))
    assert sent(later) == ["u10"]


def test_a_new_epoch_or_a_resync_ends_the_run() -> None:
    index = MercureIndex()
    sub = settled(index, "urn:a", at=0)
    index.offer(LOG, EPOCH, entry(1, "urn:b"))
    index.offer(LOG, EPOCH + 1, entry(1, "urn:b"))
    assert sub.needs_sync
    again = settled(index, "urn:a", at=5)
    index.request_resync()
    assert again.needs_sync
    assert not index.vouches(EPOCH + 1, 5)


def test_removed_streams_get_nothing() -> None:
    index = MercureIndex()
    sub = settled(index, "urn:{x}", "urn:a", "*")
    index.remove(sub)
    index.offer(LOG, EPOCH, entry(1, "urn:a"))
    assert sent(sub) == []
    assert index.streams == set()
