"""Judge-model adapter for any OpenAI-compatible vLLM server (`/v1/completions`).

All category prompts of one judgement go in one request (`prompt` as a list): vLLM schedules them
together and its prefix cache computes the shared instructions + text once. Connection failures
are retried with backoff (the engine may be restarting); timeouts are not (the engine is alive but
slow, and a retry would only queue more work). Errors map to ModelUnavailable (503) and
ModelTimeout (504).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from guardrail.errors import ModelOutputInvalid, ModelTimeout, ModelUnavailable
from guardrail.observability import MODEL_LATENCY
from guardrail.ports import FirstToken, ScoreBatch

TOP_LOGPROBS = 20


class VLLMJudgeModel:
    def __init__(self, base_url: str, model: str, *, timeout_s: float = 30.0, retries: int = 2,
                 backoff_s: float = 0.2, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.model = model
        self._retries = retries
        self._backoff_s = backoff_s
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, Any], op: str) -> dict[str, Any]:
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                resp = await self._client.post(path, json=body)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
                    continue
                raise ModelTimeout("the judge model did not answer in time; retry later",
                                   retry_after=2) from exc
            except httpx.TransportError as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
                    continue
                raise ModelUnavailable("the judge model is unreachable; retry later", retry_after=5) from exc
            finally:
                MODEL_LATENCY.labels(op=op).observe(time.perf_counter() - t0)
            if resp.status_code >= 500:
                raise ModelUnavailable(f"the judge model failed (HTTP {resp.status_code}); retry later",
                                       retry_after=5)
            if resp.status_code >= 400:
                raise ModelOutputInvalid(f"the judge model rejected the request (HTTP {resp.status_code}): "
                                         f"{_upstream_message(resp)}")
            data: dict[str, Any] = resp.json()
            return data

    async def first_tokens(self, prompts: Sequence[str]) -> ScoreBatch:
        body = {"model": self.model, "prompt": list(prompts), "max_tokens": 1,
                "logprobs": TOP_LOGPROBS, "temperature": 0.0}
        data = await self._post("/v1/completions", body, "score")
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise ModelOutputInvalid(f"expected {len(prompts)} choices, got {len(choices)}")
        results = []
        for ch in choices:
            top = ((ch.get("logprobs") or {}).get("top_logprobs") or [None])[0]
            results.append(FirstToken(top_logprobs=dict(top or {})))
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return ScoreBatch(results, int(usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0))

    async def generate(self, prompt: str, *, max_tokens: int) -> str:
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
                "repetition_penalty": 1.1}
        data = await self._post("/v1/completions", body, "explain")
        choices = data.get("choices") or [{}]
        return str(choices[0].get("text") or "")

    async def ready(self) -> bool:
        try:
            resp = await self._client.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200


def _upstream_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    err = body.get("error") if isinstance(body, dict) else None
    msg = err.get("message") if isinstance(err, dict) else body.get("message") if isinstance(body, dict) else None
    return str(msg or body)[:300]


async def served_model_name(base_url: str, timeout_s: float = 5.0) -> str:
    """The first model id the server lists (`/v1/models`)."""
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s) as c:
        resp = await c.get("/v1/models")
        resp.raise_for_status()
        return str(resp.json()["data"][0]["id"])
