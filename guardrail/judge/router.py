"""POST /v1/judge and the OpenAI-compatible POST /v1/moderations."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from guardrail.deps import TenantDep, get_services
from guardrail.errors import JUDGE_ERROR_RESPONSES, InvalidRequest
from guardrail.judge.schemas import JudgeRequest, JudgeResponse

router = APIRouter(tags=["judge"])


@router.post("/v1/judge", response_model=JudgeResponse, responses=JUDGE_ERROR_RESPONSES)
async def judge(body: JudgeRequest, ctx: TenantDep, request: Request) -> Response:
    """Judge a prompt (direction=input) or an LLM answer (direction=output) per category."""
    resp = await get_services(request).judge.judge(ctx, body)
    # Serialised here, once: returned as a model, FastAPI would dump, re-validate and dump it again
    # (a tenth of a cache hit's CPU). `response_model` still documents the body.
    return Response(resp.model_dump_json(), media_type="application/json")


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: StrictStr | list[StrictStr] = Field(description="A text or a list of texts (each ≤2,048 chars).")
    model: str | None = Field(None, description="Ignored; the deployed judge model is used.")


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


@router.post("/v1/moderations", response_model=ModerationResponse, responses=JUDGE_ERROR_RESPONSES)
async def moderations(body: ModerationRequest, ctx: TenantDep, request: Request) -> ModerationResponse:
    """OpenAI-compatible moderation: point an OpenAI client's base_url here."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > 32:
        raise InvalidRequest("'input' must hold 1 to 32 texts", param="input")
    svc = get_services(request).judge
    results: list[ModerationResult] = []
    for i, text in enumerate(texts):
        try:
            r = await svc.judge(ctx, JudgeRequest(text=text))
        except InvalidRequest as exc:
            exc.param = f"input[{i}]" if len(texts) > 1 else "input"
            raise
        scores: dict[str, Any] = {v.id: v.score or 0.0 for v in r.categories}
        results.append(ModerationResult(flagged=r.flagged, categories={v.id: v.flagged for v in r.categories},
                                        category_scores=scores))
    return ModerationResponse(id="modr-" + uuid.uuid4().hex, model=svc.model_name, results=results)
