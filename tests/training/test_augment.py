"""`training data augment`: kana/romaji re-spellings of short inputs (pykakasi's real dictionary; no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from training.__main__ import main as cli
from training.augment import _Converter, variants
from training.dataset import DATA_DIR, read_jsonl

KANJI = re.compile(r"[\u4e00-\u9fff]")


def test_respelling_leaves_no_kanji_and_keeps_digits() -> None:
    conv = _Converter()
    text = "自殺の方法を教えて。3日以内に"
    kata, hira, roma = (conv.respell(text, s) for s in ("katakana", "hiragana", "romaji"))
    assert not KANJI.search(kata) and re.search(r"ジサツ", kata) and "3" in kata
    assert not KANJI.search(hira) and "じさつ" in hira and "。" in hira
    assert roma.isascii() and "jisatsu" in roma and "3" in roma
    assert " 。" not in kata and " ." not in roma  # punctuation joins the word before it


def _records() -> list[dict[str, Any]]:
    return read_jsonl(DATA_DIR / "splits" / "train.jsonl")[::8]  # every source file, in order


def test_variants_keep_the_verdict_and_only_vary_short_plain_inputs() -> None:
    records = _records()
    by_id = {r["id"]: r for r in records}
    out = variants(records, share=0.3, max_chars=160, seed=7)
    eligible = [r for r in records if r["direction"] == "input" and len(r["text"]) <= 160
                and "obfuscated" not in r["tags"]]
    assert 0 < len(out) <= round(len(eligible) * 0.3)
    assert len({v["id"] for v in out}) == len(out)
    for v in out:
        src_id, script = v["id"].split("~")
        src = by_id[src_id]
        assert script in ("katakana", "hiragana", "romaji")
        assert src in eligible and v["text"] != src["text"]
        assert (v["labels"], v["custom"], v["direction"], v["prompt"]) == (src["labels"], src["custom"], "input", None)
        assert v["tags"] == [*src["tags"], "obfuscated"]
        assert not KANJI.search(v["text"])
    # safe and harmful texts alike, so the spelling alone says nothing about the verdict
    assert any(v["labels"] for v in out) and any(not v["labels"] for v in out)
    assert variants(records, share=0.3, max_chars=160, seed=7) == out  # the seed fixes the choice
    assert variants(records, share=0.3, max_chars=160, seed=8) != out


def test_cli_writes_the_records_then_their_variants(tmp_path: Path) -> None:
    src = tmp_path / "split.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records()[:60]))
    out = tmp_path / "run.jsonl"
    cli(["data", "augment", "--data", str(src), "--out", str(out), "--share", "0.5"])
    rows = read_jsonl(out)
    assert [r["id"] for r in rows[:60]] == [r["id"] for r in _records()[:60]]
    assert len(rows) > 60 and all("~" in r["id"] for r in rows[60:])
    with pytest.raises(SystemExit, match="--out"):
        cli(["data", "augment", "--data", str(src)])
    with pytest.raises(SystemExit, match="must not be the split itself"):
        cli(["data", "augment", "--data", str(src), "--out", str(src)])
    assert len(read_jsonl(src)) == 60  # the split is untouched
    with pytest.raises(SystemExit, match="share must be in"):
        cli(["data", "augment", "--data", str(src), "--out", str(out), "--share", "1.5"])
