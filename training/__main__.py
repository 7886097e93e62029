"""`python -m training <command>`.

data build | data augment | train | average | export | publish | eval | compare | agree | blend | quant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.config import PRESETS, TrainConfig, add_dataclass_args, from_namespace


def cmd_data_build(args: argparse.Namespace) -> None:
    from training.dataset import DataConfig, DatasetError, build, counts_table

    cfg = from_namespace(DataConfig, args)
    try:
        res = build(cfg)
    except DatasetError as exc:
        sys.exit(f"data build failed: {exc}")
    counts = counts_table(res.splits)
    for name, c in counts.items():
        print(f"{name}: {c['records']} records")
    print(f"source lines per file: {json.dumps(res.files)}")
    print(f"dropped duplicates: {len(res.dropped_duplicates)}")
    for d in res.dropped_duplicates:
        print(f"  {d}")
    if res.invalid:
        print(f"skipped invalid lines: {len(res.invalid)}")
        for e in res.invalid:
            print(f"  {e}")
    print(f"wrote {cfg.out_dir / 'splits'} and {cfg.out_dir / 'README.md'}")


def cmd_data_augment(args: argparse.Namespace) -> None:
    from training.augment import AugmentConfig, main

    main(from_namespace(AugmentConfig, args))


def cmd_train(args: argparse.Namespace) -> None:
    from training.train import main

    cfg = from_namespace(TrainConfig, args, PRESETS[args.preset])
    main(cfg)


def cmd_average(args: argparse.Namespace) -> None:
    from training.average import AverageConfig, main

    main(from_namespace(AverageConfig, args))


def cmd_export(args: argparse.Namespace) -> None:
    from training.export import ExportConfig, main

    main(from_namespace(ExportConfig, args))


def cmd_publish(args: argparse.Namespace) -> None:
    from training.publish import PublishConfig, main

    main(from_namespace(PublishConfig, args))


def cmd_eval(args: argparse.Namespace) -> None:
    from training.evaluate import EvalConfig, main

    main(from_namespace(EvalConfig, args))


def cmd_compare(args: argparse.Namespace) -> None:
    from training.compare import CompareConfig, main

    main(from_namespace(CompareConfig, args))


def cmd_agree(args: argparse.Namespace) -> None:
    from training.agreement import AgreeConfig, main

    main(from_namespace(AgreeConfig, args))


def cmd_blend(args: argparse.Namespace) -> None:
    from training.blend import BlendConfig, main

    main(from_namespace(BlendConfig, args))


def cmd_quant(args: argparse.Namespace) -> None:
    from training.quant_eval import QuantConfig, main

    main(from_namespace(QuantConfig, args))


def _lazy(module: str, cls: str) -> type:
    import importlib

    found: type = getattr(importlib.import_module(module), cls)
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training", description="judge data, fine-tuning, export, evaluation")
    sub = p.add_subparsers(dest="cmd", required=True)
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_cmd", required=True)
    b = data.add_parser("build", help="validate, de-duplicate, split 80/10/10, write the dataset card")
    add_dataclass_args(b, _lazy("training.dataset", "DataConfig"))
    b.set_defaults(fn=cmd_data_build)
    a = data.add_parser("augment", help="a split plus kana/romaji re-spellings of a share of its short inputs")
    add_dataclass_args(a, _lazy("training.augment", "AugmentConfig"))
    a.set_defaults(fn=cmd_data_augment)
    t = sub.add_parser("train", help="fine-tune (LoRA or full) with the serving prompt; checkpoints, --resume")
    t.add_argument("--preset", choices=sorted(PRESETS), default="gemma-3-270m-cpu", help="defaults for a model size")
    add_dataclass_args(t, TrainConfig)
    t.set_defaults(fn=cmd_train)
    for name, module, cls, fn, help_ in (
        ("average", "training.average", "AverageConfig", cmd_average,
         "combine LoRA adapters in weight space: factor-wise average, or (--space delta) exact sums of updates, "
         "optionally truncated by SVD to a lower --rank"),
        ("export", "training.export", "ExportConfig", cmd_export,
         "merge a LoRA adapter into a vLLM-loadable folder (optionally FP8 compressed-tensors)"),
        ("publish", "training.publish", "PublishConfig", cmd_publish,
         "upload an exported folder to the model registry (gs://… or a local path)"),
        ("eval", "training.evaluate", "EvalConfig", cmd_eval,
         "score a JSONL split through a real vLLM server; metrics, threshold sweep, PNGs, report"),
        ("compare", "training.compare", "CompareConfig", cmd_compare,
         "one comparison table from several eval/quant reports"),
        ("agree", "training.agreement", "AgreeConfig", cmd_agree,
         "a second reader's blind labels against the dataset's, and model reports against both"),
        ("blend", "training.blend", "BlendConfig", cmd_blend,
         "average several models' scores on one split into one report (a score-level ensemble)"),
        ("quant", "training.quant_eval", "QuantConfig", cmd_quant,
         "BF16 vs int8 PTQ vs int8 QAT (transformers on CPU; FP8 rows on a GPU)"),
    ):
        sp = sub.add_parser(name, help=help_)
        add_dataclass_args(sp, _lazy(module, cls))
        sp.set_defaults(fn=fn)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()


__all__ = ["Path", "main"]
