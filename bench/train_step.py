"""Training step time, eager vs `--compile`, on the default model's two recipes and the same batches.

What it measures: one optimiser step's forward + backward pass (the optimiser update of 3.8 M LoRA
parameters is not included: it is the same in both modes and takes milliseconds) of the real
Gemma 3 270M with the default adapter loaded, for

* `packed`: the continuation stages of the default recipe (`--preset gemma-3-270m-cpu-packed
  --frozen-layers 0 --lora-r 16`): 4 texts per step, every positive and 4 negatives each;
* `per-pair`: the first stage (`python -m training train`): 8 (text, category) prompts per step.

Both modes run in one process on one model: the decoder layers are compiled once, and for every
batch the eager step (`torch.compiler.set_stance("force_eager")`) and the compiled one are timed
back to back, in alternating order, so the machine's background load hits both alike. The ratio is
the median of the per-batch ratios; the first batches only warm the compiled graphs up (their time
is reported as the compile cost).

    .venv/bin/python bench/train_step.py [--steps 8] [--dtypes float32 bfloat16] [--layouts packed per-pair]

Prints a table and writes JSON to --out (bench/results/train_step.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine_config import cpu_flags, native_bf16_cpu  # noqa: E402
from training.config import ADAPTER_DIR, train_config  # noqa: E402
from training.modeling import collate, pair_loss  # noqa: E402
from training.packing import LayerSplit  # noqa: E402
from training.train import make_plan, micro_batches, start_run  # noqa: E402
from training.train_packed import make_packed_plan, step_loss  # noqa: E402

RECIPES: dict[str, dict[str, Any]] = {
    "packed": {"preset": "gemma-3-270m-cpu-packed", "frozen_layers": 0, "lora_r": 16, "lora_alpha": 32,
               "pos_weight": 2.4, "max_steps": 600},
    "per-pair": {"preset": "gemma-3-270m-cpu", "max_steps": 400},
}


def step_fn(layout: str, dtype: str) -> tuple[Callable[[int], torch.Tensor], Any]:
    """The micro-batch loss of the layout's recipe, on a model whose layers are compiled (not yet run)."""
    opts = dict(RECIPES[layout])
    cfg = train_config(opts.pop("preset"), **opts, dtype=dtype, compile=True, init_adapter=str(ADAPTER_DIR),
                       output_dir=Path("/tmp/guardrail-bench-train-step"))
    cfg, _, _, _, tok, model = start_run(cfg)
    if layout == "packed":
        plan = make_packed_plan(cfg, tok)
        split = LayerSplit(model, 0)
        return (lambda i: step_loss(split, plan, plan.batches[i], None, tok.pad_token_id, cfg.pos_weight)), model
    batches = list(micro_batches(make_plan(cfg, tok)))
    return (lambda i: pair_loss(model, collate(batches[i], tok.pad_token_id))), model


def timed(loss: Callable[[int], torch.Tensor], model: Any, i: int, eager: bool) -> float:
    t = time.perf_counter()
    if eager:
        with torch.compiler.set_stance("force_eager"):
            loss(i).backward()
    else:
        loss(i).backward()
    dt = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    return dt


def measure(layout: str, dtype: str, steps: int, warm: int) -> dict[str, Any]:
    loss, model = step_fn(layout, dtype)
    t = time.perf_counter()
    for i in range(warm):
        timed(loss, model, i, eager=False)
    compile_s = time.perf_counter() - t
    eager, compiled = [], []
    for k, i in enumerate(range(warm, warm + steps)):
        order = (True, False) if k % 2 == 0 else (False, True)
        got = {e: timed(loss, model, i, eager=e) for e in order}
        eager.append(got[True])
        compiled.append(got[False])
        print(f"  {layout} {dtype} batch {i}: eager {got[True]:.2f} s, compiled {got[False]:.2f} s", flush=True)
    return {"layout": layout, "dtype": dtype, "steps": steps, "eager_s": statistics.median(eager),
            "compiled_s": statistics.median(compiled),
            "speedup": statistics.median(e / c for e, c in zip(eager, compiled, strict=True)),
            "warmup_s": round(compile_s, 1), "eager_all": eager, "compiled_all": compiled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed batches per row (after the warm-up ones)")
    ap.add_argument("--warmup", type=int, default=2, help="batches that compile the graphs (not in the ratio)")
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    ap.add_argument("--layouts", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_step.json")
    args = ap.parse_args()
    rows = []
    for dtype in args.dtypes:
        for layout in args.layouts:
            rows.append(measure(layout, dtype, args.steps, args.warmup))
            torch._dynamo.reset()  # the next row compiles its own model from scratch
    print("\n| layout | dtype | eager s/step | compiled s/step | speedup (median of per-batch ratios) | warm-up s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['layout']} | {r['dtype']} | {r['eager_s']:.2f} | {r['compiled_s']:.2f} | "
              f"{r['speedup']:.2f}x | {r['warmup_s']} |")
    machine = {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "native_bf16": native_bf16_cpu(), "amx": "amx_bf16" in cpu_flags()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
