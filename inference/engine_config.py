"""vLLM launch configuration, rendered from one place for every target.

The same `EngineConfig` renders the flags of the local CPU server (the embedded default's stand-in
for the Cloud Run sidecar) and of the GPU sidecar in `deploy/`. `max_num_seqs` is the single
concurrency setting: it becomes vLLM's `--max-num-seqs` and Cloud Run's `containerConcurrency`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Target = Literal["cpu", "gpu"]
EngineDtype = Literal["auto", "bfloat16", "float32", "float16"]


def native_bf16_cpu(cpuinfo: str | None = None) -> bool:
    """This CPU multiplies bf16 in hardware (x86 AMX / AVX-512 BF16, Arm BF16), read from /proc/cpuinfo.

    Without it bf16 matmuls are emulated. Measured on an AVX2-only AMD EPYC (2 cores): the vLLM CPU
    server took 11.3 s per 8-category judgement in bf16 and 2.1 s in fp32; the packed training preset's
    frozen-layer pass 5.2 s per text in bf16 and 1.07 s in fp32. On the AMX machines bf16 is the faster.
    """
    flags = cpu_flags() if cpuinfo is None else frozenset(cpuinfo.split())
    return bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The words of /proc/cpuinfo, read once per process (every engine start and training run asks)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def auto_dtype(requested: str, *, gpu: bool, cpuinfo: str | None = None) -> str:
    """`auto` (serving and training): bf16 on a GPU and on CPUs with native bf16, fp32 on other CPUs."""
    if requested != "auto":
        return requested
    return "bfloat16" if gpu or native_bf16_cpu(cpuinfo) else "float32"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that shapes the vLLM server; frozen so a rendered launch cannot drift."""

    model: str
    """Local folder (or registry path baked into the image) of the served weights."""
    served_model_name: str
    max_num_seqs: int = 8
    """Sequences vLLM schedules at once; also the Cloud Run container concurrency."""
    max_model_len: int = 2048
    enable_prefix_caching: bool = True
    block_size: int = 16
    """KV block size. The CPU build defaults to 128, which short judge prompts never fill, so
    their shared prefix would never be reused; 16 lets instructions + text be cached."""
    max_logprobs: int = 20
    dtype: EngineDtype = "auto"
    """`auto` = `auto_dtype`: bf16 on GPUs and AMX CPUs, fp32 where the CPU would emulate bf16 (5x slower)."""
    # CPU-only knobs
    kv_cache_memory_bytes: str = "256M"
    enforce_eager: bool = True
    # GPU-only knobs
    gpu_memory_utilization: float = 0.90
    quantization: str | None = None
    """None for a checkpoint already quantised (compressed-tensors FP8 says so in its config)."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def resolved_dtype(self, target: Target) -> str:
        """The dtype `--dtype` carries for `target` (`auto` resolved for this machine)."""
        return auto_dtype(self.dtype, gpu=target == "gpu")

    def args(self, target: Target, *, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
        """The vLLM OpenAI server's command-line flags for `target`."""
        a = [
            "--model", self.model,
            "--served-model-name", self.served_model_name,
            "--host", host,
            "--port", str(port),
            "--dtype", self.resolved_dtype(target),
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            "--max-logprobs", str(self.max_logprobs),
            "--block-size", str(self.block_size),
            "--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching",
            # usage.prompt_tokens_details.cached_tokens: how much of each prompt the prefix cache served
            "--enable-prompt-tokens-details",
            "--disable-uvicorn-access-log",
        ]
        if target == "cpu":
            a += ["--kv-cache-memory-bytes", self.kv_cache_memory_bytes]
            if self.enforce_eager:
                a.append("--enforce-eager")
        else:
            a += [
                "--gpu-memory-utilization", str(self.gpu_memory_utilization),
                "--limit-mm-per-prompt", '{"image":0}',
            ]
            if self.quantization:
                a += ["--quantization", self.quantization]
        return a + list(self.extra_args)


def cpu_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the CPU server: offline hub, OpenMP threads bound to every core."""
    env = dict(os.environ if base is None else base)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # The default "auto" binding leaves one of two cores idle (≈30 % slower here).
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}" if cores > 1 else "0")
    # An empty value crashes the CPU worker; never pass one through.
    if not env.get("VLLM_CPU_KVCACHE_SPACE"):
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    return env
