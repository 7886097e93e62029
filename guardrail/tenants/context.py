"""What the judge path needs to know about the caller, cached in process.

`TenantContext` is resolved from an API key's hash. It is cached for a short TTL, dropped on any
configuration edit of the tenant, and kept as the *last known* context after expiry, so that
when the database is unavailable the judge still serves from the last known category set.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class CategoryConf:
    id: str
    name: str
    definition: str
    threshold: float
    enabled: bool


@dataclass(frozen=True, slots=True)
class TenantContext:
    tenant_id: str
    api_key_id: str
    fail_mode: str
    cache_enabled: bool
    log_text_mode: str
    version: int
    categories: tuple[CategoryConf, ...]


class ContextCache:
    """In-process layer; `RedisContextCache` adds a shared layer for many instances."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, TenantContext]] = {}

    async def fresh(self, key_hash: str) -> TenantContext | None:
        hit = self._entries.get(key_hash)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        return None

    def last_known(self, key_hash: str) -> TenantContext | None:
        hit = self._entries.get(key_hash)
        return hit[1] if hit else None

    async def put(self, key_hash: str, ctx: TenantContext) -> None:
        self._entries[key_hash] = (time.monotonic() + self._ttl, ctx)

    async def forget_key(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)

    async def forget_key_id(self, key_id: str, tenant_id: str) -> None:
        """Drop a revoked key's context entirely: it must not even serve as last known."""
        for k, (_, ctx) in list(self._entries.items()):
            if ctx.api_key_id == key_id:
                del self._entries[k]
        await self.invalidate_tenant(tenant_id)

    async def invalidate_tenant(self, tenant_id: str) -> None:
        """Expire (but keep as last known) every cached context of the tenant."""
        for k, (_, ctx) in list(self._entries.items()):
            if ctx.tenant_id == tenant_id:
                self._entries[k] = (0.0, ctx)


def context_to_json(ctx: TenantContext) -> str:
    return json.dumps(asdict(ctx), ensure_ascii=False)


def context_from_json(raw: str | bytes) -> TenantContext:
    d = json.loads(raw)
    d["categories"] = tuple(CategoryConf(**c) for c in d["categories"])
    return TenantContext(**d)
