"""Average LoRA adapters in weight space: `python -m training average --adapters A,B --out-dir D`.

Each LoRA factor of the result is the (weighted) mean of the same factor in every adapter. That is
not the mean of the adapters' updates (B·A), but when every adapter was trained from the first one
(a continuation) their factors stay close and the two are nearly the same; docs/training.md records
what the averaged adapters scored. The adapters must share rank, alpha, target modules and tensor
names, or the command refuses. `average.json` in the output records the sources, their sha256 and
the weights, so the result can be rebuilt and checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.model_prep import sha256_file

# What must agree for factor-wise averaging to mean anything.
SAME_CONFIG = ("peft_type", "r", "lora_alpha", "target_modules", "use_rslora", "use_dora")


class AverageError(ValueError):
    """The adapters cannot be averaged (missing files, different shapes or LoRA settings)."""


@dataclass(frozen=True, slots=True)
class AverageConfig:
    adapters: str = field(default="", metadata={"help": "comma-separated peft adapter folders (at least two)"})
    weights: str = field(default="", metadata={"help": "comma-separated weights, one per adapter; empty = equal"})
    out_dir: Path = field(default=Path("training/runs/average"), metadata={"help": "folder for the averaged adapter"})


def _comparable(value: Any) -> Any:
    """peft writes target_modules as a list in no fixed order."""
    return sorted(value) if isinstance(value, list) else value


def _weights(cfg: AverageConfig, n: int) -> list[float]:
    if not cfg.weights:
        return [1.0 / n] * n
    try:
        w = [float(x) for x in cfg.weights.split(",")]
    except ValueError as exc:
        raise AverageError(f"--weights must be numbers: {cfg.weights!r}") from exc
    if len(w) != n or any(x < 0 for x in w) or sum(w) <= 0:
        raise AverageError(f"--weights needs {n} non-negative numbers with a positive sum, got {cfg.weights!r}")
    return [x / sum(w) for x in w]


def average(cfg: AverageConfig) -> dict[str, Any]:
    """Write the averaged adapter to `cfg.out_dir`; returns the provenance also written to `average.json`."""
    import torch
    from safetensors.torch import load_file, save_file

    dirs = [Path(d) for d in cfg.adapters.split(",") if d]
    if len(dirs) < 2:
        raise AverageError("--adapters needs at least two adapter folders")
    for d in dirs:
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            if not (d / f).is_file():
                raise AverageError(f"{d} is not a peft adapter folder (no {f})")
    weights = _weights(cfg, len(dirs))
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in dirs]
    for d, c in zip(dirs[1:], configs[1:], strict=True):
        diff = [k for k in SAME_CONFIG if _comparable(c.get(k)) != _comparable(configs[0].get(k))]
        if diff:
            raise AverageError(f"{d} differs from {dirs[0]} in {', '.join(diff)}; only like adapters average")
    states = [load_file(str(d / "adapter_model.safetensors")) for d in dirs]
    for d, s in zip(dirs[1:], states[1:], strict=True):
        if s.keys() != states[0].keys():
            raise AverageError(f"{d} holds other tensors than {dirs[0]}")
        bad = [k for k in s if s[k].shape != states[0][k].shape]
        if bad:
            raise AverageError(f"{d}: {bad[0]} has shape {tuple(s[bad[0]].shape)}, "
                               f"{dirs[0]} has {tuple(states[0][bad[0]].shape)}")
    # hashed before writing: the output folder may be one of the sources
    sources = [{"adapter": str(d), "weight": round(w, 6), "sha256": sha256_file(d / "adapter_model.safetensors")}
               for d, w in zip(dirs, weights, strict=True)]
    out: dict[str, torch.Tensor] = {}
    for k, first in states[0].items():
        acc = torch.zeros_like(first, dtype=torch.float32)
        for w, s in zip(weights, states, strict=True):
            acc += w * s[k].float()
        out[k] = acc.to(first.dtype)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, str(cfg.out_dir / "adapter_model.safetensors"))
    (cfg.out_dir / "adapter_config.json").write_text(json.dumps(configs[0], indent=2) + "\n")
    record = {"sources": sources,
              "tensors": len(out), "sha256": sha256_file(cfg.out_dir / "adapter_model.safetensors")}
    (cfg.out_dir / "average.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(cfg: AverageConfig) -> dict[str, Any]:
    import sys

    try:
        record = average(cfg)
    except AverageError as exc:
        sys.exit(f"average failed: {exc}")
    print(f"average: {len(record['sources'])} adapters -> {cfg.out_dir} ({record['tensors']} tensors)", flush=True)
    return record
