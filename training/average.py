"""Combine LoRA adapters in weight space: `python -m training average --adapters A,B --out-dir D`.

Two ways (`--space`):

* `factors` (the default): each LoRA factor of the result is the weighted mean of the same factor in
  every adapter (weights normalised to sum 1). That is not the mean of the adapters' updates (B·A),
  but when every adapter was trained from the first one (a continuation) their factors stay close and
  the two are nearly the same. The adapters must share rank, alpha, target modules and tensor names.
* `delta`: the result's update of every weight matrix is exactly `sum_i w_i * scale_i * B_i @ A_i`
  with the weights as given (not normalised, may be negative: `1.5,-0.5` extrapolates past the first
  adapter along the direction from the second), re-factored by SVD into a new adapter whose rank is the
  sum of the sources' ranks (exact) or `--rank k` (the best rank-k approximation of each update, per
  matrix). One adapter with `--rank` truncates it. Ranks and alphas may differ between sources.

`average.json` in the output records the sources, their sha256, the weights and (delta) the share of
the updates' total energy (squared singular values, summed over every matrix) the kept rank holds, so
the result can be rebuilt and checked. docs/training.md records what the combined adapters scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.model_prep import ModelPrepError, lora_scale, sha256_file

# What must agree for factor-wise averaging to mean anything.
SAME_CONFIG = ("peft_type", "r", "lora_alpha", "target_modules", "use_rslora", "use_dora")


class AverageError(ValueError):
    """The adapters cannot be averaged (missing files, different shapes or LoRA settings)."""


@dataclass(frozen=True, slots=True)
class AverageConfig:
    adapters: str = field(default="", metadata={"help": "comma-separated peft adapter folders (at least two; one "
                                                          "with --space delta --rank k)"})
    weights: str = field(default="", metadata={"help": "comma-separated weights, one per adapter; empty = equal. "
                                                        "factors: normalised to sum 1; delta: used as given"})
    space: str = field(default="factors", metadata={"help": "factors (mean of each LoRA factor) or delta (exact "
                                                            "weighted sum of the updates B@A, re-factored by SVD)"})
    rank: int = field(default=0, metadata={"help": "delta only: rank of the result (0 = the sum of the sources' "
                                                   "ranks, i.e. exact)"})
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
    if cfg.space == "delta":
        if len(w) != n or not any(w):
            raise AverageError(f"--weights needs {n} numbers, not all zero, got {cfg.weights!r}")
        return w
    if len(w) != n or any(x < 0 for x in w) or sum(w) <= 0:
        raise AverageError(f"--weights needs {n} non-negative numbers with a positive sum, got {cfg.weights!r}")
    return [x / sum(w) for x in w]


def _matrix_side(key: str, shape: Any) -> int:
    """The side of a LoRA factor that belongs to the weight matrix: A is (r, in), B is (out, r)."""
    return int(shape[1] if ".lora_A." in key else shape[0])


def average(cfg: AverageConfig) -> dict[str, Any]:
    """Write the averaged adapter to `cfg.out_dir`; returns the provenance also written to `average.json`."""
    import torch
    from safetensors.torch import load_file

    if cfg.space not in ("factors", "delta"):
        raise AverageError(f"--space must be factors or delta, got {cfg.space!r}")
    if cfg.rank < 0 or (cfg.rank and cfg.space != "delta"):
        raise AverageError("--rank is a positive number and only means something with --space delta")
    dirs = [Path(d) for d in cfg.adapters.split(",") if d]
    if len(dirs) < 2 and not (len(dirs) == 1 and cfg.rank):
        raise AverageError("--adapters needs at least two adapter folders (or one with --space delta --rank k)")
    for d in dirs:
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            if not (d / f).is_file():
                raise AverageError(f"{d} is not a peft adapter folder (no {f})")
    weights = _weights(cfg, len(dirs))
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in dirs]
    same = SAME_CONFIG if cfg.space == "factors" else tuple(k for k in SAME_CONFIG if k not in ("r", "lora_alpha"))
    for d, c in zip(dirs[1:], configs[1:], strict=True):
        diff = [k for k in same if _comparable(c.get(k)) != _comparable(configs[0].get(k))]
        if diff:
            raise AverageError(f"{d} differs from {dirs[0]} in {', '.join(diff)}; only like adapters average")
    states = [load_file(str(d / "adapter_model.safetensors")) for d in dirs]
    # hashed before writing: the output folder may be one of the sources
    sources = [{"adapter": str(d), "weight": round(w, 6), "sha256": sha256_file(d / "adapter_model.safetensors")}
               for d, w in zip(dirs, weights, strict=True)]
    for d, s in zip(dirs[1:], states[1:], strict=True):
        if s.keys() != states[0].keys():
            raise AverageError(f"{d} holds other tensors than {dirs[0]}")
        # factors must match exactly; for updates only (out, in) must: the rank may differ
        bad = [k for k in s if (s[k].shape != states[0][k].shape if cfg.space == "factors"
                                else _matrix_side(k, s[k].shape) != _matrix_side(k, states[0][k].shape))]
        if bad:
            raise AverageError(f"{d}: {bad[0]} has shape {tuple(s[bad[0]].shape)}, "
                               f"{dirs[0]} has {tuple(states[0][bad[0]].shape)}")
    if cfg.space == "delta":
        return _write(cfg, sources, *_combine_updates(cfg, dirs, configs, states, weights))
    out: dict[str, torch.Tensor] = {}
    for k, first in states[0].items():
        acc = torch.zeros_like(first, dtype=torch.float32)
        for w, s in zip(weights, states, strict=True):
            acc += w * s[k].float()
        out[k] = acc.to(first.dtype)
    return _write(cfg, sources, out, configs[0], {})


def _combine_updates(cfg: AverageConfig, dirs: list[Path], configs: list[dict[str, Any]],
                     states: list[dict[str, Any]], weights: list[float],
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per matrix: the exact weighted sum of the updates, then its best rank-r factors (B = U√S, A = √S Vᵀ)."""
    import torch

    a_keys = sorted(k for k in states[0] if k.endswith(".lora_A.weight"))
    others = set(states[0]) - set(a_keys) - {k.replace(".lora_A.", ".lora_B.") for k in a_keys}
    if others:
        raise AverageError(f"--space delta handles LoRA factors only; {sorted(others)[0]} is not one")
    try:
        scales = [lora_scale(c, d) for c, d in zip(configs, dirs, strict=True)]
    except ModelPrepError as exc:
        raise AverageError(str(exc)) from exc
    full_rank = sum(int(c["r"]) for c in configs)
    rank = cfg.rank or full_rank
    out: dict[str, torch.Tensor] = {}
    kept, total = 0.0, 0.0
    for ka in a_keys:
        kb = ka.replace(".lora_A.", ".lora_B.")
        update = sum(w * sc * (s[kb].double() @ s[ka].double())
                     for w, sc, s in zip(weights, scales, states, strict=True))
        u, sv, vh = torch.linalg.svd(update, full_matrices=False)
        k = min(rank, sv.numel())
        root = sv[:k].sqrt()
        b, a = u[:, :k] * root, root[:, None] * vh[:k]
        if k < rank:  # keep every matrix at the adapter's one rank: pad with zero directions
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - k)], dim=1)
            a = torch.cat([a, a.new_zeros(rank - k, a.shape[1])], dim=0)
        dtype = states[0][ka].dtype
        out[ka], out[kb] = a.to(dtype).contiguous(), b.to(dtype).contiguous()
        kept += float((sv[:k] ** 2).sum())
        total += float((sv ** 2).sum())
    config = {**configs[0], "r": rank, "lora_alpha": rank, "use_rslora": False}  # scale 1: B@A is the update
    extra = {"space": "delta", "rank": rank, "exact": rank >= full_rank,
             "energy_kept": round(kept / total, 6) if total else 1.0}
    return out, config, extra


def _write(cfg: AverageConfig, sources: list[dict[str, Any]], out: dict[str, Any], config: dict[str, Any],
           extra: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save_file

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_file(out, str(cfg.out_dir / "adapter_model.safetensors"))
    (cfg.out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    record = {"sources": sources, **extra,
              "tensors": len(out), "sha256": sha256_file(cfg.out_dir / "adapter_model.safetensors")}
    (cfg.out_dir / "average.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(cfg: AverageConfig) -> dict[str, Any]:
    import sys

    try:
        record = average(cfg)
    except AverageError as exc:
        sys.exit(f"average failed: {exc}")
    how = (f"delta, rank {record['rank']}, {100 * record['energy_kept']:.2f} % of the update's energy kept"
           if cfg.space == "delta" else "factors")
    print(f"average: {len(record['sources'])} adapter(s) -> {cfg.out_dir} ({record['tensors']} tensors; {how})",
          flush=True)
    return record
