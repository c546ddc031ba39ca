"""Channel names: `user:<id>` and `topic:<name>`, and the glob grants that allow them."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from fnmatch import translate

NAME_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")
EVENT_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"


def topic_channel(topic: str) -> str:
    return f"topic:{topic}"


def allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """True when `name` matches one of the glob `patterns` (`*`, `?`, `[...]`, case-sensitive,
    as `fnmatchcase`)."""
    return patterns != () and _matcher(patterns)(name) is not None


@functools.lru_cache(maxsize=1024)  # a token's grants, compiled once into one expression
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    return re.compile("|".join(map(translate, patterns))).match
