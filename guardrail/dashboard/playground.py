"""The category playground: judge texts against a *draft* category before it is saved.

The draft and the saved definition are scored with the judge's own prompts and scoring
(`JudgeService.score_specs`: uncached, unlogged), on a test text and on the category's example texts.
Each example says which way it should go (positive: should be flagged, negative: should not), so a draft
that would flag fewer positives or more negatives than the saved definition shows as degraded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrail.categories.schemas import SLUG_PATTERN, CategoryExamples
from guardrail.db.models import Category
from guardrail.judge.service import JudgeService
from inference.contract import MAX_TEXT_CHARS, CategorySpec

MAX_EXAMPLES = 40


class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category_id: str | None = Field(None, pattern=SLUG_PATTERN, description="The saved category compared against.")
    name: str = Field(min_length=1, max_length=100)
    definition: str = Field(min_length=5, max_length=1000)
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="A test text (optional).")
    direction: Literal["input", "output"] = "input"
    examples: CategoryExamples | None = Field(None, description="Draft examples, judged beside the saved ones.")


def _verdict(score: float | None, threshold: float) -> dict[str, Any]:
    return {"score": None if score is None else round(score, 6),
            "flagged": score is not None and score >= threshold}


def _examples(saved: Category | None, draft: CategoryExamples | None) -> list[tuple[str, str]]:
    out: dict[tuple[str, str], None] = {}
    for source in ((saved.examples or {}) if saved else {}, draft.model_dump() if draft else {}):
        for kind in ("positive", "negative"):
            for text in source.get(kind) or []:
                if isinstance(text, str) and text.strip():
                    out[(kind, text.strip())] = None
    return list(out)[:MAX_EXAMPLES]


def _change(expected_flag: bool, before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    if before is None:
        return "new"
    was, now = before["flagged"] == expected_flag, after["flagged"] == expected_flag
    return "same" if was == now else ("improved" if now else "degraded")


async def run(judge: JudgeService, saved: Category | None, req: PlaygroundRequest) -> dict[str, Any]:
    """Scores of the test text and of every example, before (saved) and after (draft)."""
    draft = CategorySpec(req.category_id or "draft", req.name.strip(), req.definition.strip())
    before_spec = CategorySpec(saved.slug, saved.name, saved.definition) if saved else None
    # A threshold-only change needs no second model pass: the scores are the same.
    specs = [draft] if before_spec is None or before_spec == draft else [draft, before_spec]
    examples = _examples(saved, req.examples)
    texts = ([req.text] if req.text and req.text.strip() else []) + [t for _, t in examples]
    rows = await judge.score_specs(texts, specs, req.direction)

    def pair(row: list[float | None]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        after = _verdict(row[0], req.threshold)
        if saved is None:
            return None, after
        return _verdict(row[-1], saved.threshold), after

    out: dict[str, Any] = {"text": None, "examples": []}
    if req.text and req.text.strip():
        before, after = pair(rows.pop(0))
        out["text"] = {"text": req.text, "before": before, "after": after}
    summary: dict[str, Any] = {"total": len(examples), "before_correct": 0 if saved else None,
                               "after_correct": 0, "degraded": 0, "improved": 0}
    for (kind, text), row in zip(examples, rows, strict=True):
        before, after = pair(row)
        expected = kind == "positive"
        change = _change(expected, before, after)
        summary["after_correct"] += after["flagged"] == expected
        if before is not None:
            summary["before_correct"] += before["flagged"] == expected
        if change in ("degraded", "improved"):
            summary[change] += 1
        out["examples"].append({"text": text, "expected": kind, "before": before, "after": after, "change": change})
    out["summary"] = summary
    out["threshold"] = {"before": saved.threshold if saved else None, "after": req.threshold}
    return out
