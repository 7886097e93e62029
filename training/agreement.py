"""How far the labels themselves agree: a second reader's labels against the dataset's, and models against both.

A second reader labels the texts of a split again, blind (without the dataset's labels, file names or any
model's scores), from the category definitions alone. Their verdicts become pairs exactly as the dataset's
labels do (`training.pairs.expand`), so the same metrics apply:

* the reader against the dataset's labels: pair-level F1, benign FPR, harmful caught, wrong pairs by kind,
  and Cohen's kappa per category — a ceiling of sorts for what a model can score against labels that a
  careful reader of the same definitions does not fully share;
* each model report (its `scores.jsonl`) against the dataset's labels, against the reader's, and on the
  pairs where the two readers agree — whether the model's errors sit where the labels are contested.

The reader file is JSONL, one object per text of the split: `{"id", "violates": [default category ids],
"custom": bool or null}` (`custom` is a bool exactly when the record has a custom category).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.compare import load, load_scores
from training.dataset import read_jsonl
from training.metrics import ScoredPair, cohen_kappa, summary
from training.pairs import CUSTOM, DEFAULT_SPECS, expand


@dataclass
class AgreeConfig:
    split: str = field(default="training/data/splits/dev.jsonl", metadata={
        "help": "the labelled JSONL split the reader labelled again"})
    reader: str = field(default="", metadata={
        "help": "the second reader's JSONL: {id, violates: [category ids], custom: bool|null} per text"})
    reports: str = field(default="", metadata={
        "help": "comma-separated eval report folders (with scores.jsonl) on the same split, scored against both"})
    threshold: float = field(default=0.5, metadata={"help": "the flag threshold for the models' scores"})
    out: str = field(default="", metadata={"help": "markdown file to write (a .json with the numbers beside it)"})
    title: str = field(default="Label agreement", metadata={"help": "the table's heading"})


class AgreementError(ValueError):
    """The reader file does not cover the split, or names what the split does not have."""


_DEFAULT_IDS = tuple(c.id for c in DEFAULT_SPECS)


def read_reader(path: Path, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reader's verdicts by record id, checked against the split.

    Raises:
        AgreementError: a bad line, an unknown category id, a custom verdict where the record has no custom
            category (or none where it has one), an id not in the split, a duplicate, or a text left out.
    """
    by_id = {r["id"]: r for r in records}
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AgreementError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or set(obj) != {"id", "violates", "custom"}:
            raise AgreementError(f"{where}: want exactly the keys id, violates, custom")
        rid, violates, custom = obj["id"], obj["violates"], obj["custom"]
        if not isinstance(rid, str):
            raise AgreementError(f"{where}: id must be a string")
        if rid not in by_id:
            raise AgreementError(f"{where}: id {rid!r} is not in the split")
        if rid in out:
            raise AgreementError(f"{where}: id {rid!r} appears twice")
        if not isinstance(violates, list) or not all(isinstance(v, str) and v in _DEFAULT_IDS for v in violates):
            raise AgreementError(f"{where}: violates must be a list of {list(_DEFAULT_IDS)}")
        if (custom is None) != (by_id[rid].get("custom") is None) or not (custom is None or isinstance(custom, bool)):
            raise AgreementError(f"{where}: custom must be true/false when the record has a custom category, "
                                 "else null")
        out[rid] = obj
    missing = [rid for rid in by_id if rid not in out]
    if missing:
        raise AgreementError(f"{path}: {len(missing)} text(s) of the split have no verdict, e.g. {missing[:3]}")
    return out


def relabelled(record: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    """The record with the reader's labels in place of the dataset's."""
    custom = record.get("custom")
    return {**record, "labels": list(verdict["violates"]),
            "custom": None if custom is None else {**custom, "label": bool(verdict["custom"])}}


def _pairs(records: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    return [(p.record_id, p.category.id, p.label) for r in records for p in expand(r)]


def reader_rows(records: list[dict[str, Any]], reader: dict[str, dict[str, Any]]) -> list[ScoredPair]:
    """The reader's verdict as a score (1 or 0) against the dataset's label, one row per pair."""
    gold = _pairs(records)
    second = _pairs([relabelled(r, reader[r["id"]]) for r in records])
    return [ScoredPair(rid, cat, label, float(mine))
            for (rid, cat, label), (_, _, mine) in zip(gold, second, strict=True)]


def kappas(rows: list[ScoredPair]) -> dict[str, float]:
    """Cohen's kappa between the reader (score) and the dataset (label): per category, and over all pairs."""
    cats = [*_DEFAULT_IDS, CUSTOM]
    out = {c: cohen_kappa([r.label for r in mine], [r.score >= 0.5 for r in mine])
           for c in cats if (mine := [r for r in rows if r.category == c])}
    out["all pairs"] = cohen_kappa([r.label for r in rows], [r.score >= 0.5 for r in rows])
    return out


def model_rows(scores: list[ScoredPair], reader_label: dict[tuple[str, str], bool]) -> dict[str, list[ScoredPair]]:
    """A model's scored pairs against the dataset's labels, against the reader's (`reader_label`, by record id and
    category), and on the pairs both agree on."""
    missing = [(r.record_id, r.category) for r in scores if (r.record_id, r.category) not in reader_label]
    if missing:
        raise AgreementError(f"the report scored pairs the split does not have, e.g. {missing[:2]}")
    theirs = [reader_label[r.record_id, r.category] for r in scores]
    return {"dataset": scores,
            "reader": [ScoredPair(r.record_id, r.category, y, r.score) for r, y in zip(scores, theirs, strict=True)],
            "agreed": [r for r, y in zip(scores, theirs, strict=True) if y == r.label]}


def _cells(s: dict[str, Any]) -> str:
    e = s["pair_errors"]
    return (f"{s['overall']['f1']:.3f} | {s['overall']['precision']:.3f} | {s['overall']['recall']:.3f} | "
            f"{s['benign_fpr']:.1%} | {s['harmful_caught']:.1%} | "
            f"{e['missed']} / {e['safe_text_flags']} / {e['wrong_category_flags']}")


def main(cfg: AgreeConfig) -> dict[str, Any]:
    if not cfg.reader:
        raise SystemExit("agree: give --reader FILE.jsonl (the second reader's verdicts)")
    records = read_jsonl(Path(cfg.split))
    try:
        reader = read_reader(Path(cfg.reader), records)
    except AgreementError as exc:
        raise SystemExit(f"agree: {exc}") from exc
    rows = reader_rows(records, reader)
    reader_label = {(r.record_id, r.category): r.score >= 0.5 for r in rows}
    result: dict[str, Any] = {"split": cfg.split, "reader": cfg.reader, "texts": len(records), "pairs": len(rows),
                              "pairs_agreed": sum((r.score >= 0.5) == r.label for r in rows),
                              "reader_vs_dataset": summary(rows, 0.5), "kappa": kappas(rows), "models": {}}
    head = ("| who | against | F1 | precision | recall | benign FPR | harmful caught | "
            "missed / safe-text / wrong-category | pairs |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [f"# {cfg.title}", "",
             f"{len(records)} texts of `{cfg.split}`, {len(rows)} pairs; the second reader agrees with the dataset's "
             f"label on {result['pairs_agreed']} of them ({result['pairs_agreed'] / len(rows):.1%}). Models at "
             f"threshold {cfg.threshold}; the reader's verdicts are scores of 1 or 0.", "", head,
             f"| second reader | dataset labels | {_cells(result['reader_vs_dataset'])} | {len(rows)} |"]
    for folder in [p.strip() for p in cfg.reports.split(",") if p.strip()]:
        name = load(Path(folder))["name"]
        try:
            views = model_rows(load_scores(Path(folder)), reader_label)
        except AgreementError as exc:
            raise SystemExit(f"agree: {folder}: {exc}") from exc
        result["models"][name] = {k: summary(v, cfg.threshold) for k, v in views.items()}
        for k, label in (("dataset", "dataset labels"), ("reader", "second reader's labels"),
                         ("agreed", "pairs both readers agree on")):
            lines.append(f"| `{name}` | {label} | {_cells(result['models'][name][k])} | {len(views[k])} |")
    lines += ["", "Cohen's kappa, second reader vs dataset labels: "
              + ", ".join(f"{c} {k:.2f}" for c, k in result["kappa"].items()) + ".", ""]
    md = "\n".join(lines)
    print(md)
    if cfg.out:
        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result
