"""Request heads read by llhttp (through httptools), and the heads of the front's answers.

llhttp, the parser of Node.js and of aiohttp's own C extension, decides what a
request head is: its method, target, version and fields, strictly (CRLF line
ends, no whitespace before a colon, no control bytes, no two Content-Lengths,
no Content-Length beside Transfer-Encoding). We only read what it reports.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Literal, NamedTuple

import httptools
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from hub.errors import HubError, MalformedHead, NotSupported, VersionNotSupported

# The body the front reads itself, and the media type of its answers to publishes.
JSON = "application/json"
# Heads larger than this go to aiohttp and its limits (a long query string is answered there).
MAX_HEAD = 8192
_TARGET = re.compile(rb"/events(\?[\x21-\x22\x24-\x7e]*)?")
# Requests with these are passed on: a body, a protocol change, or a browser's (CORS).
_PASSED_ON = ("Content-Length", "Transfer-Encoding", "Upgrade", "Expect")
_PUBLISH_PASSED_ON = ("Transfer-Encoding", "Content-Encoding", "Upgrade", "Expect", "Origin")
# aiohttp's own limits: a head beyond them is passed on for aiohttp to refuse.
_MAX_FIELD = 8190
_MAX_FIELDS = 128


class _Complete(Exception):
    """Stops llhttp at the end of the head: the body is read by whoever serves it."""


class Head:
    """One parsed request head: what handlers read of it (see `RequestView`)."""

    __slots__ = ("_cookies", "fields", "headers", "length", "method", "target", "version")

    def __init__(
        self, method: str, target: bytes, version: str, fields: list[tuple[bytes, bytes]]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in fields:
            # As aiohttp reads them: without the whitespace around, every byte kept.
            text = value.strip(b" \t").decode("utf-8", "surrogateescape")
            headers.add(name.decode("ascii"), text)
        self.headers = CIMultiDictProxy(headers)
        self.length = -1  # a publish's body length, once known
        self._cookies: dict[str, str] | None = None

    @property
    def path_qs(self) -> str:
        return self.target.decode("latin-1")  # llhttp lets no byte above 0x7e through

    @property
    def path(self) -> str:
        return self.path_qs.partition("?")[0]

    @property
    def query_string(self) -> str:
        return self.path_qs.partition("?")[2]

    @property
    def query(self) -> MultiDictProxy[str]:
        return URL.build(query_string=self.query_string, encoded=True).query

    @property
    def cookies(self) -> dict[str, str]:
        """The Cookie header's pairs (a later one of a name wins, as in aiohttp), read in
        linear time: `http.cookies` is quadratic on backslashes in quoted values."""
        if self._cookies is None:
            self._cookies = {}
            for pair in self.headers.get("Cookie", "").split(";"):
                name, equals, value = pair.partition("=")
                name, value = name.strip(), value.strip()
                if equals and name:
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    self._cookies[name] = value
        return self._cookies

    def duplicated(self) -> bool:
        """Any field twice (whatever its case)."""
        return len({name.lower() for name, _ in self.fields}) != len(self.fields)


class HeadReader:
    """Feeds bytes to llhttp until one request head is complete.

    `feed` returns the Head once llhttp has read all of it, None while more is
    needed, and raises MalformedHead when llhttp refuses the bytes; the reader
    is used for one head only.
    """

    __slots__ = ("_fields", "_head", "_parser", "_url")

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._head: Head | None = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method().decode("ascii")
        self._head = Head(method, self._url, parser.get_http_version(), self._fields)
        raise _Complete

    def feed(self, data: bytes | memoryview) -> Head | None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._head is None:
                raise
            return self._head
        except httptools.HttpParserError as exc:
            raise MalformedHead(f"malformed HTTP request ({exc})") from None
        return None


def head_end(data: bytes | bytearray) -> int:
    """Where a head that llhttp read whole ends in `data` (just past its blank line).

    llhttp insists on CRLF line ends and skips blank lines before a request, so
    the first CRLF CRLF after those is the blank line that ends the head.
    """
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1
    return data.find(b"\r\n\r\n", start) + 4


def refusal(head: Head) -> HubError | None:
    """What the front answers for a head it will not pass on, or None."""
    if head.method == "CONNECT":
        # No tunnels here; refused before aiohttp, which would read the bytes after it
        # as requests while llhttp (watching the connection) takes them as the tunnel's.
        return NotSupported("CONNECT is not supported")
    if head.version not in ("1.0", "1.1"):
        return VersionNotSupported(f"HTTP/{head.version} is not supported; use HTTP/1.1")
    codings = head.headers.getall("Transfer-Encoding", [])
    if codings and [c.strip().lower() for c in codings] != ["chunked"]:
        # As nginx: only plain chunked bodies; `identity, chunked` and the like smuggle.
        return NotSupported("only Transfer-Encoding: chunked is supported")
    return None


def _served_here(head: Head) -> Literal["stream", "publish"] | None:
    """ "stream" or "publish" for the requests the front serves itself; None to pass on."""
    if head.version != "1.1" or len(head.fields) > _MAX_FIELDS or head.duplicated():
        return None  # any header twice: aiohttp decides what that means
    if any(len(name) + len(value) + 2 > _MAX_FIELD for name, value in head.fields):
        return None
    headers = head.headers
    if head.method == "GET" and _TARGET.fullmatch(head.target):
        return None if any(name in headers for name in _PASSED_ON) else "stream"
    if head.method != "POST" or head.target != b"/publish":
        return None
    if any(name in headers for name in _PUBLISH_PASSED_ON):
        return None
    length = headers.get("Content-Length", "")
    if not (length.isdigit() and length.isascii()) or len(length) > 18:
        return None
    if headers.get("Content-Type", "").lower() != JSON:
        return None  # NDJSON, parameters, anything else: aiohttp reads it
    head.length = int(length)
    return "publish"


class Request(NamedTuple):
    """The next request on a connection, as far as the front has read it."""

    # Who serves it: the front ("stream", "publish"), or "aiohttp"; "body" while the
    # body of a publish the front serves is still on its way.
    by: Literal["stream", "publish", "aiohttp", "body"]
    head: Head | None = None
    body: bytes = b""
    size: int = 0  # its bytes at the start of the buffer (a stream's: its head)


_AIOHTTP = Request("aiohttp")


class RequestReader:
    """Reads a connection's next request from the bytes received so far: the head as llhttp
    reads it, then a JSON publish's body once all of it is here (only its length is checked
    until then). Raises the HubError the front answers a refused head with."""

    __slots__ = ("_body", "_fed", "_reader")

    def __init__(self) -> None:
        self._reader: HeadReader | None = None
        self._fed = 0  # how much of the buffer the head's reader has been fed
        self._body: tuple[Head, int, int] | None = None  # a head, where its body starts, ends

    def read(self, buffer: bytearray, max_body: int) -> Request | None:
        """The request at the start of `buffer`; None while more bytes are needed."""
        if self._body is not None:
            waiting, start, size = self._body
            if len(buffer) < size:
                return None
            self._body = None
            return Request("publish", waiting, bytes(buffer[start:size]), size)
        if self._reader is None:
            self._reader, self._fed = HeadReader(), 0
        head = self._reader.feed(bytes(buffer[self._fed :]))
        self._fed = len(buffer)
        if head is None:
            return _AIOHTTP if len(buffer) > MAX_HEAD else None
        self._reader = None
        error = refusal(head)
        if error is not None:
            raise error
        end = head_end(buffer)
        by = _served_here(head) if end <= MAX_HEAD else None
        if by == "stream":
            return Request(by, head, size=end)
        if by is None or head.length > max_body:
            return _AIOHTTP  # aiohttp answers (413 for a body over the limit)
        size = end + head.length
        if len(buffer) >= size:
            return Request(by, head, bytes(buffer[end:size]), size)
        self._body = (head, end, size)
        return Request("body", head)


class _Date:
    """The Date header's value, made once a second."""

    second = 0
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True)
        return cls.value


def answer_head(
    status: int, content_type: str, length: int, headers: dict[str, str], close: bool
) -> bytes:
    """The head of a whole answer (a publish's, or a refusal's)."""
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        f"Date: {_Date.now()}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stream_head(cors: dict[str, str]) -> bytes:
    """The head of an event stream (chunked, never buffered by a proxy)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in cors.items())
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: keep-alive\r\n"
        "X-Accel-Buffering: no\r\n"
        "Transfer-Encoding: chunked\r\n"
        f"Date: {_Date.now()}\r\n"
        f"{extra}\r\n"
    ).encode()
