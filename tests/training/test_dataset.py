"""Dataset build: schema validation with file:line, de-duplication, stratified deterministic split, card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.dataset import (
    DATA_DIR,
    DataConfig,
    DatasetError,
    build,
    dedupe,
    dedupe_key,
    load_sources,
    stratum,
)


def rec(i: int, stem: str = "violence", **kw: Any) -> dict[str, Any]:
    base = {"id": f"{stem}-{i:04d}", "direction": "input", "text": f"{stem}のテキスト{i}番", "prompt": None,
            "labels": [stem] if i % 2 else [], "tags": [], "custom": None}
    base.update(kw)
    return base


def write(folder: Path, stem: str, lines: list[Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.jsonl").write_text(
        "".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines))


def test_the_repository_sources_are_valid() -> None:
    records, files, errors = load_sources(DATA_DIR / "source")
    assert not errors
    assert len(records) == sum(files.values())
    assert {"violence", "benign", "custom"} <= set(files)


def test_schema_errors_name_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "violence", [
        rec(1),
        "{not json",
        rec(3, direction="output"),                  # output without a prompt
        rec(4, labels=["violence", "weapons"]),      # unknown label
        rec(5, tags=["fiction", "made_up"]),         # unknown tag
        rec(6, id="violence-6"),                     # bad id
        rec(7, text="x" * 601),                      # too long
        {**rec(8), "extra": 1},                      # unknown field
        rec(9, custom={"name": "n", "definition": "", "label": True}),
        rec(1),                                      # repeated id
    ])
    with pytest.raises(DatasetError) as ei:
        load_sources(tmp_path)
    errs = ei.value.errors
    assert errs[0].startswith("violence.jsonl:2: invalid JSON")
    expected = [(3, "prompt must be"), (4, "unknown label"), (5, "unknown tag"), (6, "must be 'violence-NNNN'"),
                (7, "1–600"), (8, "unknown field"), (9, "custom must be"), (10, "already used at violence.jsonl:1")]
    for line, needle in expected:
        assert any(e.startswith(f"violence.jsonl:{line}: ") and needle in e for e in errs), (line, errs)
    kept, _, skipped = load_sources(tmp_path, skip_invalid=True)
    assert [r["id"] for r in kept] == ["violence-0001"] and len(skipped) == len(errs)


def test_dedupe_uses_nfkc_without_whitespace_and_keeps_the_first() -> None:
    assert dedupe_key("ｶﾀｶﾅ　ＡＢＣ 1\n2") == dedupe_key("カタカナABC12")
    rs = [rec(1, text="殺す　ぞ"), rec(2, text="殺すぞ"), rec(3, text="ｺﾛｽ"), rec(4, text="コロス")]
    kept, dropped = dedupe(rs)
    assert [r["id"] for r in kept] == ["violence-0001", "violence-0003"]
    assert dropped == ["violence-0002 (duplicate of violence-0001)", "violence-0004 (duplicate of violence-0003)"]


def test_split_is_stratified_deterministic_and_complete(tmp_path: Path) -> None:
    src = tmp_path / "source"
    write(src, "violence", [rec(i) for i in range(1, 101)])
    write(src, "benign", [rec(i, "benign", labels=[]) for i in range(1, 41)])
    write(src, "custom", [rec(i, "custom", labels=[], custom={"name": "競合", "definition": "他社名",
                                                              "label": i % 4 == 0}) for i in range(1, 41)])
    out1, out2 = tmp_path / "a", tmp_path / "b"
    res = build(DataConfig(source_dir=src, out_dir=out1, seed=7))
    build(DataConfig(source_dir=src, out_dir=out2, seed=7))
    for name in ("train", "dev", "test"):
        assert (out1 / "splits" / f"{name}.jsonl").read_bytes() == (out2 / "splits" / f"{name}.jsonl").read_bytes()
    assert (out1 / "README.md").read_bytes() == (out2 / "README.md").read_bytes()
    ids = [r["id"] for s in res.splits.values() for r in s]
    assert len(ids) == len(set(ids)) == 180
    # each stratum is cut 80/10/10: violence pos/neg 50 each -> 5 test; custom pos 10 -> 1
    test_strata = [stratum(r) for r in res.splits["test"]]
    assert test_strata.count("violence/pos") == 5 and test_strata.count("violence/neg") == 5
    assert test_strata.count("custom/pos") == 1 and test_strata.count("benign/neg") == 4
    other = build(DataConfig(source_dir=src, out_dir=tmp_path / "c", seed=8)).splits["test"]
    assert [r["id"] for r in other] != [r["id"] for r in res.splits["test"]]


def test_card_states_provenance_and_counts(tmp_path: Path) -> None:
    src = tmp_path / "source"
    write(src, "violence", [rec(i) for i in range(1, 21)] + [rec(21, text="violenceのテキスト1 番")])
    res = build(DataConfig(source_dir=src, out_dir=tmp_path))
    card = (tmp_path / "README.md").read_text()
    assert "written by the project team" in card
    assert "| `violence` |" in card and "Intended use" in card and "Limitations" in card
    assert "violence-0021 (duplicate of violence-0001)" in card
    assert res.dropped_duplicates == ["violence-0021 (duplicate of violence-0001)"]


def test_the_committed_splits_match_a_fresh_build(tmp_path: Path) -> None:
    res = build(DataConfig(out_dir=tmp_path))
    for name in ("train", "dev", "test"):
        committed = DATA_DIR / "splits" / f"{name}.jsonl"
        assert committed.read_bytes() == (tmp_path / "splits" / f"{name}.jsonl").read_bytes(), (
            f"{committed} is stale: run `python -m training data build`")
    assert (DATA_DIR / "README.md").read_bytes() == (tmp_path / "README.md").read_bytes()
    assert sum(len(v) for v in res.splits.values()) > 0


def test_a_second_file_of_a_category_moves_no_existing_record_between_splits(tmp_path: Path) -> None:
    src = tmp_path / "source"
    write(src, "violence", [rec(i) for i in range(1, 101)])
    write(src, "benign", [rec(i, "benign", labels=[]) for i in range(1, 41)])
    before = build(DataConfig(source_dir=src, out_dir=tmp_path / "a"))
    # the later batch, in its own file and stratum: 60 violence positives, 10 texts that violate only
    # another category (negatives for violence) and 30 safe look-alikes
    write(src, "violence_2", [rec(i, "violence_2", labels=["violence"] if i <= 60 else ["harassment"] if i <= 70
                                  else [], text=f"追加のテキスト{i}") for i in range(1, 101)])
    after = build(DataConfig(source_dir=src, out_dir=tmp_path / "b"))
    where = {r["id"]: name for name, rs in after.splits.items() for r in rs}
    for name, rs in before.splits.items():
        assert all(where[r["id"]] == name for r in rs)
    test_strata = [stratum(r) for r in after.splits["test"]]
    # positive means positive for the file's category (violence), not any label: 60 pos -> 6, 40 neg -> 4
    assert test_strata.count("violence_2/pos") == 6 and test_strata.count("violence_2/neg") == 4


def test_a_batch_file_of_custom_needs_custom_categories(tmp_path: Path) -> None:
    src = tmp_path / "source"
    write(src, "custom_2", [rec(1, "custom_2", labels=[])])
    with pytest.raises(DatasetError, match=r"custom_2.jsonl:1: records of custom_2.jsonl need a custom category"):
        load_sources(src)


def test_a_file_about_no_single_category_is_split_by_safe_against_any_label() -> None:
    # `answers` holds assistant answers of every category: positive means "violates something", as for `benign`
    assert stratum(rec(1, "answers", labels=["privacy", "illegal_activity"])) == "answers/pos"
    assert stratum(rec(2, "answers", labels=[])) == "answers/neg"
    assert stratum(rec(3, "benign_2", labels=[])) == "benign_2/neg"
    # a category's own file stays split by its own category only
    assert stratum(rec(4, "violence_4", labels=["harassment"])) == "violence_4/neg"


def test_a_source_file_named_after_nothing_known_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "source"
    write(src, "violense_2", [rec(1, "violense_2")])  # misspelt category
    write(src, "answers_2", [rec(1, "answers_2", labels=["violence"])])
    with pytest.raises(DatasetError) as exc:
        load_sources(src)
    assert [e.split(":")[0] for e in exc.value.errors] == ["violense_2.jsonl"]
    assert "unknown source file name" in exc.value.errors[0]
