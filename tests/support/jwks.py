"""An identity provider for tests: real RS256/ES256 keys, and a JWKS served over real HTTP.

`JwksServer` is `http.server` on 127.0.0.1 (a free port, or one given) in a thread
of its own, so that it answers whatever the event loop under test is doing. It
counts the requests it gets, serves whichever keys it is told to (rotation), and
can be taken down: answering 503 (`down = True`), slowly (`delay`), or not
listening at all (`stop()`, then `start()` again on the same port).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PATH = "/.well-known/jwks.json"


@cache
def _rsa(seed: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class SigningKey:
    """A provider's private key, its `kid` and algorithm; signs tokens, shows its public JWK."""

    kid: str
    algorithm: str
    private: Any = field(repr=False)

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        to_jwk = RSAAlgorithm.to_jwk if self.algorithm.startswith("RS") else ECAlgorithm.to_jwk
        data: dict[str, Any] = to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": self.algorithm, **extra}

    def token(self, claims: dict[str, Any], **headers: Any) -> str:
        claims = {"iat": int(time.time()), "exp": int(time.time()) + 600, **claims}
        return jwt.encode(
            claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **headers}
        )


def rsa_key(kid: str | None = None) -> SigningKey:
    """An RS256 key (2048 bits; the same `kid` gives the same key within a run)."""
    kid = kid or uuid.uuid4().hex
    return SigningKey(kid, "RS256", _rsa(kid))


def ec_key(kid: str | None = None) -> SigningKey:
    """An ES256 key (P-256)."""
    return SigningKey(kid or uuid.uuid4().hex, "ES256", ec.generate_private_key(ec.SECP256R1()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JwksServer:
    """A JWKS document at `url`, served over HTTP by a thread."""

    def __init__(self, *keys: SigningKey, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.document: dict[str, Any] = {"keys": [key.jwk() for key in keys]}
        self.requests = 0
        self.down = False  # answer 503
        self.delay = 0.0  # seconds before answering
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def publish(self, *keys: SigningKey) -> None:
        """Serve exactly these keys from now on (a rotation)."""
        self.document = {"keys": [key.jwk() for key in keys]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.requests += 1
                if owner.delay:
                    time.sleep(owner.delay)
                if owner.down or self.path != PATH:
                    status, body = (503 if owner.down else 404), b"{}"
                else:
                    status, body = 200, json.dumps(owner.document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> JwksServer:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: fetches are refused at connect."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    """A running JWKS server with no keys yet (`publish` some); stopped at teardown."""
    server = JwksServer().start()
    yield server
    server.stop()
