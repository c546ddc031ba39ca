"""What the hub reads of a request: aiohttp's `web.Request`, or the lean front's parsed head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from multidict import MultiMapping


class RequestView(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def query_string(self) -> str: ...

    @property
    def cookies(self) -> Mapping[str, str]: ...
