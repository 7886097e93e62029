"""`training compare`: one markdown/JSON table from several evaluation reports (rows in the given order).

With `--baseline`, a second table gives each model's paired difference from the baseline on the same
texts (`metrics.paired_bootstrap`), so a change of a few texts on a small split is not read as a
better model. `--threshold` re-scores every report from its `scores.jsonl` at one threshold (for
example 0.5, what a category ships with) instead of each report's own. `--records` keeps only the
texts of one JSONL file (for example an earlier, smaller test split, which a grown split contains), so
reports scored on different versions of a split can still be compared, and paired, on what they share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.metrics import ScoredPair, pair_errors, paired_bootstrap
from training.pairs import DEFAULT_SPECS
from training.report import CI_RESAMPLES, build_report

FP8_ROWS = ("fp8_training", "ptq_float8_dynamic")
CATS = [c.id for c in DEFAULT_SPECS] + ["custom"]


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """Reports in, one table out."""

    reports: str = field(default="", metadata={"help": "comma-separated report.json paths (or folders holding one)"})
    out: Path | None = field(default=None, metadata={
        "help": "markdown output (+ .json); required, so a run never overwrites a committed table by default"})
    title: str = field(default="Judge comparison", metadata={"help": "table title"})
    add_fp8_placeholders: bool = field(default=True, metadata={
        "help": "add 'needs GPU' rows for FP8 variants missing from the reports"})
    baseline: str = field(default="", metadata={
        "help": "report folder (with scores.jsonl) to compare every other report against, paired on the same texts"})
    threshold: float = field(default=0.0, metadata={
        "help": "re-score every report from its scores.jsonl at this threshold (0 = each report's own)"})
    records: str = field(default="", metadata={
        "help": "JSONL file (e.g. an earlier test split): re-score every report on only the texts whose ids it holds"})


def _folder(path: Path) -> Path:
    """The report folder of a folder or report.json path."""
    return (path if path.is_dir() else path.parent).resolve()


def load(path: Path) -> dict[str, Any]:
    p = path / "report.json" if path.is_dir() else path
    if not p.is_file():
        raise SystemExit(f"compare: no report at {p}")
    data: dict[str, Any] = json.loads(p.read_text())
    return data


def load_scores(path: Path) -> list[ScoredPair]:
    """The scored pairs a report was built from (`scores.jsonl` beside its report.json)."""
    folder = _folder(path)
    f = folder / "scores.jsonl"
    if not f.is_file():
        raise SystemExit(f"compare: {folder} has no scores.jsonl (needed for --baseline and --threshold)")
    return [ScoredPair(**json.loads(line)) for line in f.read_text().splitlines() if line.strip()]


def table(reports: list[dict[str, Any]], *, title: str, fp8_placeholders: bool = True) -> str:
    """Markdown: overall F1, macro F1, benign FPR, harmful texts caught, wrong pairs by kind, per-category F1,
    threshold, data, engine."""
    names = {r["name"] for r in reports}
    rows = list(reports)
    if fp8_placeholders:
        rows += [{"name": n, "skipped": "needs an NVIDIA GPU with compute capability >= 8.9"}
                 for n in FP8_ROWS if n not in names]
    head = ["model", "overall F1", "macro F1", "benign FPR", "harmful caught", "missed / safe-text / wrong-category",
            *CATS, "threshold", "texts", "scored with"]
    out = [f"# {title}", "", "| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for r in rows:
        if "skipped" in r:
            out.append("| " + " | ".join([f"`{r['name']}`", f"— ({r['skipped']})", *[""] * (len(head) - 2)]) + " |")
            continue
        cats = r["categories"]
        caught = f"{r['harmful_caught']:.1%}" if "harmful_caught" in r else "—"
        e = r.get("pair_errors")
        errors = f"{e['missed']} / {e['safe_text_flags']} / {e['wrong_category_flags']}" if e else "—"
        cells = [f"`{r['name']}`", f"{r['overall']['f1']:.3f}", f"{r['macro_f1']:.3f}", f"{r['benign_fpr']:.1%}",
                 caught, errors,
                 *[f"{cats[c]['f1']:.3f}" if c in cats else "" for c in CATS],
                 str(r["threshold"]), str(r.get("texts", "")), str(r.get("engine", ""))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def paired(baseline: dict[str, Any], base_rows: list[ScoredPair], rep: dict[str, Any], rows: list[ScoredPair]
           ) -> dict[str, Any]:
    """`rep` minus the baseline at each one's threshold, or {"error": ...} when they judged different texts."""
    try:
        return paired_bootstrap(base_rows, baseline["threshold"], rows, rep["threshold"], resamples=CI_RESAMPLES)
    except ValueError as e:
        return {"error": str(e)}


def paired_table(baseline: dict[str, Any], diffs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Markdown: each report minus the baseline, with 95% intervals, on the same texts."""
    out = [f"## Paired with `{baseline['name']}` (threshold {baseline['threshold']})", "",
           f"Model minus baseline on the same texts, with its 95% interval (texts resampled {CI_RESAMPLES:,} "
           "times); higher/lower = share of resamples in which the model's value is higher/lower than the "
           "baseline's (the rest are ties). About a dozen intervals per table: expect one in twenty to exclude 0 "
           "by chance.", "",
           "| model | threshold | Δ F1 | higher / lower | Δ benign FPR | higher / lower | Δ harmful caught | "
           "higher / lower |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rep, d in diffs:
        if "error" in d:
            out.append(f"| `{rep['name']}` | {rep['threshold']} | — ({d['error']}) |  |  |  |  |  |")
            continue
        cells = []
        for stat, fmt in (("f1", "+.3f"), ("benign_fpr", "+.1%"), ("harmful_caught", "+.1%")):
            x = d[stat]
            cells += [f"{x['diff']:{fmt}} [{x['lo']:{fmt}}, {x['hi']:{fmt}}]", f"{_share(x['b_higher'])} / "
                      f"{_share(x['b_lower'])}"]
        out.append(f"| `{rep['name']}` | {rep['threshold']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _share(p: float) -> str:
    """A resampling share; never rounds to a certain-looking 0% or 100% unless it is exactly that."""
    if 0 < p < 0.001:
        return "<0.1%"
    if 0.999 < p < 1:
        return ">99.9%"
    return f"{p:.1%}"


def record_ids(path: Path) -> set[str]:
    """The `id`s of a JSONL file of records (a split)."""
    if not path.is_file():
        raise SystemExit(f"compare: no records file at {path}")
    ids = {json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    if not ids:
        raise SystemExit(f"compare: {path} holds no records")
    return ids


def main(cfg: CompareConfig) -> str:
    paths = [Path(p.strip()) for p in cfg.reports.split(",") if p.strip()]
    if not paths:
        raise SystemExit("compare: give --reports a,b,c")
    if cfg.out is None:
        raise SystemExit("compare: give --out FILE.md (the table is written there, with FILE.json beside it)")
    reports = [load(p) for p in paths]
    keep = record_ids(Path(cfg.records)) if cfg.records else None
    scores: dict[int, list[ScoredPair]] = {}

    def restrict(rows: list[ScoredPair]) -> list[ScoredPair]:
        return rows if keep is None else [r for r in rows if r.record_id in keep]

    def rows_of(i: int) -> list[ScoredPair]:
        if i not in scores:
            scores[i] = restrict(load_scores(paths[i]))
        return scores[i]

    scored = [i for i, r in enumerate(reports) if "skipped" not in r]  # "skipped": a GPU-only row run on a CPU
    if cfg.threshold or keep is not None:  # every headline number recomputed from the stored scores
        reports = [{**r, **build_report(rows_of(i), name=r["name"], threshold=cfg.threshold or r["threshold"])}
                   if i in scored else r for i, r in enumerate(reports)]
    for i in scored:  # reports written before pair_errors existed: counted from their stored scores
        if "pair_errors" not in reports[i] and (_folder(paths[i]) / "scores.jsonl").is_file():
            reports[i] = {**reports[i], "pair_errors": pair_errors(rows_of(i), reports[i]["threshold"])}
    md = table(reports, title=cfg.title, fp8_placeholders=cfg.add_fp8_placeholders)
    diffs: dict[int, dict[str, Any]] = {}
    if cfg.baseline:
        bpath = Path(cfg.baseline)
        base = load(bpath)
        base_rows = restrict(load_scores(bpath))
        if cfg.threshold or keep is not None:
            base = {**base, **build_report(base_rows, name=base["name"], threshold=cfg.threshold or base["threshold"])}
        diffs = {i: paired(base, base_rows, reports[i], rows_of(i)) for i in scored
                 if _folder(paths[i]) != _folder(bpath)}
        md += "\n" + paired_table(base, [(reports[i], d) for i, d in diffs.items()])
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(md)
    cfg.out.with_suffix(".json").write_text(json.dumps(
        [{**{k: r.get(k) for k in ("name", "overall", "macro_f1", "benign_fpr", "harmful_caught", "pair_errors", "ci95",
                                   "threshold", "texts", "engine", "skipped")},
          **({"vs_baseline": diffs[i]} if i in diffs else {})} for i, r in enumerate(reports)], indent=1))
    print(md)
    return md
