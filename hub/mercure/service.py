"""Mercure on the hub's engine: who a request is, what it subscribes to, where it resumes,
and publishing an update to the log.

Every update goes to one log channel, so one order covers every topic and a
subscriber resumes exactly from any id it was sent, on any replica, on one Redis,
a Cluster (one slot) or Sentinel. A publisher's id is found through the
idempotency record its publish wrote (the same id again: the same update, or 409);
a generated id is the log position itself.
"""

from __future__ import annotations

import hashlib

from hub.broker import Entry, HistoryPage, Idempotency
from hub.config import Settings
from hub.delivery import cursor
from hub.delivery.cursor import Position
from hub.delivery.engine import Engine
from hub.delivery.resume import EARLIEST
from hub.errors import BadRequest, HubError, IdempotencyConflict
from hub.mercure.index import MercureIndex
from hub.mercure.subscription import TAG, generated_id, readable
from hub.mercure.tokens import (
    ANONYMOUS,
    Grants,
    InsufficientScope,
    InvalidToken,
    MercureTokens,
    covers,
)
from hub.mercure.topics import (
    Selector,
    check_publishable,
    reserved,
    selector,
)
from hub.mercure.update import GENERATED, LOG, POSITION, Update, decode, valid_id
from hub.requestview import RequestView

COOKIES = ("mercureAuthorization", "__Secure-mercure_access_token")
# Query parameters that select topics: classic `topic`, 1.0's `match` family.
_MATCHERS = {
    "topic": "classic",
    "match": "exact",
    "matchExact": "exact",
    "match_urlpattern": "urlpattern",
    "matchURLPattern": "urlpattern",
}
# A cursor no client could have been sent: resumes as an unknown id (`unknown_cursor`).
_UNKNOWN = "!"


class IdReused(HubError):
    status = 409
    title = "Update id reused"


class Mercure:
    def __init__(self, settings: Settings) -> None:
        audience, issuer = settings.mercure_audience, settings.mercure_issuer
        self.base = audience  # the hub's URL: relative URL patterns and topics resolve against it
        publisher_key = settings.mercure_publisher_jwt_key or settings.mercure_jwt_key
        subscriber_key = settings.mercure_subscriber_jwt_key or settings.mercure_jwt_key
        self.publishers = MercureTokens(
            publisher_key, "HUB_MERCURE_PUBLISHER_JWT_KEY", audience, issuer, audience
        )
        self.subscribers = (
            MercureTokens(
                subscriber_key, "HUB_MERCURE_SUBSCRIBER_JWT_KEY", audience, issuer, audience
            )
            if subscriber_key
            else None
        )
        self.anonymous = settings.mercure_anonymous
        self.max_selectors = settings.max_topics_per_stream
        self.index = MercureIndex()

    # -- who -----------------------------------------------------------------------------------

    def publisher(self, request: RequestView) -> Grants:
        token, in_url = _token(request)
        if token is None:
            raise InvalidToken("a publisher token is required", None)
        return self.publishers.grants(token, in_url)

    def subscriber(self, request: RequestView) -> Grants:
        token, in_url = _token(request)
        if token is None:
            if self.anonymous:
                return ANONYMOUS
            raise InvalidToken("a subscriber token is required", None)
        if self.subscribers is None:
            raise InvalidToken("the token is not valid")
        return self.subscribers.grants(token, in_url)

    # -- subscribing ---------------------------------------------------------------------------

    def selectors(self, request: RequestView) -> tuple[Selector, ...]:
        found: dict[tuple[str, str], Selector] = {}
        for name in request.query:
            kind = _MATCHERS.get(name)
            if kind is None:
                if name.lower().startswith("match"):
                    raise BadRequest(f"unknown matcher parameter {name!r}")
                continue
            for text in request.query.getall(name):
                s = selector(text, kind, self.base)
                found.setdefault((s.kind, s.text), s)  # the same matcher twice: one subscription
        if not found:
            raise BadRequest("no topic selected: give `topic`, `match` or `match_urlpattern`")
        if len(found) > self.max_selectors:
            raise BadRequest(f"at most {self.max_selectors} topic selectors per stream")
        return tuple(found.values())

    async def resume_point(
        self, hub: Engine, last_event_id: str, grants: Grants
    ) -> tuple[str, str]:
        """Where a stream resumes (what `Backfill.start_from` reads) and the `Last-Event-ID`
        response header: the id asked for when the stream continues right after it, else
        `earliest`. An id the subscriber may not read counts as unknown: neither the
        header nor the stream tells that it exists."""
        if last_event_id == EARLIEST:
            return EARLIEST, EARLIEST
        if not valid_id(last_event_id):
            return _UNKNOWN, EARLIEST
        if last_event_id.startswith(GENERATED):
            return await self._from_position(hub, last_event_id, grants)
        found = await hub.broker.recorded(_id_key(last_event_id), LOG)
        if found is None:
            return _UNKNOWN, EARLIEST
        offset = int(found.split("-", 1)[0])
        page = await hub.broker.history(LOG, offset - 1, 1)
        entry = _at(page, offset)
        if entry is None:  # trimmed since: the backfill says so and starts from the oldest
            return cursor.encode_part(TAG, Position(page.epoch, offset)), EARLIEST
        update = decode(entry.data)
        if update is None or update.id != last_event_id or not readable(update, grants):
            return _UNKNOWN, EARLIEST  # not this id's any more (a failover), or not theirs
        return cursor.encode_part(TAG, Position(page.epoch, offset, entry.stamp)), last_event_id

    async def _from_position(
        self, hub: Engine, last_event_id: str, grants: Grants
    ) -> tuple[str, str]:
        """A generated id (an update's place in the log) or a position (a reset's)."""
        naming_update = not last_event_id.startswith(POSITION)
        start = last_event_id.removeprefix(POSITION if not naming_update else GENERATED)
        try:
            position = cursor.decode(start).get(TAG)
        except cursor.CursorError:
            position = None
        if position is None:
            return _UNKNOWN, EARLIEST
        if position.offset == 0:
            return start, last_event_id  # before the first update: nothing to check
        page = await hub.broker.history(LOG, position.offset - 1, 1)
        entry = _at(page, position.offset)
        there = (
            entry is not None
            and page.epoch == position.epoch
            and position.stamp in (0, entry.stamp)
        )
        if there and entry is not None and naming_update:
            update = decode(entry.data)
            if update is None or not readable(update, grants):
                return _UNKNOWN, EARLIEST
        return start, last_event_id if there else EARLIEST

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, hub: Engine, grants: Grants, update: Update) -> str:
        for topic in update.topics:
            check_publishable(topic)
            if reserved(topic, self.base):
                raise InsufficientScope("topics under /.well-known/mercure are the hub's own")
            if not covers(grants.publish, topic):
                raise InsufficientScope(f"the token does not allow publishing to {topic!r}")
        message = update.message()
        keyed = None
        if update.id:
            fingerprint = hashlib.sha256(message.data.encode()).hexdigest()
            keyed = Idempotency(_id_key(update.id), fingerprint)
        try:
            ids = await hub.broker.publish([message], keyed)
        except IdempotencyConflict:
            raise IdReused(f"the id {update.id!r} was given to another update") from None
        if update.id:
            return update.id
        offset = int(ids[0][LOG].split("-", 1)[0])
        page = await hub.broker.history(LOG, offset - 1, 1)
        entry = _at(page, offset)
        if entry is not None:
            return generated_id(page.epoch, entry)
        return GENERATED + cursor.encode_part(TAG, Position(page.epoch, offset))


def _at(page: HistoryPage, offset: int) -> Entry | None:
    """The page's entry at `offset`, if it still holds it."""
    return page.entries[0] if page.entries and page.entries[0].offset == offset else None


def _id_key(update_id: str) -> str:
    return f"mercure\0{update_id}"


def _token(request: RequestView) -> tuple[str | None, bool]:
    """The token, and whether it came in the URL: the Authorization header, else the
    `authorization` query parameter, else a cookie."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    query = request.query.get("authorization")
    if query:
        return query, True
    for name in COOKIES:
        value = request.cookies.get(name)
        if value:
            return value, False
    return None, False
