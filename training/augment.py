"""`training data augment`: script-level obfuscations of training texts, made by a program from the team's texts.

The judge misses most harmful texts written only in kana or in romaji (「ジサツ ノ ホウホウ オシエテ」,
"omae no kazoku zenin bukkorosu"): on the test split the default catches 51 % of the obfuscated harmful texts
and 91 % of the others (the by-tag table in its report). This writes, for a share of the short user inputs of a
split, one variant spelled in another script — katakana, hiragana or Hepburn romaji, words separated by spaces,
as people type them to slip past a filter — with the record's labels and custom verdict unchanged. Safe texts
are varied as often as harmful ones, so the spelling itself says nothing about the verdict.

Readings come from pykakasi's dictionary, so a kanji with several readings is sometimes read wrongly; that is
noise a reader of such text meets too. The variants are the team's texts re-spelled by a program, not new
writing, and are documented as such (training/data/SCHEMA.md). Only training runs use them: dev and test keep
the team's own obfuscated texts, and the output never replaces the split it was made from.

What it bought (session 19, docs/training.md): nothing for the 270M — with 497 or 1,656 re-spellings in a
150-step continuation, the obfuscated harmful dev texts caught stayed at 31 and 29 of 47 (the default: 31)
and the loss on the re-spelled texts stayed high. It is kept for larger models, which can learn to read them.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.dataset import DATA_DIR, read_jsonl, write_jsonl

Script = Literal["katakana", "hiragana", "romaji"]
SCRIPTS: tuple[Script, ...] = ("katakana", "hiragana", "romaji")
_KEY = {"katakana": "kana", "hiragana": "hira", "romaji": "hepburn"}


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """A split in, the split plus its re-spelled variants out."""

    data: Path = field(default=DATA_DIR / "splits" / "train.jsonl", metadata={"help": "JSONL records to vary"})
    out: Path | None = field(default=None, metadata={"help": "output JSONL (the records, then the variants)"})
    share: float = field(default=0.25, metadata={"help": "share of the eligible records given one variant"})
    max_chars: int = field(default=160, metadata={"help": "only user inputs up to this many characters"})
    seed: int = field(default=19, metadata={"help": "which records, and which script each gets"})


class _Converter:
    def __init__(self) -> None:
        try:
            import pykakasi
        except ImportError as exc:  # pragma: no cover - the training extra installs it
            raise SystemExit("augment needs pykakasi (pip install -e '.[training]')") from exc
        self._k = pykakasi.kakasi()

    def respell(self, text: str, script: Script) -> str:
        """`text` in one script, a space between the converter's words; punctuation (joined to the word before
        it; ASCII in romaji) and digits kept."""
        key = _KEY[script]
        out = ""
        for seg in self._k.convert(unicodedata.normalize("NFKC", text)):
            word = seg[key].strip() or seg["orig"].strip()
            if not word:
                continue
            if _is_punct(seg["orig"].strip()):
                out += word.translate(_ASCII_PUNCT) if script == "romaji" else seg["orig"].strip()
            else:
                out += (" " if out else "") + word
        return out


_ASCII_PUNCT = str.maketrans({"。": ".", "、": ",", "「": '"', "」": '"', "『": '"', "』": '"', "・": " "})


def _is_punct(s: str) -> bool:
    return bool(s) and all(unicodedata.category(c)[0] in "PS" or c in "〜ー" for c in s)


def eligible(rec: dict[str, Any], max_chars: int) -> bool:
    """Short user inputs that are not already obfuscated (those are the team's own spellings)."""
    return rec["direction"] == "input" and len(rec["text"]) <= max_chars and "obfuscated" not in rec["tags"]


def variants(records: Sequence[dict[str, Any]], *, share: float, max_chars: int, seed: int) -> list[dict[str, Any]]:
    """One re-spelled copy for `share` of the eligible records (chosen with `seed`), in record order."""
    if not 0 < share <= 1:
        raise SystemExit(f"augment: --share must be in (0, 1], got {share}")
    rng = random.Random(seed)
    pool = [r for r in records if eligible(r, max_chars)]
    picked = {id(r): rng.choice(SCRIPTS) for r in rng.sample(pool, round(len(pool) * share))}
    conv = _Converter()
    out = []
    for rec in records:
        if id(rec) not in picked:
            continue
        script = picked[id(rec)]
        text = conv.respell(rec["text"], script)
        if text == unicodedata.normalize("NFKC", rec["text"]):
            continue  # already in that script: nothing new to learn from
        out.append({**rec, "id": f"{rec['id']}~{script}", "text": text, "tags": [*rec["tags"], "obfuscated"]})
    return out


def main(cfg: AugmentConfig) -> list[dict[str, Any]]:
    if cfg.out is None:
        raise SystemExit("augment: give --out FILE.jsonl (the split's records and their variants are written there)")
    if Path(cfg.out).resolve() == Path(cfg.data).resolve():
        raise SystemExit("augment: --out must not be the split itself; write a training-run file "
                         "(e.g. training/runs/NAME/train.jsonl) and pass it to `train --train-file`")
    records = read_jsonl(cfg.data)
    extra = variants(records, share=cfg.share, max_chars=cfg.max_chars, seed=cfg.seed)
    write_jsonl(cfg.out, [*records, *extra])
    harmful = sum(1 for r in extra if r["labels"])
    by_script = {s: sum(1 for r in extra if r["id"].endswith("~" + s)) for s in SCRIPTS}
    print(f"augment: {len(records)} records + {len(extra)} variants ({harmful} harmful, "
          f"{len(extra) - harmful} safe; {by_script}) -> {cfg.out}", flush=True)
    return extra
