"""Coalesce identical concurrent work: N callers with one key share one execution."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run `fn` once per key at a time; returns (result, shared) — shared is True for followers."""
        task = self._inflight.get(key)
        if task is not None:
            return await asyncio.shield(task), True

        async def run() -> T:
            return await fn()

        task = asyncio.ensure_future(run())
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shield: a cancelled leader (client went away) must not cancel its followers' work.
        return await asyncio.shield(task), False

    def __len__(self) -> int:
        return len(self._inflight)
