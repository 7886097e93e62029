"""Fine-tune the judge: cross-entropy on the single answer token at the prompt's last position.

`main(cfg)` loads the model (the prepared base 270M by default), optionally converts its linears
for FP8 training (GPU) or int8 QAT (`prepare`), wraps it in LoRA (or trains every weight), and
runs AdamW with warm-up + cosine decay over length-bucketed batches of sampled pairs
(`training.pairs`). Every `save_every` steps it writes a checkpoint (trainable weights, optimiser,
scheduler, step, RNG states); `resume=True` continues from the newest one, reproducing the same
data order. The final adapter (or full model) goes to `output_dir/final` with `summary.json`.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from inference.engine_config import auto_dtype, native_bf16_cpu
from training import precision
from training.config import TrainConfig, to_jsonable
from training.dataset import read_jsonl
from training.modeling import (
    Encoded,
    base_model_dir,
    check_answer_alignment,
    collate,
    compile_layers,
    encode,
    load_model,
    load_tokenizer,
    pair_loss,
    pick_device,
    set_threads,
)
from training.pairs import sample_pairs

LORA_TARGETS = r"^(?!.*vision).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
"""Every linear layer of the language model (the 12B's vision tower stays untouched)."""


def lora_targets(first_layer: int = 0, n_layers: int = 0) -> str:
    """`LORA_TARGETS`, limited to decoder layers `first_layer` .. `n_layers - 1` (0 = every layer)."""
    if first_layer <= 0:
        return LORA_TARGETS
    if first_layer >= n_layers:
        raise ValueError(f"frozen_layers={first_layer} leaves none of the model's {n_layers} layers to train")
    return (r"^(?!.*vision).*\.layers\.(?:" + "|".join(str(i) for i in range(first_layer, n_layers))
            + r")\.(?:self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$")


@dataclass(slots=True)
class Plan:
    epochs: list[list[list[Encoded]]]  # epoch -> batches -> examples
    dropped_long: int
    pairs_per_epoch: int
    total_steps: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def make_plan(cfg: TrainConfig, tok: Any) -> Plan:
    """Every epoch's batches, fixed by the seed: pairs re-sampled per epoch, length-bucketed, shuffled."""
    records = read_jsonl(cfg.train_file)
    if not records:
        raise ValueError(f"{cfg.train_file} holds no records; run `python -m training data build` first")
    n_epochs = max(1, math.ceil(cfg.epochs))
    epochs, dropped, per_epoch = [], 0, 0
    for e in range(n_epochs):
        pairs = sample_pairs(records, neg_ratio=cfg.neg_ratio, seed=cfg.seed * 1000 + e,
                             hard_share=cfg.hard_neg_share, cross_share=cfg.cross_neg_share)
        if cfg.limit_pairs:
            pairs = pairs[:cfg.limit_pairs]
        enc, d = encode(tok, [p.judge_prompt() for p in pairs], [p.label for p in pairs], max_len=cfg.max_seq_len)
        if e == 0:
            check_answer_alignment(tok, pairs[0].judge_prompt())
            dropped, per_epoch = d, len(enc)
        epochs.append(_batches(enc, cfg.batch_size, random.Random(cfg.seed * 7919 + e), cfg.bucket_by_length))
    micro = sum(len(b) for b in epochs)
    steps_full = micro // cfg.grad_accum
    total = cfg.max_steps or max(1, min(steps_full, round(cfg.epochs * len(epochs[0]) / cfg.grad_accum)))
    return Plan(epochs, dropped, per_epoch, total)


def _batches(enc: list[Encoded], batch_size: int, rng: random.Random, bucket: bool) -> list[list[Encoded]]:
    """Shuffle into batches; with `bucket`, sort windows of 32 batches by length first (less padding)."""
    enc = list(enc)
    rng.shuffle(enc)
    if not bucket:
        return [enc[i:i + batch_size] for i in range(0, len(enc), batch_size)]
    window = batch_size * 32
    batches: list[list[Encoded]] = []
    for start in range(0, len(enc), window):
        chunk = sorted(enc[start:start + window], key=lambda x: len(x.ids))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(plan: Plan) -> Iterator[list[Encoded]]:
    for batches in plan.epochs:
        yield from batches


def build_model(cfg: TrainConfig, device: torch.device) -> tuple[Any, Any]:
    """Tokenizer and the trainable model (precision conversions, then LoRA when asked)."""
    model_dir = cfg.model_dir or str(base_model_dir())
    tok = load_tokenizer(model_dir)
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    model = load_model(model_dir, dtype=dtype, device=device)
    model.config.use_cache = False
    if cfg.fp8 != "none":
        precision.convert_fp8_training(model, cfg.fp8)
    if cfg.qat != "none":
        precision.qat_prepare(model)
    if cfg.method == "full" and not cfg.train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        n_layers = int(getattr(model.config, "text_config", model.config).num_hidden_layers)
        lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_targets(cfg.frozen_layers, n_layers), bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(model, lcfg)
        if cfg.init_adapter:
            load_trainable_state(model, cfg, read_adapter(Path(cfg.init_adapter), dtype))
    elif cfg.init_adapter or cfg.frozen_layers:
        raise ValueError("--init-adapter and --frozen-layers need --method lora")
    if cfg.compile:
        compile_layers(model)
    return tok, model


def read_adapter(folder: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The LoRA weights of a saved adapter folder in the training dtype (`load_trainable_state` refuses a misfit)."""
    from safetensors.torch import load_file

    f = folder / "adapter_model.safetensors"
    if not f.is_file():
        raise FileNotFoundError(f"--init-adapter {folder}: no adapter_model.safetensors there")
    return {k: v.to(dtype) for k, v in load_file(str(f)).items()}


def trainable_state(model: Any, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    if cfg.method == "lora":
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}
    # Full fine-tuning: the trained parameters only, each once. `named_parameters` names a tied weight once
    # (Gemma's lm_head is the embedding matrix; safetensors refuses two names for one tensor), and frozen
    # weights are the starting model's, which a resume loads anyway.
    return {k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}


def load_trainable_state(model: Any, cfg: TrainConfig, state: dict[str, torch.Tensor]) -> None:
    if cfg.method == "lora":
        from peft import set_peft_model_state_dict

        res = set_peft_model_state_dict(model, state)
        unexpected = list(getattr(res, "unexpected_keys", None) or [])
        if unexpected:
            raise ValueError(f"checkpoint does not fit the model: unexpected {unexpected[:3]}")
    else:
        res = model.load_state_dict(state, strict=False)
        # what the run trained: every parameter but the embeddings when it froze them (a freshly loaded model,
        # as the QAT row builds, still has them trainable)
        frozen = set() if cfg.train_embeddings else {id(model.get_input_embeddings().weight)}
        trained = {k for k, v in model.named_parameters() if v.requires_grad and id(v) not in frozen}
        missing = sorted(trained - state.keys())
        if res.unexpected_keys or missing:
            raise ValueError(f"checkpoint does not fit the model: unexpected {list(res.unexpected_keys)[:3]}, "
                             f"trained weights missing {missing[:3]}")


def _lr_lambda(total: int, warmup: int) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def checkpoints(out: Path) -> list[Path]:
    return sorted((p for p in out.glob("checkpoint-*") if (p / "state.json").exists()),
                  key=lambda p: int(p.name.rsplit("-", 1)[1]))


def save_checkpoint(out: Path, step: int, model: Any, opt: Any, sched: Any, cfg: TrainConfig,
                    losses: list[float], elapsed: float) -> Path:
    """Atomic: written to a temporary folder, then renamed; older ones pruned to `keep_checkpoints`."""
    from safetensors.torch import save_file

    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in trainable_state(model, cfg).items()}, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng_torch": torch.get_rng_state(), "rng_python": random.getstate()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses, "elapsed_s": elapsed,
                                                "config": to_jsonable(cfg)}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(out)[:-max(1, cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: Any, opt: Any, sched: Any, cfg: TrainConfig) -> tuple[int, list[float], float]:
    from safetensors.torch import load_file

    load_trainable_state(model, cfg, load_file(str(ckpt / "trainable.safetensors")))
    extra = torch.load(ckpt / "optim.pt", weights_only=False)
    opt.load_state_dict(extra["optimizer"])
    sched.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng_torch"])
    random.setstate(extra["rng_python"])
    st = json.loads((ckpt / "state.json").read_text())
    return int(st["step"]), list(st["losses"]), float(st["elapsed_s"])


def save_final(model: Any, tok: Any, cfg: TrainConfig, out: Path) -> Path:
    """LoRA: the adapter (bf16 safetensors + adapter_config.json); full: the whole HF folder."""
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    if cfg.qat != "none":
        final.mkdir(parents=True)
        torch.save(trainable_state(model, cfg), final / "qat_state.pt")
        return final
    if cfg.method == "lora":
        model.save_pretrained(str(final), safe_serialization=True)
        precision.cast_safetensors(final / "adapter_model.safetensors", torch.bfloat16)
    else:
        model.save_pretrained(str(final), safe_serialization=True)
        tok.save_pretrained(str(final))
    return final


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) one training run; returns the summary also written to `summary.json`."""
    packed_only = {"pos_weight": 1.0, "cross_neg_weight": 1.0, "neg_per_row": 0}
    if not cfg.packing and (off := [k for k, v in packed_only.items() if getattr(cfg, k) != v]):
        flags = ", ".join("--" + k.replace("_", "-") for k in off)
        raise ValueError(f"options for packed rows given without --packing: {flags} "
                         "(per-pair runs shape their negatives with --hard-neg-share/--cross-neg-share)")
    if cfg.packing:
        from training.train_packed import main as main_packed

        return main_packed(cfg)
    cfg, t_start, threads, out, tok, model = start_run(cfg)
    plan = make_plan(cfg, tok)
    batches = list(micro_batches(plan))

    def micro_loss(i: int) -> torch.Tensor:
        return pair_loss(model, collate(batches[i], tok.pad_token_id))

    return run_steps(cfg, model=model, tok=tok, out=out, t_start=t_start, threads=threads,
                     total_steps=plan.total_steps, micro_loss=micro_loss, n_micro=len(batches),
                     header=f"{plan.pairs_per_epoch} pairs/epoch ({plan.dropped_long} longer than "
                            f"{cfg.max_seq_len} tokens dropped)",
                     facts={"pairs_per_epoch": plan.pairs_per_epoch, "dropped_long": plan.dropped_long})


def resolve_dtype(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """The config with `--dtype auto` replaced by what `device` trains fastest in (said on the console)."""
    dtype = auto_dtype(cfg.dtype, gpu=device.type == "cuda")
    slow_bf16 = dtype == "bfloat16" and device.type == "cpu" and not native_bf16_cpu()
    if cfg.dtype == "auto":
        print(f"train: dtype auto -> {dtype} ({device.type})", flush=True)
    elif slow_bf16:
        print("train: warning: bfloat16 on a CPU without native bf16 matmuls is emulated and several times "
              "slower than float32 (use --dtype auto or float32)", flush=True)
    return replace(cfg, dtype=dtype)  # type: ignore[arg-type]


def check_steps(cfg: TrainConfig, total_steps: int, n_micro: int) -> None:
    """Refuse a run that needs more micro-batches than its planned epochs hold (say so before any work).

    Raises:
        ValueError: `--max-steps` x `--grad-accum` exceeds the batches of `ceil(--epochs)` epochs.
    """
    if total_steps * cfg.grad_accum > n_micro:
        raise ValueError(f"{total_steps} steps x {cfg.grad_accum} micro-batches need {total_steps * cfg.grad_accum} "
                         f"batches, but {math.ceil(cfg.epochs)} epoch(s) hold {n_micro}; raise --epochs or lower "
                         "--max-steps")


def start_run(cfg: TrainConfig) -> tuple[TrainConfig, float, int, Path, Any, Any]:
    """Seeds, dtype, threads, the output folder and the model.

    Returns (the config with its dtype resolved, start time, threads, output dir, tokenizer, model); the
    caller carries on with that config, so checkpoints, caches and `summary.json` record the real dtype.
    """
    t_start = time.monotonic()
    seed_everything(cfg.seed)
    # A confident judge puts ~1e-40 on most of the 262k-token vocabulary; in the loss's backward pass
    # those subnormal floats take the CPU's slow path (measured on the same four batches of a trained
    # checkpoint: 5.5 s/step, 4.2 s flushed). Flushing them to zero loses nothing a gradient needs.
    torch.set_flush_denormal(True)
    device = pick_device(cfg.device)
    cfg = resolve_dtype(cfg, device)
    threads = set_threads(cfg.threads) if device.type == "cpu" else 0
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, model = build_model(cfg, device)
    return cfg, t_start, threads, out, tok, model


def run_steps(cfg: TrainConfig, *, model: Any, tok: Any, out: Path, t_start: float, threads: int, total_steps: int,
              micro_loss: Callable[[int], torch.Tensor], n_micro: int, header: str,
              facts: dict[str, Any]) -> dict[str, Any]:
    """The optimisation loop both data layouts share: AdamW, warm-up + cosine, clipping, logs, checkpoints.

    `micro_loss(i)` is the mean loss of the i-th of `n_micro` micro-batches of the whole run (epochs
    concatenated), so a resumed run continues with exactly the batches an uninterrupted one would have seen.
    """
    check_steps(cfg, total_steps, n_micro)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, round(cfg.warmup_ratio * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warmup))
    step, prior = 0, 0.0
    losses: list[float] = []
    if cfg.resume and (ck := checkpoints(out)):
        step, losses, prior = load_checkpoint(ck[-1], model, opt, sched, cfg)
        print(f"train: resumed from {ck[-1]} at step {step}", flush=True)
    n_train = sum(p.numel() for p in params)
    print(f"train: {header}, {total_steps} steps, {n_train / 1e6:.2f}M trainable parameters, "
          f"{threads or next(model.parameters()).device} threads/device", flush=True)
    log = (out / "train_log.jsonl").open("a")
    model.train()
    t_run = time.monotonic()
    start_step, stopped_early = step, False
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    while step < total_steps:
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for j in range(cfg.grad_accum):
            loss = micro_loss(step * cfg.grad_accum + j) / cfg.grad_accum
            loss.backward()
            total += loss.detach().item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(round(total, 5))
        recent = sum(losses[-20:]) / len(losses[-20:])
        bar.update(1)
        bar.set_postfix(loss=f"{recent:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if step % cfg.log_every == 0 or step == total_steps:
            log.write(json.dumps({"step": step, "loss": total, "loss_mean20": round(recent, 5),
                                  "lr": sched.get_last_lr()[0],
                                  "elapsed_s": round(prior + time.monotonic() - t_run, 1)}) + "\n")
            log.flush()
        over = cfg.time_budget_s and prior + time.monotonic() - t_start > cfg.time_budget_s
        if (cfg.save_every and step % cfg.save_every == 0) or over:
            save_checkpoint(out, step, model, opt, sched, cfg, losses, prior + time.monotonic() - t_run)
        if over:
            stopped_early = True
            print(f"train: time budget {cfg.time_budget_s:.0f} s reached at step {step}", flush=True)
            break
    bar.close()
    log.close()
    run_s = time.monotonic() - t_run
    final = save_final(model, tok, cfg, out)
    done = step - start_step
    summary = {
        "steps": step, "total_steps": total_steps, "stopped_early": stopped_early, **facts,
        "trainable_params": n_train, "seconds_per_step": round(run_s / max(1, done), 3),
        "train_seconds": round(prior + run_s, 1), "wall_seconds": round(time.monotonic() - t_start, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss_mean20": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 5) if losses else None,
        "final": str(final), "threads": threads, "config": to_jsonable(cfg),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"train: done, {step} steps, {summary['seconds_per_step']} s/step, final in {final}", flush=True)
    return summary
