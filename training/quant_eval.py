"""`training quant`: BF16 vs int8 PTQ vs int8 QAT (vs FP8 on a GPU), scored with transformers.

vLLM's CPU build does not serve torchao-quantised checkpoints (see docs/training.md for what was
tried), so these rows are scored in-process with transformers, with the same prompts and the same
`score_from_logprobs` as serving. Each row writes a normal evaluation report; `compare` tabulates.

* `bf16` — the exported (merged) model as served.
* `ptq_int8_weight_only`, `ptq_int8_dynamic`, `ptq_int8_dynamic_intx` — torchao `quantize_` after
  training. The last one is the scheme QAT converts to, so PTQ and QAT are compared on equal terms.
* `qat_int8` — a short QAT fine-tune (`qat_steps`, full fine-tuning with int8 fake quantisation,
  starting from the tuned model) and then `convert`.
* `qat_control` — the same fine-tune (steps, data, learning rate, seed) without fake quantisation, kept in
  fp32: what the fine-tuning alone moves, so the QAT row's difference from `bf16` can be split into that
  and what int8 costs.
* `ptq_float8_dynamic`, `fp8_training` — need an NVIDIA GPU with SM >= 8.9; recorded as "needs GPU".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training import precision
from training.config import train_config
from training.dataset import DATA_DIR, read_jsonl
from training.metrics import ScoredPair
from training.modeling import load_model, load_tokenizer, score_prompts, set_threads
from training.pairs import all_pairs
from training.report import build_report, write_report

ROWS = ("bf16", "ptq_int8_weight_only", "ptq_int8_dynamic", "ptq_int8_dynamic_intx", "qat_int8", "qat_control",
        "ptq_float8_dynamic")


@dataclass(frozen=True, slots=True)
class QuantConfig:
    """Which model, which records, which rows."""

    model_dir: Path = field(default=Path("training/exports/jp-judge-270m"),
                            metadata={"help": "the exported (merged) model folder"})
    data: Path = field(default=DATA_DIR / "splits" / "test.jsonl", metadata={"help": "JSONL records"})
    every: int = field(default=1, metadata={"help": "use every N-th record (a deterministic subset)"})
    rows: str = field(default=",".join(ROWS), metadata={"help": "comma-separated rows to run"})
    qat_steps: int = field(default=20, metadata={"help": "QAT fine-tuning steps from the tuned model"})
    qat_lr: float = field(default=1e-5, metadata={"help": "QAT learning rate (full fine-tuning)"})
    train_file: Path = field(default=DATA_DIR / "splits" / "train.jsonl", metadata={"help": "QAT training split"})
    out_dir: Path = field(default=Path("training/reports/quant"), metadata={"help": "one sub-folder per row"})
    threshold: float = field(default=0.5, metadata={"help": "decision threshold"})
    batch_size: int = field(default=8, metadata={"help": "prompts per forward"})


def _score(model: Any, tok: Any, records: list[dict[str, Any]], batch_size: int) -> list[ScoredPair]:
    pairs = all_pairs(records)
    with tqdm(total=len(pairs), desc="score", unit="pair", dynamic_ncols=True) as bar:
        scores = score_prompts(model, tok, [p.judge_prompt() for p in pairs], batch_size=batch_size, progress=bar)
    return [ScoredPair(p.record_id, p.category.id, p.label, s) for p, s in zip(pairs, scores, strict=True)]


def qat_model(cfg: QuantConfig, *, fake_quant: bool = True) -> tuple[Any, dict[str, Any]]:
    """QAT: fine-tune the tuned model with int8 fake quantisation, then convert to int8.

    With `fake_quant=False` (the `qat_control` row) the same fine-tune runs without fake quantisation
    and the fp32 result is returned as it is.
    """
    from training.train import load_trainable_state
    from training.train import main as train_main

    run = cfg.out_dir / ("qat_run" if fake_quant else "qat_control_run")
    tcfg = train_config(model_dir=str(cfg.model_dir), train_file=cfg.train_file, output_dir=run, method="full",
                        dtype="float32", qat="int8" if fake_quant else "none", max_steps=cfg.qat_steps,
                        lr=cfg.qat_lr, save_every=0, warmup_ratio=0.1, log_every=5, train_embeddings=False)
    summary = train_main(tcfg)
    if fake_quant:
        model = load_model(cfg.model_dir, dtype=torch.float32)
        precision.qat_prepare(model)
        state = torch.load(run / "final" / "qat_state.pt", weights_only=False)
        load_trainable_state(model, tcfg, state)
        precision.qat_convert(model)
    else:
        model = load_model(run / "final", dtype=torch.float32)
    return model, {"qat_steps": summary["steps"], "qat_seconds_per_step": summary["seconds_per_step"],
                   "qat_pairs": summary["steps"] * tcfg.batch_size, "fake_quant": fake_quant}


def main(cfg: QuantConfig) -> dict[str, dict[str, Any]]:
    set_threads(0)
    records = read_jsonl(cfg.data)[::max(1, cfg.every)]
    tok = load_tokenizer(cfg.model_dir)
    reports: dict[str, dict[str, Any]] = {}
    for row in [r.strip() for r in cfg.rows.split(",") if r.strip()]:
        if row not in ROWS:
            raise ValueError(f"unknown row {row!r}; choose from {ROWS}")
        out = cfg.out_dir / row
        extra: dict[str, Any] = {"engine": "transformers (CPU)" if not precision.fp8_capable() else "transformers",
                                 "data": f"{cfg.data} (every {cfg.every}th record)" if cfg.every > 1 else str(cfg.data)}
        rep: dict[str, Any]
        if row in ("ptq_float8_dynamic",) and not precision.fp8_capable():
            rep = {"name": row, "skipped": "needs an NVIDIA GPU with compute capability >= 8.9"}
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(json.dumps(rep, indent=1))
            reports[row] = rep
            print(f"quant: {row}: needs GPU (skipped)", flush=True)
            continue
        t0 = time.monotonic()
        if row in ("qat_int8", "qat_control"):
            model, more = qat_model(cfg, fake_quant=row == "qat_int8")
            extra.update(more)
        else:
            model = load_model(cfg.model_dir, dtype=torch.bfloat16 if row in ("bf16", "ptq_int8_weight_only")
                               else torch.float32)
            if row.startswith("ptq_"):
                precision.ptq(model, row.removeprefix("ptq_"))
        t1 = time.monotonic()
        rows = _score(model, tok, records, cfg.batch_size)
        extra.update({"prepare_seconds": round(t1 - t0, 1), "score_seconds": round(time.monotonic() - t1, 1),
                      "weights_mb": round(_weights_mb(model), 1)})
        rep = build_report(rows, name=row, threshold=cfg.threshold, extra=extra)
        write_report(rows, rep, out)
        reports[row] = rep
        print(f"quant: {row}: F1 {rep['overall']['f1']:.3f}, benign FPR {rep['benign_fpr']:.1%}", flush=True)
        del model
    return reports


def _weights_mb(model: Any) -> float:
    """Serialised size of the state dict: quantised tensors count at their packed size."""
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 2**20
