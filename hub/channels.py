"""Channel names: `user:<id>` and `topic:<name>`, and the glob grants that allow them."""

from __future__ import annotations

import re
from collections.abc import Collection
from fnmatch import fnmatchcase

NAME_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")
EVENT_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"


def topic_channel(topic: str) -> str:
    return f"topic:{topic}"


def allowed(name: str, patterns: Collection[str]) -> bool:
    """True when `name` matches one of the glob `patterns` (`*`, `?`, `[...]`, case-sensitive,
    as `fnmatchcase`). A grant of everything is answered without matching."""
    return "*" in patterns or any(fnmatchcase(name, pattern) for pattern in patterns)
