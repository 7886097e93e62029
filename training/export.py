"""Export: a fine-tuned run becomes a folder vLLM loads as-is.

* LoRA: the adapter is merged into the base weights (`inference.model_prep.merge_lora`, the same
  merge `guardrail model prepare` does), shard by shard, so the 12B never needs to fit in memory.
* Full fine-tuning: the run's `final/` folder is already a Hugging Face folder; it is copied.
* `fp8=True` (the 12B on an L4): every language-model linear weight is stored as
  float8_e4m3fn with one scale per output channel, activations quantised per token at run time,
  in the compressed-tensors `float-quantized` format (the `FP8_DYNAMIC` scheme), so vLLM serves it
  without `--quantization` and never holds the BF16 weights. `lm_head`, embeddings, norms and the
  vision tower stay BF16.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference.model_prep import ADAPTER_DIR, MANIFEST, merge_lora

FP8_MAX = 448.0  # largest finite float8_e4m3fn
_FP8_LINEAR = re.compile(r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
FP8_IGNORE = ["lm_head", "re:.*vision_tower.*", "re:.*multi_modal_projector.*"]


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Where the trained weights are and where the servable folder goes."""

    adapter_dir: Path = field(default=ADAPTER_DIR, metadata={"help": "LoRA adapter folder (peft format)"})
    full_model_dir: Path | None = field(default=None, metadata={
        "help": "a full fine-tune's final/ folder (instead of an adapter)"})
    base_dir: Path | None = field(default=None, metadata={"help": "base HF folder; default: the prepared base 270M"})
    out_dir: Path = field(default=Path("training/exports/jp-judge-270m"), metadata={"help": "output folder"})
    name: str = field(default="gemma-3-270m-jp-judge", metadata={"help": "served model name in the manifest"})
    fp8: bool = field(default=False, metadata={"help": "write an FP8 (compressed-tensors FP8_DYNAMIC) checkpoint"})


def _shards(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return ["model.safetensors"]


def fp8_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric float8_e4m3fn: returns (fp8 weight, float32 scale of shape [out, 1])."""
    w = weight.float()
    scale = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def fp8_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every eligible linear weight by its FP8 weight + `weight_scale`."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if _FP8_LINEAR.search(k) and "vision" not in k and v.dim() == 2:
            q, s = fp8_quantize(v)
            out[k] = q
            out[k.removesuffix(".weight") + ".weight_scale"] = s.to(torch.bfloat16)
        else:
            out[k] = v
    return out


def fp8_quantization_config() -> dict[str, Any]:
    """compressed-tensors config for FP8 weights per channel, FP8 activations per token (dynamic)."""
    args = {"num_bits": 8, "type": "float", "symmetric": True, "group_size": None, "block_structure": None,
            "actorder": None, "observer_kwargs": {}}
    return {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "quantization_status": "compressed",
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {**args, "strategy": "channel", "dynamic": False, "observer": "minmax"},
            "input_activations": {**args, "strategy": "token", "dynamic": True, "observer": None},
            "output_activations": None,
            "format": "float-quantized",
        }},
        "ignore": FP8_IGNORE,
        "kv_cache_scheme": None,
    }


def export(cfg: ExportConfig) -> Path:
    """Write the servable folder (atomically) and return it."""
    from safetensors.torch import load_file, save_file

    from training.modeling import base_model_dir

    src = cfg.full_model_dir or cfg.base_dir or base_model_dir()
    out = Path(cfg.out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        for f in Path(src).iterdir():
            if f.is_file() and not f.name.endswith(".safetensors") and f.name != MANIFEST \
                    and not f.name.startswith("adapter_"):
                shutil.copy2(f, tmp / f.name)
        weight_map: dict[str, str] = {}
        applied: set[str] = set()
        for shard in _shards(Path(src)):
            state = load_file(str(Path(src) / shard))
            if cfg.full_model_dir is None:
                state = merge_lora(state, cfg.adapter_dir, strict=False, applied=applied)
            if cfg.fp8:
                state = fp8_state(state)
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / shard), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(state, shard))
        if cfg.full_model_dir is None:
            _check_all_merged(cfg.adapter_dir, applied)
        if (Path(src) / "model.safetensors.index.json").exists():
            (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map},
                                                                           indent=1))
        if cfg.fp8:
            conf = json.loads((tmp / "config.json").read_text())
            conf["quantization_config"] = fp8_quantization_config()
            (tmp / "config.json").write_text(json.dumps(conf, indent=1))
        manifest = {"name": cfg.name, "exported_from": str(cfg.full_model_dir or cfg.adapter_dir),
                    "base": str(src), "fp8": cfg.fp8, "seconds": round(time.monotonic() - t0, 1)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_all_merged(adapter_dir: Path, applied: set[str]) -> None:
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        want = {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") + ".weight"
                for k in f.keys() if k.endswith(".lora_A.weight")}
    if missing := sorted(want - applied):
        raise ValueError(f"{len(missing)} adapted weight(s) not found in the base checkpoint, e.g. {missing[0]}")


def _weights_dtype(folder: Path) -> str:
    """The dtype the folder's weights are stored in (the start's for a merge; a full fine-tune keeps its own)."""
    from safetensors import safe_open

    with safe_open(str(folder / _shards(folder)[0]), framework="pt") as f:
        code = str(f.get_slice(next(iter(f.keys()))).get_dtype())
    return {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(code, code)


def main(cfg: ExportConfig) -> Path:
    out = export(cfg)
    kind = "full fine-tune" if cfg.full_model_dir else "adapter merged"
    print(f"export: {out} ({kind}, {'FP8 compressed-tensors' if cfg.fp8 else _weights_dtype(out)})", flush=True)
    return out
