"""API keys and admin tokens: generation, hashing, comparison.

Keys are random 32-byte secrets, so a single SHA-256 is a sound storage hash (no dictionary to
attack) and lets the key be looked up by its hash in one indexed query. Only the hash and a
short visible prefix are stored; the key itself is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

KeyKind = Literal["judge", "admin"]
_PREFIX: dict[KeyKind, str] = {"judge": "gr", "admin": "gra"}
VISIBLE_PREFIX_CHARS = 10


def new_key(kind: KeyKind) -> str:
    """A fresh secret, e.g. `gr-3fa9…` for judge keys and `gra-…` for tenant admin keys."""
    return f"{_PREFIX[kind]}-{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_PREFIX_CHARS]


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
