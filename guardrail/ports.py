"""The swappable seams of the service: tiny protocols with a real and an in-process adapter each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The first generated token's top-k distribution for one prompt."""

    top_logprobs: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ScoreBatch:
    results: list[FirstToken]
    prompt_tokens: int = 0
    cached_tokens: int = 0


class JudgeModel(Protocol):
    """Scores prompts by their first token; generates short text on request."""

    async def first_tokens(self, prompts: Sequence[str]) -> ScoreBatch: ...

    async def generate(self, prompt: str, *, max_tokens: int) -> str: ...

    async def ready(self) -> bool: ...


class CacheUnavailable(RuntimeError):
    """The cache could not be used (down, slow, or its breaker is open); already counted and logged."""


class VerdictCache(Protocol):
    """Per-category scores by key; misses are absent from the returned mapping."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, float]: ...

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None: ...

    async def ping(self) -> bool: ...


@dataclass(slots=True)
class JudgementEvent:
    """What the judgement log stores; built on the request path, written off it."""

    id: str
    tenant_id: str
    api_key_id: str | None
    direction: str
    flagged: bool
    flagged_categories: list[str]
    scores: dict[str, Any]
    model: str
    latency_ms: float
    cached: bool
    text: str | None
    prompt: str | None
    text_sha256: str
    text_mode: str
    reason: str | None
    created_at: str
    extra: dict[str, Any] = field(default_factory=dict)


class EventPublisher(Protocol):
    """Accepts judgement events without blocking the request; durable delivery is its job."""

    def publish(self, event: JudgementEvent) -> None: ...

    async def flush(self, timeout_s: float) -> None: ...

    def depth(self) -> int: ...
