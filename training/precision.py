"""Precision paths with torchao 0.18: FP8 training, int8 QAT (prepare → train → convert), PTQ.

* FP8 training (`convert_to_float8_training`, `tensorwise` or `rowwise` recipe) needs an NVIDIA GPU
  with compute capability >= 8.9 (L4, H100); on CPU the conversion works but the matmuls are
  emulated and far too slow to train, so `convert_fp8_training` refuses CPU unless told otherwise.
* QAT: int8 per-token dynamic activations + int8 per-channel weights are fake-quantised during
  training (`QATConfig(base, step="prepare")`) and really quantised after it (`step="convert"`).
  Only the language model's linears are converted, never `lm_head` (tied to the embeddings) or LoRA
  matrices (they are merged into the base weight before `convert`).
* PTQ: int8 weight-only, int8 dynamic activation + int8 weight (both run on CPU), float8 dynamic
  activation + float8 weight (GPU, SM >= 8.9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

PtqKind = Literal["int8_weight_only", "int8_dynamic", "int8_dynamic_intx", "float8_dynamic"]
PTQ_KINDS: tuple[str, ...] = ("int8_weight_only", "int8_dynamic", "int8_dynamic_intx", "float8_dynamic")
GPU_ONLY_PTQ = frozenset({"float8_dynamic"})


class PrecisionUnavailable(RuntimeError):
    """The requested precision path needs hardware this machine does not have."""


def fp8_capable() -> bool:
    """An NVIDIA GPU with compute capability >= 8.9 is present."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def _linear_filter(module: torch.nn.Module, fqn: str) -> bool:
    """Language-model linears only: no lm_head, no vision tower, no LoRA matrices."""
    if not isinstance(module, torch.nn.Linear):
        return False
    return not any(s in fqn for s in ("lm_head", "vision", "lora_", "multi_modal_projector"))


def convert_fp8_training(model: torch.nn.Module, recipe: str, *, allow_cpu: bool = False) -> torch.nn.Module:
    """Swap eligible linears for torchao `Float8Linear` with the named recipe (in place).

    Raises:
        PrecisionUnavailable: no SM >= 8.9 GPU and `allow_cpu` is false.
    """
    if not allow_cpu and not fp8_capable():
        raise PrecisionUnavailable("FP8 training needs an NVIDIA GPU with compute capability >= 8.9 (L4, H100); "
                                   "use --fp8 none on this machine")
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig.from_recipe_name(recipe)

    def keep(mod: torch.nn.Module, fqn: str) -> bool:
        # float8 matmuls need both dims divisible by 16
        if not _linear_filter(mod, fqn):
            return False
        lin: torch.nn.Linear = mod  # type: ignore[assignment]
        return lin.in_features % 16 == 0 and lin.out_features % 16 == 0

    convert_to_float8_training(model, config=config, module_filter_fn=keep)
    return model


def _qat_base_config() -> Any:
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerAxis

    return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))


def qat_prepare(model: torch.nn.Module) -> torch.nn.Module:
    """QAT step 1: fake-quantise the language model's linears (int8 activations per token, int8 weights)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(_qat_base_config(), step="prepare"), filter_fn=_linear_filter)
    return model


def qat_convert(model: torch.nn.Module) -> torch.nn.Module:
    """QAT step 2: replace the fake-quantised linears by really int8-quantised ones."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    def is_fake(mod: torch.nn.Module, fqn: str) -> bool:
        return type(mod).__name__ == "FakeQuantizedLinear" or _linear_filter(mod, fqn)

    quantize_(model, QATConfig(_qat_base_config(), step="convert"), filter_fn=is_fake)
    return model


def ptq(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Post-training quantisation of the language model's linears (in place).

    Raises:
        PrecisionUnavailable: `float8_dynamic` without an SM >= 8.9 GPU.
        ValueError: unknown kind.
    """
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        PerRow,
        quantize_,
    )

    if kind == "float8_dynamic":
        if not fp8_capable():
            raise PrecisionUnavailable("float8 dynamic PTQ needs an NVIDIA GPU with compute capability >= 8.9")
        config: Any = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    elif kind == "int8_weight_only":
        config = Int8WeightOnlyConfig()
    elif kind == "int8_dynamic":
        config = Int8DynamicActivationInt8WeightConfig()
    elif kind == "int8_dynamic_intx":
        config = _qat_base_config()  # the scheme QAT converts to: PTQ vs QAT on equal terms
    else:
        raise ValueError(f"unknown PTQ kind {kind!r}; choose one of {PTQ_KINDS}")
    quantize_(model, config, filter_fn=_linear_filter)
    return model


def cast_safetensors(path: Path, dtype: torch.dtype) -> None:
    """Rewrite a safetensors file with every floating tensor cast to `dtype` (smaller adapters)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
              str(path), metadata=meta)
