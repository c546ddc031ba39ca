"""The identity provider fixture for the token tests."""

from tests.support.jwks import jwks_server

__all__ = ["jwks_server"]
