"""The JSON body of `POST /events`: a fetch-based client's stream parameters.

`{"topics": ["news"], "lastEventId": "…"}`, both optional; the same checks as the
query's follow in admission. Unknown members are refused rather than ignored, so a
misspelt `topic` is a 400 and not a stream that silently lacks the topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.errors import BadRequest

_MEMBERS = {"topics", "lastEventId"}


@dataclass(frozen=True, slots=True)
class StreamBody:
    topics: tuple[str, ...] = ()
    last_event_id: str | None = None


NO_BODY = StreamBody()


class _Duplicate(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _Duplicate
    return dict(pairs)


def stream_body(raw: bytes) -> StreamBody:
    """The parameters in `raw`; an empty body (or only whitespace) holds none."""
    if not raw.strip():
        return NO_BODY
    try:
        # Duplicate members refused: whatever reads the body before the hub must not
        # see other topics than the hub checks (JSON parsers keep the first or the last).
        parsed: Any = json.loads(raw, object_pairs_hook=_unique)
    except _Duplicate:
        raise BadRequest("the body names a member twice") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError included; nesting too deep
        raise BadRequest("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest('the body must be a JSON object: {"topics": [...], "lastEventId": "..."}')
    unknown = sorted(set(parsed) - _MEMBERS)
    if unknown:
        raise BadRequest(f"unknown member {unknown[0]!r} (known: topics, lastEventId)")
    topics = parsed.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise BadRequest("topics must be a list of strings")
    last_event_id = parsed.get("lastEventId")
    if last_event_id is not None and not isinstance(last_event_id, str):
        raise BadRequest("lastEventId must be a string")
    return StreamBody(tuple(topics), last_event_id or None)
