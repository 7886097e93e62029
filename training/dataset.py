"""Judge dataset: validate the team's source files, de-duplicate, split, and write the dataset card.

`training/data/source/*.jsonl` follow `training/data/SCHEMA.md`. `build(cfg)` reads every file in
name order, reports each schema error as `file:line: message`, drops later duplicates of a text
(NFKC-normalised, whitespace removed), assigns every record to train/dev/test with a seeded
shuffle inside each stratum (source file x positive-or-negative for that file's category), and
writes `splits/{train,dev,test}.jsonl` and the dataset card `README.md`. The outputs depend only
on the sources and the seed, so they can be committed and rebuilt byte-for-byte.

A category may have several files: `violence.jsonl`, then `violence_2.jsonl` for a later batch.
Each file is its own stratum, so adding a file adds records to every split without moving any
existing record from one split to another: a model trained on the old train split can still be
scored on the new test split.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.categories.defaults import DEFAULT_CATEGORIES, DEFAULT_IDS
from training.card import dataset_card

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLITS = ("train", "dev", "test")
TAGS = frozenset({
    "benign_lookalike", "colloquial", "dialect", "obfuscated", "injection", "fiction", "medical", "history",
    "cooking", "security_education", "counselling", "news", "law", "business", "keigo", "english_mix",
    "multi", "refusal",
})
FIELDS = ("id", "direction", "text", "prompt", "labels", "tags", "custom")
MAX_CHARS = 600
_WS = re.compile(r"\s+")


class DatasetError(ValueError):
    """One or more source records break the schema; `errors` holds `file:line: message` lines."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        head = "\n".join(self.errors[:50])
        more = f"\n… and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"{len(self.errors)} schema error(s):\n{head}{more}")


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Where the sources are, where the splits go, and how they are cut."""

    source_dir: Path = field(default=DATA_DIR / "source", metadata={"help": "folder of *.jsonl source files"})
    out_dir: Path = field(default=DATA_DIR, metadata={"help": "writes splits/ and README.md (the card) here"})
    seed: int = field(default=20261122, metadata={"help": "seed of the stratified split"})
    dev_fraction: float = field(default=0.1, metadata={"help": "share of each stratum in dev"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of each stratum in test"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "drop invalid records (reported) instead of failing; for work in progress only"})


@dataclass(slots=True)
class BuildResult:
    splits: dict[str, list[dict[str, Any]]]
    dropped_duplicates: list[str]
    invalid: list[str]
    files: dict[str, int]


def dedupe_key(text: str) -> str:
    """NFKC-normalised text with every whitespace character removed."""
    return _WS.sub("", unicodedata.normalize("NFKC", text))


_BATCH = re.compile(r"(.+)_(\d+)")
# what a source file may be named after (plus an optional `_N` batch suffix): a default category, `custom`,
# or a file about no single category (`benign`: safe texts; `answers`: assistant answers of any category)
SOURCE_KINDS = (*DEFAULT_IDS, "custom", "benign", "answers")


def file_category(stem: str) -> str:
    """The kind a source file is about (one of `SOURCE_KINDS` for a valid file): its stem without a
    batch suffix (`violence_2` -> `violence`, `answers_2` -> `answers`)."""
    m = _BATCH.fullmatch(stem)
    if m and m.group(1) in SOURCE_KINDS:
        return m.group(1)
    return stem


def is_positive(record: dict[str, Any]) -> bool:
    """Positive for the category of the record's own file (the split's stratum)."""
    cat = file_category(record["id"].rsplit("-", 1)[0])
    if cat == "custom":
        return bool(record["custom"] and record["custom"]["label"])
    if cat in DEFAULT_IDS:
        return cat in record["labels"]
    return bool(record["labels"])


def validate_record(obj: Any, stem: str) -> list[str]:
    """Schema errors of one parsed line (empty when valid)."""
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    errs: list[str] = []
    missing = [f for f in FIELDS if f not in obj]
    extra = sorted(set(obj) - set(FIELDS))
    if missing:
        errs.append(f"missing field(s) {missing}")
    if extra:
        errs.append(f"unknown field(s) {extra}")
    if missing:
        return errs
    rid = obj["id"]
    if not isinstance(rid, str) or not re.fullmatch(rf"{re.escape(stem)}-\d{{4}}", rid):
        errs.append(f"id {rid!r} must be '{stem}-NNNN'")
    if obj["direction"] not in ("input", "output"):
        errs.append(f"direction {obj['direction']!r} must be 'input' or 'output'")
    text = obj["text"]
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
        errs.append(f"text must be a non-blank string of 1–{MAX_CHARS} characters")
    prompt = obj["prompt"]
    if obj["direction"] == "output" and (not isinstance(prompt, str) or not prompt.strip()):
        errs.append("prompt must be a non-empty string for direction 'output'")
    if obj["direction"] == "input" and prompt is not None:
        errs.append("prompt must be null for direction 'input'")
    labels = obj["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        errs.append("labels must be a list of category ids")
    else:
        if bad := [x for x in labels if x not in DEFAULT_IDS]:
            errs.append(f"unknown label(s) {bad}")
        if len(set(labels)) != len(labels):
            errs.append("repeated label")
    tags = obj["tags"]
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        errs.append("tags must be a list of strings")
    elif bad := [x for x in tags if x not in TAGS]:
        errs.append(f"unknown tag(s) {bad}")
    custom = obj["custom"]
    if custom is not None:
        if (not isinstance(custom, dict) or set(custom) != {"name", "definition", "label"}
                or not all(isinstance(custom[k], str) and custom[k].strip() for k in ("name", "definition"))
                or not isinstance(custom["label"], bool)):
            errs.append("custom must be null or {name: non-empty str, definition: non-empty str, label: bool}")
    if file_category(stem) == "custom" and custom is None:
        errs.append(f"records of {stem}.jsonl need a custom category")
    return errs


def load_sources(source_dir: Path, *, skip_invalid: bool = False) -> tuple[list[dict[str, Any]], dict[str, int],
                                                                          list[str]]:
    """Read and validate every `*.jsonl` in name order.

    Returns:
        (valid records in file/line order, lines per file, error lines `file:line: message`).

    Raises:
        DatasetError: any record is invalid and `skip_invalid` is false, or there is no source file.
    """
    files = sorted(source_dir.glob("*.jsonl"))
    if not files:
        raise DatasetError([f"{source_dir}: no *.jsonl source files"])
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    counts: dict[str, int] = {}
    seen_ids: dict[str, str] = {}
    for path in files:
        counts[path.stem] = 0
        if file_category(path.stem) not in SOURCE_KINDS:
            # a misspelt category would otherwise be split as a file about no single category
            errors.append(f"{path.name}: unknown source file name: use one of {', '.join(SOURCE_KINDS)}, "
                          "optionally with a batch suffix such as _2")
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            counts[path.stem] += 1
            where = f"{path.name}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            errs = validate_record(obj, path.stem)
            if not errs and obj["id"] in seen_ids:
                errs = [f"id {obj['id']} already used at {seen_ids[obj['id']]}"]
            if errs:
                errors.extend(f"{where}: {e}" for e in errs)
                continue
            seen_ids[obj["id"]] = where
            records.append({k: obj[k] for k in FIELDS})
    if errors and not skip_invalid:
        raise DatasetError(errors)
    return records, counts, errors


def dedupe(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Keep the first record of each normalised text; report each later one as `id (duplicate of id)`."""
    kept: list[dict[str, Any]] = []
    first: dict[str, str] = {}
    dropped: list[str] = []
    for r in records:
        key = dedupe_key(r["text"])
        if key in first:
            dropped.append(f"{r['id']} (duplicate of {first[key]})")
            continue
        first[key] = r["id"]
        kept.append(r)
    return kept, dropped


def stratum(record: dict[str, Any]) -> str:
    stem = record["id"].rsplit("-", 1)[0]
    return f"{stem}/{'pos' if is_positive(record) else 'neg'}"


def split(records: Sequence[dict[str, Any]], *, seed: int, dev_fraction: float = 0.1,
          test_fraction: float = 0.1) -> dict[str, list[dict[str, Any]]]:
    """Stratified split; each split is sorted by id, so the result depends only on input and seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(stratum(r), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda r: r["id"])
        random.Random(f"{seed}:{name}").shuffle(members)
        n = len(members)
        n_test, n_dev = round(n * test_fraction), round(n * dev_fraction)
        out["test"] += members[:n_test]
        out["dev"] += members[n_test:n_test + n_dev]
        out["train"] += members[n_test + n_dev:]
    return {s: sorted(rs, key=lambda r: r["id"]) for s, rs in out.items()}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def build(cfg: DataConfig) -> BuildResult:
    """Validate, de-duplicate, split and write the splits and the card (see the module docstring)."""
    records, files, invalid = load_sources(cfg.source_dir, skip_invalid=cfg.skip_invalid)
    kept, dropped = dedupe(records)
    parts = split(kept, seed=cfg.seed, dev_fraction=cfg.dev_fraction, test_fraction=cfg.test_fraction)
    for name, rs in parts.items():
        write_jsonl(cfg.out_dir / "splits" / f"{name}.jsonl", rs)
    result = BuildResult(parts, dropped, invalid, files)
    (cfg.out_dir / "README.md").write_text(dataset_card(result, seed=cfg.seed), encoding="utf-8")
    return result


def counts_table(parts: dict[str, list[dict[str, Any]]]) -> dict[str, Counter[str]]:
    """Per split: records, per label, per direction, per tag, per source file (for the card and the CLI)."""
    out: dict[str, Counter[str]] = {}
    for name, rs in parts.items():
        c: Counter[str] = Counter()
        for r in rs:
            c["records"] += 1
            c[f"file:{r['id'].rsplit('-', 1)[0]}"] += 1
            c[f"direction:{r['direction']}"] += 1
            for lab in r["labels"] or ["(none)"]:
                c[f"label:{lab}"] += 1
            for t in r["tags"]:
                c[f"tag:{t}"] += 1
            if r["custom"] is not None:
                c[f"custom:{'pos' if r['custom']['label'] else 'neg'}"] += 1
        out[name] = c
    return out


CATEGORY_ORDER = tuple(c.id for c in DEFAULT_CATEGORIES)
