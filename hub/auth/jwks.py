"""Signing keys from an identity provider's JWKS URL, for one kind of token.

The token's `kid` picks the key. PyJWT fetches the document (`PyJWKClient`,
urllib, synchronous) and parses each key (`PyJWK`); the fetch always runs in a
daemon thread with a deadline, so the event loop never waits on the provider,
and the lookup a request makes (`key`) is a dictionary read that never fetches:

- at start-up the keys are fetched once, waited for at most `start_wait`
  seconds; a provider that is down then does not stop the hub (it is logged,
  and tokens are refused with a 401 until keys arrive);
- one background task fetches them again every `refresh_interval` seconds
  (providers publish a new key before they sign with it, so a rotation is
  usually known before its first token), retrying sooner while fetches fail;
- a token naming an unknown `kid` wakes that task, which fetches at most once
  every `min_interval` seconds however many unknown `kid`s arrive, so garbage
  `kid`s cannot make the hub hammer the provider. The request waits for that
  fetch (`refreshed`, at most `unknown_wait` seconds) and is checked once more:
  the first token signed with a freshly rotated key is accepted, not refused
  (an `EventSource` refused with 401 never tries again);
- a fetch that fails (provider down, an error status, a document without any
  usable key) changes nothing: known keys keep working. A successful fetch
  replaces the set: a key the provider removed is refused from then on, and
  `generation` changes so that verifiers forget tokens they accepted with it.

Only public asymmetric signing keys are used (RSA, EC, OKP; `use` absent or
`sig`); each key accepts the one algorithm PyJWT gives it (its `alg`, or the
default for its type and curve), never HS* or `none`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWKClient

from hub import __version__
from hub.errors import Unauthorized
from hub.tasks import stop

log = logging.getLogger(__name__)

_PUBLIC = (RSAPublicKey, EllipticCurvePublicKey, Ed25519PublicKey, Ed448PublicKey)
# Failed fetches are retried after min_interval, doubling up to this (or refresh_interval).
_MAX_RETRY = 60.0
# Requests waiting for a fetch, at most; beyond them an unknown `kid` is refused at once.
_MAX_WAITING = 1000


def _usable(raw: Any) -> PyJWK | None:
    """A JWK as a verification key, or None when it is not one the hub verifies with."""
    if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
        return None
    try:
        key = PyJWK.from_dict(raw)
    except Exception:  # unknown kty/crv/alg, bad numbers: PyJWKSet skips these too
        return None
    if not isinstance(key.key, _PUBLIC) or key.algorithm_name.startswith("HS"):
        return None
    return key


def in_daemon_thread(
    fetch: Callable[[], Any], kind: str
) -> tuple[threading.Thread, asyncio.Future[Any]]:
    """`fetch()` in a daemon thread, and the future of its result on this loop.

    A daemon thread left behind by a deadline blocks neither the hub's exit (the default
    executor's threads would) nor another fetch (the thread is checked first).
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Any] = loop.create_future()

    def settle(data: Any, error: Exception | None) -> None:
        if result.done():
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(data)

    def run() -> None:
        data, error = None, None
        try:
            data = fetch()
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, data, error)

    thread = threading.Thread(target=run, name=f"hub-jwks-{kind}", daemon=True)
    thread.start()
    return thread, result


class KeyNotYetKnown(Unauthorized):
    """The token names a key the hub does not hold (yet): a refresh has been asked for."""

    def __init__(self, detail: str, kid: str | None) -> None:
        super().__init__(detail)
        self.kid = kid


class JwksKeys:
    """The keys of one JWKS URL, kept fresh by a background task (`start` / `close`)."""

    def __init__(
        self,
        url: str,
        kind: str,
        *,
        refresh_interval: float = 300.0,
        min_interval: float = 5.0,
        timeout: float = 5.0,
        start_wait: float = 5.0,
        unknown_wait: float = 5.0,
    ) -> None:
        self.url = url
        self._kind = kind
        self._client = PyJWKClient(
            url,
            cache_keys=False,
            cache_jwk_set=False,  # the set is kept here, replaced only by a good fetch
            timeout=timeout,
            headers={"User-Agent": f"hub/{__version__}"},
        )
        self._timeout = timeout
        self._fetching: threading.Thread | None = None
        self._waiting = 0  # requests waiting for a fetch (`refreshed`)
        self._refresh_interval = refresh_interval
        self._min_interval = min_interval
        self._start_wait = start_wait
        self._unknown_wait = unknown_wait
        # kid -> (key, the JWK's JSON, to tell a changed key from the same one)
        self._keys: dict[str | None, tuple[PyJWK, str]] = {}
        self.generation = 0  # changes when a known key is removed or changed
        self.fetches = 0  # attempts, successful or not
        self._ended = 0  # attempts that have ended
        self._last_attempt = -float("inf")
        self._wake: asyncio.Event | None = None
        self._fetched: asyncio.Event | None = None
        self._next_fetch: asyncio.Event | None = None  # set when the next fetch ends
        self._task: asyncio.Task[None] | None = None

    @property
    def known(self) -> int:
        return len(self._keys)

    async def start(self) -> None:
        """Fetch the keys (waiting up to `start_wait` s for them), then keep them fresh."""
        if self._task is not None:
            return
        self._wake = asyncio.Event()
        self._fetched = asyncio.Event()
        self._next_fetch = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"hub-jwks-{self._kind}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._start_wait):
                await self._fetched.wait()
        if not self._keys:
            log.warning(
                "%s tokens: no signing keys from %s yet; tokens are refused until they "
                "arrive (retrying in the background)",
                self._kind,
                self.url,
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop(task)

    def key(self, kid: str | None) -> PyJWK:
        """The key a token's `kid` names; Unauthorized (and a refresh asked for) if unknown."""
        if kid is None:
            if len(self._keys) == 1:  # a provider with one key may leave `kid` out
                return next(iter(self._keys.values()))[0]
            if self._keys:
                raise Unauthorized(f"invalid {self._kind} token: no 'kid' to pick a key by")
        else:
            known = self._keys.get(kid)
            if known is not None:
                return known[0]
        if self._wake is not None:
            self._wake.set()  # the refresher fetches when its rate limit allows
        if not self._keys:
            raise KeyNotYetKnown(
                f"{self._kind} signing keys are not available yet (identity provider "
                "not reached); try again shortly",
                kid,
            )
        raise KeyNotYetKnown(f"invalid {self._kind} token: unknown signing key ('kid')", kid)

    async def refreshed(self, kid: str | None) -> None:
        """Until `kid` is known or a fetch started from now has ended (one under way may
        predate the key), at most `unknown_wait` seconds; at once when _MAX_WAITING
        requests wait already (each holds a connection: a flood must not grow them)."""
        if self._waiting >= _MAX_WAITING:
            return
        wanted = self.fetches + 1
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._unknown_wait):
                    while self._next_fetch is not None and self._ended < wanted:
                        await self._next_fetch.wait()
                        if kid in self._keys or (kid is None and self._keys):
                            return
        finally:
            self._waiting -= 1

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._fetched is not None
        retry = self._min_interval
        while True:
            wait = self._last_attempt + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()  # a kid asked for during the fetch wakes the next one
            ok = await self._fetch()
            self._fetched.set()
            self._ended += 1
            assert self._next_fetch is not None
            ended, self._next_fetch = self._next_fetch, asyncio.Event()
            ended.set()
            if ok:
                retry, delay = self._min_interval, self._refresh_interval
            else:
                delay = min(retry, self._refresh_interval)
                retry = min(retry * 2, _MAX_RETRY)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the event is set, and `close` would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _fetch(self) -> bool:
        """One fetch in a thread; the set replaced only if it holds a usable key."""
        self._last_attempt = time.monotonic()
        self.fetches += 1
        try:
            if self._fetching is not None and self._fetching.is_alive():
                raise TimeoutError("the previous fetch has not ended yet")
            # urllib's timeout is per socket operation: a provider trickling its answer
            # never times out, so the fetch has a deadline of its own.
            self._fetching, result = in_daemon_thread(self._client.fetch_data, self._kind)
            async with asyncio.timeout(2 * self._timeout):
                data = await result
            raw_keys = data.get("keys")
            if not isinstance(raw_keys, list):
                raise ValueError("no 'keys' list")
        except Exception as exc:
            log.warning(
                "%s tokens: fetching signing keys from %s failed (%s); keeping %d known key(s)",
                self._kind,
                self.url,
                type(exc).__name__ if not str(exc) else str(exc)[:200],
                len(self._keys),
            )
            return False
        keys: dict[str | None, tuple[PyJWK, str]] = {}
        for raw in raw_keys:
            key = _usable(raw)
            if key is not None:
                keys[key.key_id] = (key, json.dumps(raw, sort_keys=True))
        if not keys:
            log.warning(
                "%s tokens: %s holds no usable signing key; keeping %d known key(s)",
                self._kind,
                self.url,
                len(self._keys),
            )
            return False
        if any(keys.get(kid, (None, None))[1] != known for kid, (_, known) in self._keys.items()):
            self.generation += 1
        if keys.keys() != self._keys.keys():
            log.info("%s tokens: %d signing key(s) from %s", self._kind, len(keys), self.url)
        self._keys = keys
        return True
