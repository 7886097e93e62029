"""`training compare`: one markdown/JSON table from several evaluation reports (rows in the given order)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.pairs import DEFAULT_SPECS

FP8_ROWS = ("fp8_training", "ptq_float8_dynamic")
CATS = [c.id for c in DEFAULT_SPECS] + ["custom"]


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """Reports in, one table out."""

    reports: str = field(default="", metadata={"help": "comma-separated report.json paths (or folders holding one)"})
    out: Path = field(default=Path("training/reports/comparison.md"), metadata={"help": "markdown output (+ .json)"})
    title: str = field(default="Judge comparison", metadata={"help": "table title"})
    add_fp8_placeholders: bool = field(default=True, metadata={
        "help": "add 'needs GPU' rows for FP8 variants missing from the reports"})


def load(path: Path) -> dict[str, Any]:
    p = path / "report.json" if path.is_dir() else path
    data: dict[str, Any] = json.loads(p.read_text())
    return data


def table(reports: list[dict[str, Any]], *, title: str, fp8_placeholders: bool = True) -> str:
    """Markdown: overall F1, macro F1, benign FPR, harmful texts caught, per-category F1, threshold, data, engine."""
    names = {r["name"] for r in reports}
    rows = list(reports)
    if fp8_placeholders:
        rows += [{"name": n, "skipped": "needs an NVIDIA GPU with compute capability >= 8.9"}
                 for n in FP8_ROWS if n not in names]
    head = ["model", "overall F1", "macro F1", "benign FPR", "harmful caught", *CATS, "threshold", "texts",
            "scored with"]
    out = [f"# {title}", "", "| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for r in rows:
        if "skipped" in r:
            out.append("| " + " | ".join([f"`{r['name']}`", f"— ({r['skipped']})", *[""] * (len(head) - 2)]) + " |")
            continue
        cats = r["categories"]
        caught = f"{r['harmful_caught']:.1%}" if "harmful_caught" in r else "—"
        cells = [f"`{r['name']}`", f"{r['overall']['f1']:.3f}", f"{r['macro_f1']:.3f}", f"{r['benign_fpr']:.1%}",
                 caught,
                 *[f"{cats[c]['f1']:.3f}" if c in cats else "" for c in CATS],
                 str(r["threshold"]), str(r.get("texts", "")), str(r.get("engine", ""))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(cfg: CompareConfig) -> str:
    paths = [Path(p.strip()) for p in cfg.reports.split(",") if p.strip()]
    if not paths:
        raise SystemExit("compare: give --reports a,b,c")
    reports = [load(p) for p in paths]
    md = table(reports, title=cfg.title, fp8_placeholders=cfg.add_fp8_placeholders)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(md)
    cfg.out.with_suffix(".json").write_text(json.dumps(
        [{k: r.get(k) for k in ("name", "overall", "macro_f1", "benign_fpr", "harmful_caught", "threshold", "texts",
                                "engine", "skipped")} for r in reports], indent=1))
    print(md)
    return md
