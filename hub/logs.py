"""Logging set-up: plain text for people, or one JSON object per line for log pipelines;
either way without credentials, whoever logs them."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from hub.accesslog import redact

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

HIDDEN = "***"
# What may carry a credential in a log line, besides a `?token=` query value (`redact`):
# aiohttp's parser quotes a refused request's line whole (`b'Cookie: hub_token=...\x01'`),
# and the pure-Python parser quotes a header's value alone. Each pattern runs only on text
# holding its trigger (most lines hold none), starts at a literal or at the start of a run
# of characters, and reads runs once (possessive quantifiers): linear time, whatever a
# client puts in a line that gets logged.
_HEADER = re.compile(r"(\b(?:authorization|cookie)['\"]?\s*[:=]\s*)[^\n]+", re.I)
_BEARER = re.compile(r"(\bbearer\s+)[^\s'\"]++", re.I)
# The value of a cookie or parameter named like a token (token=, hub_token=, access_token=).
_PAIR = re.compile(r"(token=)\"?[^\s;&'\"]*+", re.I)
# A URL's password (redis://user:password@host).
_USERINFO = re.compile(r"((?<![\w+.-])[A-Za-z][\w+.-]*+://[^/\s:@]*+:)[^/\s@]++(?=@)", re.A)
# A JWT: three base64url segments, the first holding an encoded JSON object's start ("{"
# and the next character are "e" and one of w-z, 0-3).
_JWT_START = re.compile(r"e[w-z0-3][\w-]{8}", re.ASCII)
_DOTTED = re.compile(r"(?<![\w-])[\w-]++\.[\w-]++\.[\w-]*+", re.ASCII)


def _keep_name(match: re.Match[str]) -> str:
    return match.group(1) + HIDDEN


def _hide_jwt(match: re.Match[str]) -> str:
    dotted = match.group(0)
    start = _JWT_START.search(dotted, 0, dotted.index("."))
    return dotted if start is None else dotted[: start.start()] + HIDDEN


def redact_text(text: str) -> str:
    """`text` with every credential it may quote replaced by ***."""
    lower = text.lower()
    if "token" in lower or "%" in text:
        text = _PAIR.sub(_keep_name, redact(text))
    if "authorization" in lower or "cookie" in lower:
        text = _HEADER.sub(_keep_name, text)
    if "bearer" in lower:
        text = _BEARER.sub(_keep_name, text)
    if "://" in text:
        text = _USERINFO.sub(_keep_name, text)
    if _JWT_START.search(text):
        text = _DOTTED.sub(_hide_jwt, text)
    return text


class SecretFilter(logging.Filter):
    """Redacts credentials from every record a handler emits, the hub's and any library's
    (aiohttp logs a refused request's line whole): its message, its arguments and the
    text of its exception. Records are changed in place, never dropped."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a malformed call: the handler reports it, with nothing formatted
        hidden = redact_text(message)
        if hidden != message:
            record.msg, record.args = hidden, ()
        if record.exc_info:
            # Formatted here, once: formatters print exc_text when exc_info is gone.
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        text = super().format(record)
        return text + "".join(f" {k}={v}" for k, v in fields.items())


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
