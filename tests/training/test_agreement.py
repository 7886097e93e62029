"""A second reader's labels against the dataset's (pure logic on hand-made records; no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.agreement import AgreeConfig, AgreementError, main, read_reader, reader_rows
from training.metrics import ScoredPair, cohen_kappa
from training.report import build_report, write_report


def _rec(rid: str, labels: list[str], custom: bool | None = None) -> dict[str, Any]:
    return {"id": rid, "direction": "input", "text": f"text {rid}", "prompt": None, "labels": labels,
            "tags": [], "custom": None if custom is None else {"name": "n", "definition": "d", "label": custom}}


RECORDS = [_rec("a", ["violence"]), _rec("b", []), _rec("c", ["privacy"], custom=True)]


def _write(path: Path, verdicts: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    return path


def test_cohen_kappa_on_known_tables() -> None:
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert cohen_kappa([True, False] * 5, [True, False] * 5) == pytest.approx(1.0)
    assert cohen_kappa([True, False, True, False], [False, True, False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([False] * 4, [False] * 4) == 1.0  # both never say yes: agreement is total
    with pytest.raises(ValueError, match="3 verdicts against 2"):
        cohen_kappa([True, False, True], [True, False])


def test_reader_rows_put_the_readers_verdict_against_the_datasets_label(tmp_path: Path) -> None:
    reader = read_reader(_write(tmp_path / "r.jsonl", [
        {"id": "a", "violates": ["violence", "harassment"], "custom": None},
        {"id": "b", "violates": [], "custom": None},
        {"id": "c", "violates": ["privacy"], "custom": False}]), RECORDS)
    rows = {(r.record_id, r.category): (r.label, r.score) for r in reader_rows(RECORDS, reader)}
    assert len(rows) == 3 * 8 + 1  # every default category of each text, plus c's custom one
    assert rows["a", "violence"] == (True, 1.0)
    assert rows["a", "harassment"] == (False, 1.0)  # the reader's extra category
    assert rows["c", "custom"] == (True, 0.0)  # the reader says the custom rule is not broken
    assert rows["b", "sexual"] == (False, 0.0)


@pytest.mark.parametrize(("verdicts", "message"), [
    ([{"id": "a", "violates": [], "custom": None}], "2 text"),  # b and c left out
    ([{"id": "zz", "violates": [], "custom": None}], "not in the split"),
    ([{"id": "a", "violates": ["weapons"], "custom": None}], "violates must be"),
    ([{"id": "a", "violates": [["violence"]], "custom": None}], "violates must be"),  # not a hashable id
    ([{"id": ["a"], "violates": [], "custom": None}], "id must be a string"),
    ([{"id": "a", "violates": [], "custom": True}], "custom must be"),  # a has no custom category
    ([{"id": "c", "violates": [], "custom": None}], "custom must be"),  # c has one
    ([{"id": "a", "violates": []}], "exactly the keys"),
    ([{"id": "a", "violates": [], "custom": None}] * 2, "twice"),
])
def test_a_reader_file_that_does_not_fit_the_split_is_refused(tmp_path: Path, verdicts: list[dict[str, Any]],
                                                               message: str) -> None:
    with pytest.raises(AgreementError, match=message):
        read_reader(_write(tmp_path / "r.jsonl", verdicts), RECORDS)


def test_agree_scores_a_model_against_both_readers_and_on_agreed_pairs(tmp_path: Path) -> None:
    split = tmp_path / "split.jsonl"
    split.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS))
    reader = _write(tmp_path / "r.jsonl", [
        {"id": "a", "violates": ["violence", "harassment"], "custom": None},  # one pair more than the dataset
        {"id": "b", "violates": [], "custom": None},
        {"id": "c", "violates": ["privacy"], "custom": True}])
    # a model that flags exactly what the reader flags
    gold = reader_rows(RECORDS, read_reader(reader, RECORDS))
    scores = [ScoredPair(r.record_id, r.category, r.label, 0.9 if r.score else 0.1) for r in gold]
    write_report(scores, build_report(scores, name="m", threshold=0.5), tmp_path / "m")
    res = main(AgreeConfig(split=str(split), reader=str(reader), reports=str(tmp_path / "m"),
                           out=str(tmp_path / "agree.md")))
    assert res["pairs"] == 25 and res["pairs_agreed"] == 24
    assert res["reader_vs_dataset"]["pair_errors"] == {"missed": 0, "safe_text_flags": 0, "wrong_category_flags": 1}
    m = res["models"]["m"]
    assert m["reader"]["overall"]["f1"] == 1.0  # it matches the reader exactly ...
    assert m["dataset"]["overall"]["fp"] == 1  # ... so against the dataset it has the reader's one extra flag
    assert m["agreed"]["overall"]["f1"] == 1.0 and m["agreed"]["overall"]["fp"] == 0
    md = (tmp_path / "agree.md").read_text()
    assert "| second reader | dataset labels | 0.857 |" in md  # 3 tp, 1 fp: F1 6/7
    assert json.loads((tmp_path / "agree.json").read_text())["pairs_agreed"] == 24


def test_agree_without_a_reader_file_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--reader"):
        main(AgreeConfig(reader=""))
