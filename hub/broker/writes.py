"""A publish as the publish script takes it: grouped by channel, and the answer put back
in the order of the request's messages. Pure: no Redis here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.broker.base import Idempotency
from hub.broker.keys import Keys
from hub.config import Settings
from hub.message import Message


@dataclass(frozen=True, slots=True)
class Limits:
    max_len: int
    ttl: int
    meta_ttl: int
    idempotency_ttl: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.history_max_len,
            settings.history_ttl,
            settings.history_meta_ttl,
            settings.idempotency_ttl,
        )


def by_channel(messages: Sequence[Message]) -> dict[str, list[int]]:
    """Channel -> the indexes of the messages that target it, in publish order."""
    targets: dict[str, list[int]] = {}
    for number, message in enumerate(messages):
        for channel in message.channels:
            targets.setdefault(channel, []).append(number)
    return targets


def script_call(
    keys: Keys,
    channels: Sequence[str],
    targets: dict[str, list[int]],
    messages: Sequence[Message],
    limits: Limits,
    idempotency: Idempotency | None,
    publish: str,
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of one publish-script call writing `channels`."""
    names: list[str] = []
    args: list[str | int] = [
        limits.max_len,
        limits.ttl,
        limits.meta_ttl,
        limits.idempotency_ttl,
        idempotency.fingerprint if idempotency else "",
        publish,
        len(channels),
    ]
    for channel in channels:
        names += [keys.stream(channel), keys.meta(channel)]
        if idempotency is not None:
            names.append(keys.idempotency(idempotency.key, channel))
        numbers = targets[channel]
        args += [keys.live(channel), len(numbers)]
        for number in numbers:
            args += [messages[number].event, messages[number].data]
    return names, args


def read_reply(channels: Sequence[str], reply: list[bytes]) -> dict[str, list[str]] | None:
    """Channel -> its entry ids from the script's reply; None when the Idempotency-Key
    was recorded for another request."""
    if reply and reply[0] == b"conflict":
        return None
    ids: dict[str, list[str]] = {}
    for channel, status, value in zip(channels, reply[::2], reply[1::2], strict=True):
        text = value.decode()
        if status == b"dup":
            text = text.partition("\n")[2]
        ids[channel] = text.split(",")
    return ids


def assemble(
    messages: Sequence[Message], targets: dict[str, list[int]], ids: dict[str, list[str]]
) -> list[dict[str, str]]:
    """The answer: for each message, the entry id on each of its channels."""
    results: list[dict[str, str]] = [{} for _ in messages]
    for channel, numbers in targets.items():
        for number, entry in zip(numbers, ids[channel], strict=True):
            results[number][channel] = entry
    return [
        {channel: result[channel] for channel in m.channels}
        for m, result in zip(messages, results, strict=True)
    ]
