"""Redis (Memorystore) adapters: the shared verdict cache and the shared tenant-context cache.

A cache must never fail or slow a judgement. Every Redis call has a tight timeout (tens of
milliseconds); a failure opens a breaker for `cooldown_s`, during which Redis is not tried at all
(requests are served uncached at full speed), then the next call probes it again, so the cache
comes back by itself when Redis does. Failures are counted in `guardrail_cache_errors_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import redis.asyncio as aioredis

from guardrail.observability import CACHE_ERRORS, log
from guardrail.ports import CacheUnavailable
from guardrail.tenants.context import ContextCache, TenantContext, context_from_json, context_to_json

T = TypeVar("T")


class RedisBreaker:
    def __init__(self, url: str, *, timeout_s: float = 0.05, cooldown_s: float = 1.0) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              retry_on_timeout=False, retry=None, max_connections=256)
        self.cooldown_s = cooldown_s
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if self.is_open:
            raise CacheUnavailable("redis breaker open")
        try:
            return await fn(self.client)
        except Exception as exc:
            if not self.is_open:
                log.warning("redis unavailable; serving without the cache",
                            extra={"fields": {"error": exc.__class__.__name__}})
            self._open_until = time.monotonic() + self.cooldown_s
            CACHE_ERRORS.inc()
            raise CacheUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        """Readiness probe: always asks Redis (ignores the breaker), never raises."""
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        # A connection stuck on a dead or silent peer must not hold up shutdown.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.aclose(), timeout=2.0)


class RedisVerdictCache:
    def __init__(self, breaker: RedisBreaker, prefix: str = "gr:verdict:") -> None:
        self._b = breaker
        self._prefix = prefix

    async def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        full = [self._prefix + k for k in keys]
        values = await self._b.call(lambda r: r.mget(full))
        return {k: float(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        if not items or ttl_s <= 0:
            return

        async def go(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(self._prefix + k, repr(v), ex=ttl_s)
            await pipe.execute()

        await self._b.call(go)

    async def ping(self) -> bool:
        return await self._b.ping()


class RedisContextCache(ContextCache):
    """API key hash → tenant context shared by every instance, over the in-process layer.

    Edits delete the tenant's entries in Redis, so every instance sees them on its next
    request; the in-process layer keeps only the last known context for database outages.
    """

    def __init__(self, breaker: RedisBreaker, ttl_s: float, prefix: str = "gr:ctx:") -> None:
        super().__init__(ttl_s=0.0)  # local entries serve only as last known
        self._b = breaker
        self._redis_ttl = max(1, int(ttl_s))
        self._prefix = prefix
        # key hash -> (the JSON Redis gave, its parse): the same bytes are not parsed again.
        self._decoded: dict[str, tuple[bytes | str, TenantContext]] = {}

    async def fresh(self, key_hash: str) -> TenantContext | None:
        try:
            raw = await self._b.call(lambda r: r.get(self._prefix + key_hash))
        except CacheUnavailable:
            return None
        if not raw:
            return None
        seen = self._decoded.get(key_hash)
        if seen is not None and seen[0] == raw:
            return seen[1]
        ctx = context_from_json(raw)
        if len(self._decoded) >= 10_000:
            self._decoded.clear()
        self._decoded[key_hash] = (raw, ctx)
        return ctx

    async def put(self, key_hash: str, ctx: TenantContext) -> None:
        await super().put(key_hash, ctx)

        async def go(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.set(self._prefix + key_hash, context_to_json(ctx), ex=self._redis_ttl)
            pipe.sadd(f"{self._prefix}tenant:{ctx.tenant_id}", key_hash)
            pipe.expire(f"{self._prefix}tenant:{ctx.tenant_id}", self._redis_ttl)
            await pipe.execute()

        try:
            await self._b.call(go)
        except CacheUnavailable:
            pass

    async def forget_key(self, key_hash: str) -> None:
        await super().forget_key(key_hash)
        try:
            await self._b.call(lambda r: r.delete(self._prefix + key_hash))
        except CacheUnavailable:
            pass

    async def invalidate_tenant(self, tenant_id: str) -> None:
        await super().invalidate_tenant(tenant_id)
        members_key = f"{self._prefix}tenant:{tenant_id}"

        async def go(r: aioredis.Redis) -> None:
            members = await r.smembers(members_key)
            keys = [self._prefix + (m.decode() if isinstance(m, bytes) else m) for m in members]
            await r.delete(members_key, *keys)

        try:
            await self._b.call(go)
        except CacheUnavailable:
            # Without Redis this instance still drops its own copy; the others' entries expire
            # within the TTL. Logged by the breaker.
            pass
