"""Logging set-up: plain text for people, or one JSON object per line for log pipelines;
either way without credentials, whoever logs them."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any
from urllib.parse import unquote_plus

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

HIDDEN = "***"
# What may carry a credential in a log line, besides a `?token=` query value (`redact`):
# aiohttp's parser quotes a refused request's line whole (`b'Cookie: hub_token=...\x01'`),
# and the pure-Python parser quotes a header's value alone. Each pattern runs only on text
# holding its trigger (most lines hold none), starts at a literal or at the start of a run
# of characters, and reads runs once (possessive quantifiers): linear time, whatever a
# client puts in a line that gets logged.
_HEADER = re.compile(r"(\b(?:authorization['\"]?\s*:|cookie['\"]?\s*[:=])\s*)[^\n]+", re.I)
# `authorization=` as a parameter (Mercure's): its value only, not the rest of the line.
_AUTH_PAIR = re.compile(r"(\bauthorization['\"]?\s*=\s*)[^\s&;'\"]+", re.I)
_BEARER = re.compile(r"(\bbearer\s+)[^\s'\"]++", re.I)
# The value of a cookie or parameter named like a token (token=, hub_token=, access_token=).
_PAIR = re.compile(r"(token=)\"?[^\s;&'\"]*+", re.I)
# A URL's password (redis://user:password@host).
_USERINFO = re.compile(r"((?<![\w+.-])[A-Za-z][\w+.-]*+://[^/\s:@]*+:)[^/\s@]++(?=@)", re.A)
# A JWT: three base64url segments, the first holding an encoded JSON object's start ("{"
# and the next character are "e" and one of w-z, 0-3).
_JWT_START = re.compile(r"e[w-z0-3][\w-]{8}", re.ASCII)
_DOTTED = re.compile(r"(?<![\w-])[\w-]++\.[\w-]++\.[\w-]*+", re.ASCII)


# Where a query value ends in text that quotes a path (the end of the text, in a path).
_VALUE_ENDS = (" ", "\t", "\n", "\r", '"', "'")


def _value_end(value: str) -> int:
    end = len(value)
    for stop in _VALUE_ENDS:
        found = value.find(stop, 0, end)
        if found >= 0:
            end = found
    return end


# Query parameters that carry a credential: ours, and Mercure's (`authorization`, and
# `access_token` of RFC 6750, which the Mercure 1.0 draft names).
_CREDENTIALS = frozenset({"token", "authorization", "access_token"})


def _is_token(name: str) -> bool:
    return name in _CREDENTIALS or (
        ("%" in name or "+" in name) and unquote_plus(name).lower() in _CREDENTIALS
    )


def redact(text: str) -> str:
    """`text` (a path, or any text quoting one) with every credential's query value
    (`token`, `authorization`, `access_token`) replaced by ***, however its name is
    spelled (`?%74oken=` is read as `token` too).

    String methods only: this runs for every access log line and every log line that
    names a token, and a regular expression costs ~15 ns per character of a JWT."""
    if "=" not in text:
        return text
    pieces = text.replace("?", "&").split("&")
    if len(pieces) == 1:
        return text
    at = len(pieces[0])
    out = [pieces[0]]
    for piece in pieces[1:]:
        out.append(text[at])  # the separator, ? or &
        at += 1 + len(piece)
        name, equals, value = piece.partition("=")
        if equals and _is_token(name):
            piece = f"{name}=***{value[_value_end(value) :]}"
        out.append(piece)
    return "".join(out)


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
        text = _AUTH_PAIR.sub(_keep_name, _HEADER.sub(_keep_name, text))
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


class ClientFaultFilter(logging.Filter):
    """A body the client sent broken (a bad chunk, a Content-Encoding that does not decode)
    is answered 400 by the hub; aiohttp then reads the rest of it to keep the connection,
    meets the same error and logs it as an unhandled exception with a traceback. So does
    a head aiohttp's parser refuses (a line too long, a bad chunk size). It is the
    client's fault: one warning line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name != "aiohttp.server" or exc is None:
            return True
        kinds = {kind.__name__ for kind in type(exc).__mro__}
        if "RequestPayloadError" in kinds:
            self._quiet(record, "dropped a connection whose body was broken: %s", exc)
        elif "HttpProcessingError" in kinds:  # a head llhttp refused: aiohttp answered 400
            self._quiet(record, "refused a malformed request: %s", exc)
        return True

    @staticmethod
    def _quiet(record: logging.LogRecord, message: str, exc: BaseException) -> None:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = message, (" ".join(str(exc).split())[:300],)
        record.exc_info, record.exc_text = None, None


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


def setup(level: str, fmt: str, *, access: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ClientFaultFilter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Off: aiohttp and the front both ask whether INFO is enabled before building a line.
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET if access else logging.WARNING)
