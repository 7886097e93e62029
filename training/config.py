"""Training configuration: frozen dataclasses with help text, presets per model, argparse glue.

Three presets: `gemma-3-270m-cpu` (runs on the project's 2-core machines; the default model is
trained with it), `gemma-3-270m-cpu-packed` (packed rows over cached frozen layers, an experiment
on the same machines) and `gemma-3-12b-gpu` (one GPU with compute capability >= 8.9, FP8 training).
Every field is a command-line flag of `python -m training train`; a preset only changes defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from training.dataset import DATA_DIR

REPO = Path(__file__).resolve().parent.parent
RUNS_DIR = REPO / "training" / "runs"
ADAPTER_DIR = REPO / "inference" / "adapters" / "jp-judge-270m"

Method = Literal["lora", "full"]
Fp8Recipe = Literal["none", "tensorwise", "rowwise"]
Qat = Literal["none", "int8"]


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One fine-tuning run of the judge (loss on the single answer token only)."""

    model_dir: str = field(
        default="", metadata=_h("HF model folder to fine-tune; empty = the prepared base Gemma 3 270M")
    )
    train_file: Path = field(
        default=DATA_DIR / "splits" / "train.jsonl", metadata=_h("training split (JSONL, SCHEMA.md records)")
    )
    output_dir: Path = field(
        default=RUNS_DIR / "jp-judge-270m", metadata=_h("checkpoints, logs and the final adapter/model")
    )
    method: Method = field(
        default="lora", metadata=_h("lora (adapter on every linear layer of the language model) or full")
    )
    lora_r: int = field(default=16, metadata=_h("LoRA rank"))
    lora_alpha: int = field(default=32, metadata=_h("LoRA alpha (scale = alpha / r)"))
    lora_dropout: float = field(default=0.0, metadata=_h("LoRA dropout"))
    dtype: Literal["float32", "bfloat16", "auto"] = field(
        default="float32",
        metadata=_h("parameter dtype while training (auto: bfloat16 on a GPU or a CPU with native bf16 "
                    "matmuls, AMX / AVX-512 BF16; float32 elsewhere, where bf16 is emulated and slower)"),
    )
    fp8: Fp8Recipe = field(default="none", metadata=_h("torchao FP8 training recipe (GPU with SM >= 8.9 only)"))
    qat: Qat = field(
        default="none",
        metadata=_h("int8 quantisation-aware training: fake-quantise base linears (prepare), convert after training"),
    )
    max_seq_len: int = field(
        default=320,
        metadata=_h("drop pairs whose prompt+answer is longer (with packing: texts whose whole row is longer); "
                    "counted and reported")
    )
    neg_ratio: float = field(default=3.0, metadata=_h("sampled negative pairs per positive pair, per category"))
    hard_neg_share: float = field(
        default=0.5,
        metadata=_h(
            "share of the negatives taken from the category's own file / benign look-alikes before random negatives"
        ),
    )
    cross_neg_share: float = field(
        default=0.0,
        metadata=_h("share of the negatives taken from texts that violate another default category "
                    "(the wrong-category question; hard + cross must not exceed 1)"),
    )
    init_adapter: str = field(
        default="",
        metadata=_h("start LoRA from this adapter folder (adapter_model.safetensors; same rank and targets) "
                    "instead of a fresh initialisation: a second stage on top of an earlier run"),
    )
    packing: bool = field(
        default=False,
        metadata=_h("one row per text holding every category's question, each suffix attending only to the "
                    "shared prefix (training/packing.py): about half the tokens, and a text's categories "
                    "contrast in one step; batch_size then counts texts"),
    )
    frozen_layers: int = field(
        default=0,
        metadata=_h("LoRA only on decoder layers from this index up; with packing, the frozen layers' output is "
                    "computed once per text and cached (bottom-cache.pt in output_dir)"),
    )
    neg_per_row: int = field(
        default=0,
        metadata=_h("packing: negative questions kept per text per epoch, re-drawn every epoch, besides every "
                    "positive and the custom question (0 = all)"),
    )
    pos_weight: float = field(default=1.0, metadata=_h("loss weight of a positive answer relative to a negative one"))
    cross_neg_weight: float = field(
        default=1.0,
        metadata=_h("packing: loss weight of a negative answer on a text that violates another category (where a "
                    "'yes' would flag a harmful text for the wrong category), relative to a negative on a safe text"),
    )
    epochs: float = field(default=1.5, metadata=_h("passes over the sampled pairs (fractions allowed)"))
    max_steps: int = field(default=0, metadata=_h("stop after this many optimiser steps (0 = from epochs)"))
    batch_size: int = field(default=8, metadata=_h("pairs per micro-batch (with packing: texts per micro-batch)"))
    train_embeddings: bool = field(
        default=True, metadata=_h("full fine-tuning also trains the (tied) embeddings; false saves ≈2.7 GB")
    )
    bucket_by_length: bool = field(
        default=False,
        metadata=_h("sort windows of batches by length (less padding, but the category suffix sets the length, "
                    "so batches become single-category and training stalls at the prior; measured)"),
    )
    grad_accum: int = field(default=1, metadata=_h("micro-batches per optimiser step"))
    lr: float = field(default=3e-4, metadata=_h("peak learning rate (linear warm-up, cosine decay)"))
    warmup_ratio: float = field(default=0.05, metadata=_h("share of steps spent warming up"))
    weight_decay: float = field(default=0.0, metadata=_h("AdamW weight decay"))
    seed: int = field(default=1234, metadata=_h("seed of pair sampling, shuffling, LoRA init and dropout"))
    save_every: int = field(default=50, metadata=_h("checkpoint every N optimiser steps (0 = only at the end)"))
    keep_checkpoints: int = field(default=2, metadata=_h("how many recent checkpoints to keep"))
    resume: bool = field(default=False, metadata=_h("continue from the newest checkpoint in output_dir"))
    time_budget_s: float = field(
        default=0.0, metadata=_h("stop cleanly (checkpoint + final) after this many seconds (0 = none)")
    )
    compile: bool = field(
        default=False,
        metadata=_h("torch.compile every decoder layer (dynamic shapes, so varying batch widths reuse one graph): "
                    "fuses the norm/activation/LoRA element-wise work; costs about a minute of compiling first"),
    )
    threads: int = field(default=0, metadata=_h("torch CPU threads (0 = every core this process may use)"))
    device: str = field(default="auto", metadata=_h("cpu, cuda or auto"))
    log_every: int = field(default=10, metadata=_h("write a loss line every N steps"))
    limit_pairs: int = field(default=0, metadata=_h("use only the first N sampled pairs (tests, smoke runs; 0 = all)"))


PRESETS: dict[str, dict[str, Any]] = {
    # Sized for ≈1 hour on 2 CPU cores (see docs/training.md for the measurement behind it): the default
    # model's recipe, one row per (text, category) pair with sampled negatives, fp32.
    "gemma-3-270m-cpu": {},
    # Packed rows, LoRA on the top 9 of 18 layers over cached bottom-layer states, bf16 matmuls where the
    # CPU has them (AMX), fp32 elsewhere; ≈55 min on an AMX machine, far longer on an AVX2-only one.
    # Higher per-category F1, fewer harmful texts caught (docs/training.md).
    "gemma-3-270m-cpu-packed": {
        "packing": True,
        "frozen_layers": 9,
        "neg_per_row": 4,
        "pos_weight": 2.0,
        "batch_size": 4,
        "epochs": 1.5,
        "lora_r": 32,
        "lora_alpha": 32,
        "lr": 1e-3,
        "max_seq_len": 1400,
        "dtype": "auto",
        "output_dir": RUNS_DIR / "jp-judge-270m-packed",
    },
    # One L4/H100: BF16 weights, FP8 rowwise matmuls, longer prompts, bigger batches.
    "gemma-3-12b-gpu": {
        "model_dir": "/models/gemma-3-12b-pt",
        "output_dir": RUNS_DIR / "jp-judge-12b",
        "dtype": "bfloat16",
        "fp8": "rowwise",
        "lora_r": 32,
        "lora_alpha": 64,
        "max_seq_len": 1024,
        "neg_ratio": 4.0,
        "epochs": 2.0,
        "batch_size": 16,
        "grad_accum": 2,
        "lr": 1e-4,
        "save_every": 200,
        "device": "cuda",
    },
}

T = TypeVar("T")


def _choices(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) is Literal else None


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """One `--flag` per field, with the field's help text; defaults resolved later (presets)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        if tp is bool:
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=None, help=help_, metavar="BOOL")
        elif (ch := _choices(tp)) is not None:
            parser.add_argument(flag, choices=ch, default=None, help=help_)
        else:
            conv = tp
            if get_origin(tp) in (Union, types.UnionType):
                conv = next(a for a in get_args(tp) if a is not type(None))
            parser.add_argument(flag, type=conv, default=None, help=help_)


def from_namespace(cls: type[T], ns: argparse.Namespace, defaults: dict[str, Any] | None = None) -> T:
    """The dataclass from parsed flags over `defaults` (a preset) over the field defaults."""
    values = dict(defaults or {})
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(ns, f.name, None)
        if v is not None:
            values[f.name] = v
    return cls(**values)


def train_config(preset: str = "gemma-3-270m-cpu", **overrides: Any) -> TrainConfig:
    """A preset with keyword overrides (what tests and scripts call)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[preset], **overrides})


def to_jsonable(cfg: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
