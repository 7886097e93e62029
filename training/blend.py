"""`training blend`: several models' scores on the same split averaged into one report.

A score-level ensemble is what a vLLM server holding the base model and several LoRA adapters could serve,
at one forward pass per adapter; this asks whether it would be worth that before anything is served. The
inputs are evaluation report folders (their `scores.jsonl`); every one must hold the same (text, category)
pairs with the same gold labels, or the blend is refused. The blended score of a pair is the weighted mean of
the members' probabilities; the report is the one `training eval` writes, so `training compare` pairs it with
any member.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.compare import load, load_scores
from training.metrics import ScoredPair, pair_mismatch
from training.report import build_report, write_report


class BlendError(ValueError):
    """The members cannot be blended (different pairs or labels, bad weights)."""


@dataclass(frozen=True, slots=True)
class BlendConfig:
    """Member reports in, one blended report out."""

    reports: str = field(default="", metadata={"help": "comma-separated report folders (each with scores.jsonl)"})
    weights: str = field(default="", metadata={"help": "comma-separated weights, one per report; empty = equal"})
    name: str = field(default="", metadata={"help": "report title / row name; empty = blend of the member names"})
    out_dir: Path | None = field(default=None, metadata={"help": "report folder; required"})
    threshold: float = field(default=0.5, metadata={"help": "decision threshold the report states"})


def parse_weights(text: str, n: int) -> list[float]:
    """`n` weights from "a,b,c" (equal when empty), normalised to sum to 1."""
    if not text.strip():
        return [1.0 / n] * n
    try:
        raw = [float(w) for w in text.split(",")]
    except ValueError as exc:
        raise BlendError(f"--weights must be numbers separated by commas, got {text!r}") from exc
    if len(raw) != n:
        raise BlendError(f"--weights gives {len(raw)} weights for {n} reports")
    if any(w < 0 for w in raw) or sum(raw) <= 0:
        raise BlendError("--weights must be non-negative with a positive sum")
    return [w / sum(raw) for w in raw]


def blend(members: Sequence[Sequence[ScoredPair]], weights: Sequence[float]) -> list[ScoredPair]:
    """The weighted mean score of every pair, in the first member's order. Every member must hold exactly the
    same pairs with the same labels."""
    if not members:
        raise BlendError("nothing to blend")
    for i, rows in enumerate(members, start=1):
        if len({(r.record_id, r.category) for r in rows}) != len(rows):
            raise BlendError(f"member {i} holds a pair more than once")
        if i > 1 and (why := pair_mismatch(members[0], rows)):
            raise BlendError(f"member {i} and member 1 cannot be blended: {why}; blend reports of one version of "
                             "one split only")
    scores = [{(r.record_id, r.category): r.score for r in rows} for rows in members]
    return [ScoredPair(r.record_id, r.category, r.label,
                       sum(w * s[(r.record_id, r.category)] for w, s in zip(weights, scores, strict=True)))
            for r in members[0]]


def main(cfg: BlendConfig) -> dict[str, Any]:
    folders = [Path(p.strip()) for p in cfg.reports.split(",") if p.strip()]
    if len(folders) < 2:
        raise SystemExit("blend: give --reports a,b[,c...] (two or more report folders)")
    if cfg.out_dir is None:
        raise SystemExit("blend: give --out-dir FOLDER for the blended report")
    for f in folders:
        if not (f / "report.json").is_file() or not (f / "scores.jsonl").is_file():
            raise SystemExit(f"blend: {f} is not a report folder (it needs report.json and scores.jsonl)")
    reports = [load(f) for f in folders]
    try:
        weights = parse_weights(cfg.weights, len(folders))
        rows = blend([load_scores(f) for f in folders], weights)
    except BlendError as exc:
        raise SystemExit(f"blend: {exc}") from exc
    names = [str(r.get("name", f)) for r, f in zip(reports, folders, strict=True)]
    rep = build_report(rows, name=cfg.name or "blend(" + ", ".join(names) + ")", threshold=cfg.threshold,
                       extra={"engine": "mean of member scores (training blend)",
                              "blend_of": [{"report": str(f), "name": n, "weight": round(w, 6),
                                            "engine_dtype": r.get("engine_dtype")}
                                           for f, n, w, r in zip(folders, names, weights, reports, strict=True)],
                              "data": reports[0].get("data")})
    write_report(rows, rep, cfg.out_dir)
    print(json.dumps({"name": rep["name"], "f1": rep["overall"]["f1"], "macro_f1": rep["macro_f1"],
                      "benign_fpr": rep["benign_fpr"], "harmful_caught": rep["harmful_caught"],
                      "out": str(cfg.out_dir)}), flush=True)
    return rep
