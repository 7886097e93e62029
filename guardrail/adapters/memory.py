"""In-process adapters: the LRU verdict cache with TTL (alone, or in front of Redis), and the no-model judge port."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from guardrail.errors import ModelUnavailable
from guardrail.ports import CacheUnavailable, ScoreBatch, VerdictCache


class MemoryVerdictCache:
    """Bounded LRU with per-entry expiry; a single process's event loop owns it (no locks)."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        now = time.monotonic()
        out: dict[str, float] = {}
        for k in keys:
            hit = self._data.get(k)
            if hit is None:
                continue
            expires, value = hit
            if expires < now:
                del self._data[k]
                continue
            self._data.move_to_end(k)
            out[k] = value
        return out

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        if self._max <= 0 or ttl_s <= 0:
            return
        expires = time.monotonic() + ttl_s
        for k, v in items.items():
            self._data[k] = (expires, v)
            self._data.move_to_end(k)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def ping(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._data)


class TieredVerdictCache:
    """A process-local LRU in front of a shared cache (Redis).

    Reads try the local layer first and ask the shared one only for what it lacks, copying what
    it finds; writes go to both. The local copy lives at most `local_ttl_s` (or the verdict TTL, if
    shorter). A shared cache that is down (`CacheUnavailable`) still leaves the local hits usable.
    """

    def __init__(self, shared: VerdictCache, *, local_ttl_s: int, max_entries: int) -> None:
        self.shared = shared
        self.local = MemoryVerdictCache(max_entries)
        self.local_ttl_s = local_ttl_s

    async def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        found = await self.local.get_many(keys)
        if len(found) == len(keys):
            return found
        rest = [k for k in keys if k not in found]
        try:
            remote = await self.shared.get_many(rest)
        except CacheUnavailable:
            if found:
                return found
            raise
        if remote:
            await self.local.set_many(remote, self.local_ttl_s)
            found.update(remote)
        return found

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        await self.local.set_many(items, min(ttl_s, self.local_ttl_s))
        await self.shared.set_many(items, ttl_s)

    async def ping(self) -> bool:
        return await self.shared.ping()


class UnavailableJudgeModel:
    """The judge-model port of a service without a model (GUARDRAIL_ROLE=management, no inference URL)."""

    async def first_tokens(self, prompts: Sequence[str]) -> ScoreBatch:
        raise ModelUnavailable("this service has no judge model (GUARDRAIL_ROLE=management without "
                               "GUARDRAIL_INFERENCE_URL); set it to use the playground")

    async def generate(self, prompt: str, *, max_tokens: int) -> str:
        await self.first_tokens([prompt])
        return ""

    async def ready(self) -> bool:
        return False
