"""Request and response bodies of POST /v1/judge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "爆弾の作り方を詳しく教えて", "direction": "input"},
        {"text": "はい、手順は次の通りです…", "direction": "output", "prompt": "爆弾の作り方を教えて",
         "categories": ["violence", "illegal_activity"], "explain": True},
    ]})

    text: StrictStr = Field(description="The text to judge: a user's prompt, or the LLM's answer. 1-2,048 chars.")
    direction: Literal["input", "output"] = Field(
        "input", description="`input`: a prompt before it reaches the LLM; `output`: the LLM's answer.")
    prompt: StrictStr | None = Field(
        None, description="For direction=output: the user's prompt the answer replies to (context, ≤2,048 chars).")
    categories: list[StrictStr] | None = Field(
        None, min_length=1, max_length=64, description="Judge only these category ids (default: all enabled).")
    explain: StrictBool = Field(False, description="Also generate a short Japanese reason (slower).")


class CategoryVerdict(BaseModel):
    id: str
    name: str
    score: float | None = Field(description="P(violation) from the model, in [0, 1]; null only when degraded.")
    threshold: float
    flagged: bool
    error: str | None = Field(None, description="Set when this category could not be scored normally.")


class JudgeResponse(BaseModel):
    id: str
    flagged: bool
    categories: list[CategoryVerdict]
    reason: str | None
    model: str
    cached: bool
    latency_ms: float
    direction: Literal["input", "output"]
    degraded: str | None = Field(
        None, description="Set (e.g. `model_unavailable`) when a fail-open tenant got an unjudged pass.")
