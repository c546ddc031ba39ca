"""Tokens: verifying them (PyJWT, with a cache and a fast path), and where requests
carry them."""
