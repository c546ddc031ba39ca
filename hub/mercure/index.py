"""The process's index of Mercure streams: which streams an update goes to, found
without looking at every stream.

Exact topics are a dictionary lookup; `*` streams are one set; every distinct
template or URL pattern is tested once per update, whatever number of streams
share it. An update reaches a stream once, however many of its matchers match.
Each update is decoded and framed once per process, and the frame is shared.

The index is the log's only live receiver (`FanOut.route`), so it knows whether
it saw every log entry since some offset: a stream it offers an update to may
skip the entries in between (they were not for it) when its position is within
that run. A gap or a new epoch ends the run, and the streams it cannot vouch
for read history again.
"""

from __future__ import annotations

from collections import OrderedDict

from hub.broker import Entry
from hub.delivery.subscription import Subscription
from hub.mercure.subscription import MercureSubscription, generated_id
from hub.mercure.topics import Selector
from hub.mercure.update import Update, decode

# Frames kept for streams that take an update a little later (held during a backfill).
_FRAMES_KEPT = 1024


class MercureIndex:
    def __init__(self) -> None:
        self.streams: set[MercureSubscription] = set()
        self._exact: dict[str, set[MercureSubscription]] = {}
        self._everything: set[MercureSubscription] = set()
        # (kind, text) -> the matcher, and the streams that share it
        self._patterns: dict[tuple[str, str], tuple[Selector, set[MercureSubscription]]] = {}
        # The live run: every entry of `_epoch` after `_run_from` reached this index.
        self._epoch = 0
        self._run_from: int | None = None
        self._top = 0
        self._frames: OrderedDict[tuple[int, int], tuple[Update | None, bytes]] = OrderedDict()

    # -- the fan-out's Router -------------------------------------------------------------------

    def add(self, sub: Subscription) -> None:
        assert isinstance(sub, MercureSubscription)
        self.streams.add(sub)
        for s in sub.selectors:
            if s.everything:
                self._everything.add(sub)
            elif s.exact:
                self._exact.setdefault(s.text, set()).add(sub)
            else:
                self._patterns.setdefault((s.kind, s.text), (s, set()))[1].add(sub)

    def remove(self, sub: Subscription) -> None:
        assert isinstance(sub, MercureSubscription)
        self.streams.discard(sub)
        self._everything.discard(sub)
        for s in sub.selectors:
            if s.exact:
                _discard(self._exact, s.text, sub)
            elif not s.everything:
                shared = self._patterns.get((s.kind, s.text))
                if shared is not None:
                    shared[1].discard(sub)
                    if not shared[1]:
                        del self._patterns[(s.kind, s.text)]

    def request_resync(self) -> None:
        """Live entries may have been missed: no run until the next one, every stream reads
        history again."""
        self._run_from = None
        for sub in self.streams:
            sub.request_resync()

    def offer(self, channel: str, epoch: int, entry: Entry) -> None:
        if epoch == self._epoch and self._run_from is not None and entry.offset <= self._top + 1:
            self._top = max(self._top, entry.offset)
        else:  # the first entry, a gap or a new epoch: a new run from here
            self._epoch, self._run_from, self._top = epoch, entry.offset - 1, entry.offset
            for sub in self.streams:
                position = sub.position
                if position is not None and not self.vouches(position.epoch, position.offset):
                    sub.request_resync()
        update, _ = self._rendered(epoch, entry)
        if update is None:
            return
        for sub in self._matching(update):
            if sub.may_read(update):
                sub.offer(channel, epoch, entry)

    # -- for the streams ------------------------------------------------------------------------

    def vouches(self, epoch: int, offset: int) -> bool:
        run_from = self._run_from
        return epoch == self._epoch and run_from is not None and offset >= run_from

    def frame(self, epoch: int, entry: Entry) -> bytes:
        return self._rendered(epoch, entry)[1]

    def _rendered(self, epoch: int, entry: Entry) -> tuple[Update | None, bytes]:
        key = (epoch, entry.offset)
        kept = self._frames.get(key)
        if kept is None:
            update = decode(entry.data)
            kept = (update, update.frame(generated_id(epoch, entry)) if update else b"")
            self._frames[key] = kept
            if len(self._frames) > _FRAMES_KEPT:
                self._frames.popitem(last=False)
        return kept

    def _matching(self, update: Update) -> set[MercureSubscription]:
        found = set(self._everything)
        for topic in update.topics:
            found.update(self._exact.get(topic, ()))
        for matcher, subs in self._patterns.values():
            if any(matcher.test(topic) for topic in update.topics):
                found.update(subs)
        return found


def _discard(
    table: dict[str, set[MercureSubscription]], key: str, sub: MercureSubscription
) -> None:
    subs = table.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del table[key]
