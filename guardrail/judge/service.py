"""The judge: validate, look up cached verdicts, score the rest with the model, log the event.

Each category is scored by its own prompt and cached under its own key, which holds the tenant,
the model, the prompt version, the normalised text (and context prompt), and the category's name
and definition. An edited definition therefore has a new key (no stale verdict can be served)
while the tenant's other categories keep their cached verdicts; and adding a category cannot
change another category's score.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from guardrail.errors import InvalidRequest, ModelOutputInvalid, ModelTimeout, ModelUnavailable, UnknownCategory
from guardrail.judge.schemas import CategoryVerdict, JudgeRequest, JudgeResponse
from guardrail.judge.singleflight import SingleFlight
from guardrail.logs.privacy import stored_text, text_sha256
from guardrail.observability import CACHE_ERRORS, CACHE_EVENTS, VERDICTS, labelled, log
from guardrail.ports import CacheUnavailable, EventPublisher, JudgementEvent, JudgeModel, VerdictCache
from guardrail.tenants.context import CategoryConf, TenantContext
from inference.contract import (
    MAX_TEXT_CHARS,
    PROMPT_VERSION,
    CategorySpec,
    Direction,
    InvalidModelOutput,
    build_prompts,
    clean_reason,
    explain_prompt,
    normalize_text,
    score_from_logprobs,
)

INVALID = -1.0  # sentinel score of a category whose model output was not a Yes/No answer


def verdict_keys(ctx: TenantContext, model: str, req: JudgeRequest, cats: Sequence[CategoryConf]) -> list[str]:
    """One cache key per category; the text is normalised and hashed once per request, not per category."""
    head = hashlib.sha256(json.dumps(
        [ctx.tenant_id, model, PROMPT_VERSION, req.direction,
         normalize_text(req.prompt or "") if req.direction == "output" else "", normalize_text(req.text)],
        ensure_ascii=False).encode())
    keys = []
    for cat in cats:
        h = head.copy()
        h.update(_category_part(cat.name, cat.definition))
        keys.append("v2:" + h.hexdigest())
    return keys


@functools.lru_cache(maxsize=4096)
def _category_part(name: str, definition: str) -> bytes:
    return json.dumps([name, definition], ensure_ascii=False).encode()


def validate(req: JudgeRequest) -> None:
    if not req.text.strip():
        raise InvalidRequest("'text' is empty", param="text", code="empty_text")
    if len(req.text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"'text' has {len(req.text)} characters; the limit is {MAX_TEXT_CHARS}",
                             param="text", code="text_too_long")
    if req.prompt is not None and len(req.prompt) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"'prompt' has {len(req.prompt)} characters; the limit is {MAX_TEXT_CHARS}",
                             param="prompt", code="text_too_long")


def select_categories(ctx: TenantContext, wanted: Sequence[str] | None) -> list[CategoryConf]:
    if wanted is None:
        return [c for c in ctx.categories if c.enabled]
    by_id = {c.id: c for c in ctx.categories}
    out: list[CategoryConf] = []
    for i, cid in enumerate(dict.fromkeys(wanted)):
        c = by_id.get(cid)
        if c is None:
            raise UnknownCategory(f"unknown category {cid!r}; this tenant has {sorted(by_id)}",
                                  param=f"categories[{i}]")
        if not c.enabled:
            raise InvalidRequest(f"category {cid!r} is disabled for this tenant", param=f"categories[{i}]",
                                 code="category_disabled")
        out.append(c)
    return out


class JudgeService:
    def __init__(self, *, model: JudgeModel, model_name: str, cache: VerdictCache, publisher: EventPublisher,
                 cache_ttl_s: int, explain_max_tokens: int = 64, model_revision: str | None = None) -> None:
        self.model = model
        self.model_name = model_name
        # The served name stays the same across model versions; the revision tells them apart in the cache.
        self.cache_model = f"{model_name}@{model_revision}" if model_revision else model_name
        self.cache = cache
        self.publisher = publisher
        self.cache_ttl_s = cache_ttl_s
        self.explain_max_tokens = explain_max_tokens
        self._flights: SingleFlight[dict[str, float]] = SingleFlight()

    async def judge(self, ctx: TenantContext, req: JudgeRequest) -> JudgeResponse:
        t0 = time.perf_counter()
        validate(req)
        cats = select_categories(ctx, req.categories)
        keys = verdict_keys(ctx, self.cache_model, req, cats)
        use_cache = ctx.cache_enabled and self.cache_ttl_s > 0
        scores: dict[str, float] = await self._cached(keys) if use_cache else {}
        labelled(CACHE_EVENTS, "hit").inc(len(scores))
        missing = [(k, c) for k, c in zip(keys, cats, strict=True) if k not in scores]
        labelled(CACHE_EVENTS, "miss").inc(len(missing))
        degraded: str | None = None
        if missing:
            flight_key = hashlib.sha256("|".join(k for k, _ in missing).encode()).hexdigest()
            try:
                fresh, _ = await self._flights.do(flight_key, lambda: self._score(req, missing, use_cache))
            except (ModelUnavailable, ModelTimeout) as exc:
                if ctx.fail_mode != "open":
                    raise
                degraded = exc.code
                fresh = {}
            scores.update(fresh)

        verdicts: list[CategoryVerdict] = []
        for key, c in zip(keys, cats, strict=True):
            s = scores.get(key)
            if s is None:
                verdicts.append(CategoryVerdict(id=c.id, name=c.name, score=None, threshold=c.threshold,
                                                flagged=False, error=degraded))
            elif s == INVALID:
                if ctx.fail_mode == "open":
                    raise ModelOutputInvalid(f"the model gave no Yes/No answer for category {c.id!r}")
                # Fail closed: an answer we cannot read is treated as a violation, never as safe.
                verdicts.append(CategoryVerdict(id=c.id, name=c.name, score=1.0, threshold=c.threshold,
                                                flagged=True, error="model_output_invalid"))
            else:
                verdicts.append(CategoryVerdict(id=c.id, name=c.name, score=round(s, 6), threshold=c.threshold,
                                                flagged=s >= c.threshold))
        for v in verdicts:
            labelled(VERDICTS, v.id, "true" if v.flagged else "false").inc()
        flagged = any(v.flagged for v in verdicts)
        reason = None
        if req.explain and degraded is None:
            reason = await self._explain(req, [c for c, v in zip(cats, verdicts, strict=True) if v.flagged])
        resp = JudgeResponse(
            id="jdg_" + uuid.uuid4().hex, flagged=flagged, categories=verdicts, reason=reason,
            model=self.model_name, cached=bool(cats) and not missing, direction=req.direction,
            latency_ms=round((time.perf_counter() - t0) * 1000, 2), degraded=degraded,
        )
        self._log(ctx, req, resp)
        return resp

    async def score_specs(self, texts: Sequence[str], specs: Sequence[CategorySpec], direction: Direction = "input"
                          ) -> list[list[float | None]]:
        """Score each text against each category spec with the judge's own prompts, uncached and unlogged.

        For trying category drafts before they are saved (the dashboard's playground). Returns one row
        per text with one score per spec; None where the model's answer was not a readable Yes/No.
        """
        for t in texts:
            validate(JudgeRequest(text=t, direction=direction))
        prompts = [p for t in texts for p in build_prompts(t, specs, direction)]
        batch = await self.model.first_tokens(prompts) if prompts else None
        flat: list[float | None] = []
        for ft in batch.results if batch else []:
            try:
                flat.append(score_from_logprobs(ft.top_logprobs))
            except InvalidModelOutput:
                flat.append(None)
        n = len(specs)
        return [flat[i * n:(i + 1) * n] for i in range(len(texts))]

    async def _cached(self, keys: list[str]) -> dict[str, float]:
        try:
            return await self.cache.get_many(keys)
        except CacheUnavailable:
            return {}
        except Exception as exc:  # a broken cache never fails a judgement
            CACHE_ERRORS.inc()
            log.warning("verdict cache read failed; serving uncached", extra={"fields": {"error": repr(exc)}})
            return {}

    async def _score(self, req: JudgeRequest, missing: list[tuple[str, CategoryConf]], use_cache: bool
                     ) -> dict[str, float]:
        specs = [CategorySpec(c.id, c.name, c.definition) for _, c in missing]
        batch = await self.model.first_tokens(build_prompts(req.text, specs, req.direction, req.prompt))
        out: dict[str, float] = {}
        for (key, c), ft in zip(missing, batch.results, strict=True):
            try:
                out[key] = score_from_logprobs(ft.top_logprobs)
            except InvalidModelOutput as exc:
                log.warning("unreadable model answer", extra={"fields": {"category": c.id, "error": str(exc)}})
                out[key] = INVALID
        if use_cache:
            good = {k: v for k, v in out.items() if v != INVALID}
            try:
                await self.cache.set_many(good, self.cache_ttl_s)
            except CacheUnavailable:
                pass
            except Exception as exc:
                CACHE_ERRORS.inc()
                log.warning("verdict cache write failed", extra={"fields": {"error": repr(exc)}})
        return out

    async def _explain(self, req: JudgeRequest, flagged: list[CategoryConf]) -> str:
        specs = [CategorySpec(c.id, c.name, c.definition) for c in flagged]
        text = await self.model.generate(explain_prompt(req.text, specs, req.direction, req.prompt),
                                         max_tokens=self.explain_max_tokens)
        return clean_reason(text)

    def _log(self, ctx: TenantContext, req: JudgeRequest, resp: JudgeResponse) -> None:
        self.publisher.publish(JudgementEvent(
            id=resp.id, tenant_id=ctx.tenant_id, api_key_id=ctx.api_key_id, direction=req.direction,
            flagged=resp.flagged, flagged_categories=[v.id for v in resp.categories if v.flagged],
            scores={v.id: {"score": v.score, "threshold": v.threshold, "flagged": v.flagged, "name": v.name}
                    for v in resp.categories},
            model=resp.model, latency_ms=resp.latency_ms, cached=resp.cached,
            text=stored_text(req.text, ctx.log_text_mode),
            prompt=stored_text(req.prompt, ctx.log_text_mode),
            text_sha256=text_sha256(req.text), text_mode=ctx.log_text_mode, reason=resp.reason,
            created_at=datetime.now(UTC).isoformat(),
        ))
