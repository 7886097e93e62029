"""The engine's dtype: bf16 only where the hardware multiplies bf16, unless GUARDRAIL_ENGINE_DTYPE pins it.

Pure logic, no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail.cli import _settings, engine_config
from inference.engine_config import EngineConfig, auto_dtype, native_bf16_cpu

AVX2_EPYC = "flags\t\t: fpu sse sse2 avx avx2 fma f16c"
AMX_XEON = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm"


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_auto_dtype_is_bf16_only_where_the_hardware_multiplies_bf16() -> None:
    assert not native_bf16_cpu(AVX2_EPYC)
    assert native_bf16_cpu(AMX_XEON) and native_bf16_cpu(GRAVITON3)
    assert auto_dtype("auto", gpu=False, cpuinfo=AVX2_EPYC) == "float32"
    assert auto_dtype("auto", gpu=False, cpuinfo=AMX_XEON) == "bfloat16"
    assert auto_dtype("auto", gpu=True, cpuinfo=AVX2_EPYC) == "bfloat16"
    # an explicit choice is kept, even where it is slow
    assert auto_dtype("bfloat16", gpu=False, cpuinfo=AVX2_EPYC) == "bfloat16"
    assert auto_dtype("float32", gpu=True) == "float32"


def test_the_engine_flags_carry_the_resolved_dtype() -> None:
    cfg = EngineConfig(model="/m", served_model_name="m")
    assert cfg.dtype == "auto"
    assert _flag(cfg.args("gpu"), "--dtype") == "bfloat16"
    assert _flag(cfg.args("cpu"), "--dtype") == ("bfloat16" if native_bf16_cpu() else "float32")
    pinned = EngineConfig(model="/m", served_model_name="m", dtype="float16")
    assert _flag(pinned.args("cpu"), "--dtype") == _flag(pinned.args("gpu"), "--dtype") == "float16"


def test_guardrail_engine_dtype_pins_the_local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_ENGINE_DTYPE", "float32")
    pinned = engine_config(_settings(), Path("/m"), "m")
    assert _flag(pinned.args("cpu"), "--dtype") == "float32"
    monkeypatch.delenv("GUARDRAIL_ENGINE_DTYPE")
    assert engine_config(_settings(), Path("/m"), "m").dtype == "auto"
    monkeypatch.setenv("GUARDRAIL_ENGINE_DTYPE", "fp8")
    with pytest.raises(SystemExit) as bad:
        _settings()
    assert "GUARDRAIL_ENGINE_DTYPE" in str(bad.value.code)
