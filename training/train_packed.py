"""Fine-tune the judge on packed rows (`training.packing`): one row per text, every category in it.

The loop mirrors `training.train.main` (AdamW, warm-up + cosine, clipping, checkpoints and
resume with the same data order, a time budget, `summary.json`) and differs in what a batch is:
`batch_size` texts, each with the shared prefix once and, per epoch, every positive question,
the custom question and `neg_per_row` negatives drawn afresh (all negatives when 0). With
`frozen_layers` > 0 LoRA sits only above that layer, and the frozen layers' output for every text
is computed once (`bottom-cache.pt`, reused by a resumed or restarted run with the same model and
data), so an epoch costs only the top layers' forward and backward passes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.config import TrainConfig
from training.dataset import read_jsonl
from training.modeling import base_model_dir, check_answer_alignment
from training.packing import LayerSplit, PackedRow, collate_packed, pack_records, packed_loss, select
from training.pairs import CUSTOM, expand
from training.train import check_steps, run_steps, start_run

Batch = list[tuple[int, tuple[int, ...]]]  # (row index, kept answers) per text


@dataclass(slots=True)
class PackedPlan:
    rows: list[PackedRow]
    batches: list[Batch]  # every epoch's batches, in order
    per_epoch: int  # batches per epoch
    dropped_long: int
    total_steps: int


def keep_for_epoch(row: PackedRow, neg_per_row: int, rng: random.Random) -> tuple[int, ...]:
    """Every positive, the custom question, and `neg_per_row` random negatives (all when 0)."""
    must = [k for k, (lab, cat) in enumerate(zip(row.labels, row.categories, strict=True)) if lab or cat == CUSTOM]
    negs = [k for k in range(len(row.labels)) if k not in must]
    if neg_per_row and len(negs) > neg_per_row:
        negs = rng.sample(negs, neg_per_row)
    return tuple(sorted(must + negs))


def make_packed_plan(cfg: TrainConfig, tok: Any) -> PackedPlan:
    records = read_jsonl(cfg.train_file)
    if not records:
        raise ValueError(f"{cfg.train_file} holds no records; run `python -m training data build` first")
    if cfg.limit_pairs:
        records = records[:cfg.limit_pairs]
    check_answer_alignment(tok, expand(records[0])[0].judge_prompt())
    rows, dropped = pack_records(tok, records, max_len=cfg.max_seq_len)
    if not rows:
        raise ValueError(f"every packed row is longer than max_seq_len={cfg.max_seq_len}")
    batches: list[Batch] = []
    n_epochs = max(1, math.ceil(cfg.epochs))
    for e in range(n_epochs):
        rng = random.Random(cfg.seed * 7919 + e)
        order = list(range(len(rows)))
        rng.shuffle(order)
        items = [(i, keep_for_epoch(rows[i], cfg.neg_per_row, rng)) for i in order]
        batches += [items[i:i + cfg.batch_size] for i in range(0, len(items), cfg.batch_size)]
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = cfg.max_steps or max(1, min(len(batches) // cfg.grad_accum, round(cfg.epochs * per_epoch / cfg.grad_accum)))
    return PackedPlan(rows, batches, per_epoch, dropped, total)


def _cache_key(cfg: TrainConfig, model_dir: Path, rows: list[PackedRow]) -> str:
    """What the cached states depend on: the weights (path, size, mtime), the split, the dtype, every row's tokens."""
    weights = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in model_dir.glob("*.safetensors"))
    h = hashlib.sha256(f"{model_dir.resolve()}|{weights}|{cfg.frozen_layers}|{cfg.dtype}|{len(rows)}".encode())
    for r in rows:
        h.update(json.dumps(r.ids).encode())
    return h.hexdigest()


def bottom_states(split: LayerSplit, rows: list[PackedRow], pad_id: int, cache: Path, key: str,
                  batch_size: int = 8) -> list[torch.Tensor]:
    """The frozen layers' output for every row: loaded from `cache` when its key matches, else computed and saved."""
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key:
            print(f"train: frozen-layer states loaded from {cache}", flush=True)
            return list(saved["states"])
    states: list[torch.Tensor | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))  # similar lengths: less padding
    with tqdm(total=len(rows), desc=f"frozen layers 0-{split.frozen - 1}", unit="text", dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            h = split.bottom(collate_packed([rows[i] for i in idx], pad_id)).cpu()
            for j, i in enumerate(idx):
                states[i] = h[j, :len(rows[i].ids)].clone()
            bar.update(len(idx))
    done = [s for s in states if s is not None]
    tmp = cache.with_suffix(".tmp")
    torch.save({"key": key, "states": done}, tmp)
    tmp.rename(cache)
    return done


def _stack(parts: list[torch.Tensor], width: int) -> torch.Tensor:
    out = parts[0].new_zeros((len(parts), width, parts[0].shape[-1]))
    for i, p in enumerate(parts):
        out[i, :p.shape[0]] = p
    return out


def step_loss(split: LayerSplit, plan: PackedPlan, batch: Batch, states: list[torch.Tensor] | None,
              pad_id: int, pos_weight: float, cross_neg_weight: float = 1.0) -> torch.Tensor:
    """The loss of one micro-batch (cached frozen-layer states when given, else a forward from the embeddings)."""
    subs = [select(plan.rows[i], keep) for i, keep in batch]
    b = collate_packed([s for s, _ in subs], pad_id)
    if states is not None:
        dev = next(split.text.parameters()).device
        hidden = _stack([states[i][taken] for (i, _), (_, taken) in zip(batch, subs, strict=True)],
                        b["input_ids"].shape[1]).to(dev)
    else:
        hidden = split.embed(b)
    return packed_loss(split.answer_logits(hidden, b), b, pos_weight, cross_neg_weight)


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) one packed training run; returns the summary also written to `summary.json`."""
    if cfg.method != "lora" and cfg.frozen_layers:
        raise ValueError("--frozen-layers needs --method lora")
    cfg, t_start, threads, out, tok, model = start_run(cfg)
    plan = make_packed_plan(cfg, tok)
    check_steps(cfg, plan.total_steps, len(plan.batches))  # before the frozen-layer pass, not after it
    split = LayerSplit(model, cfg.frozen_layers)
    states = None
    if cfg.frozen_layers:
        states = bottom_states(split, plan.rows, tok.pad_token_id, out / "bottom-cache.pt",
                               _cache_key(cfg, Path(cfg.model_dir) if cfg.model_dir else base_model_dir(), plan.rows))
    n_questions = sum(len(keep) for b in plan.batches[:plan.per_epoch] for _, keep in b)

    def micro_loss(i: int) -> torch.Tensor:
        return step_loss(split, plan, plan.batches[i], states, tok.pad_token_id, cfg.pos_weight,
                         cfg.cross_neg_weight)

    return run_steps(cfg, model=model, tok=tok, out=out, t_start=t_start, threads=threads,
                     total_steps=plan.total_steps, micro_loss=micro_loss, n_micro=len(plan.batches),
                     header=f"packed, {len(plan.rows)} texts/epoch ({plan.dropped_long} longer than "
                            f"{cfg.max_seq_len} tokens dropped), {n_questions} questions in the first epoch, "
                            f"layers {cfg.frozen_layers}+ trained",
                     facts={"packing": True, "texts_per_epoch": len(plan.rows), "questions_first_epoch": n_questions,
                            "dropped_long": plan.dropped_long})
