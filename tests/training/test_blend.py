"""`training blend`: scores of several reports averaged into one (pure logic on hand-made reports; no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.__main__ import main as cli
from training.blend import BlendError, blend, parse_weights
from training.metrics import ScoredPair
from training.report import build_report, write_report


def _member(tmp: Path, name: str, scores: dict[tuple[str, str], float], labels: dict[tuple[str, str], bool]) -> Path:
    rows = [ScoredPair(rid, cat, labels[rid, cat], s) for (rid, cat), s in scores.items()]
    folder = tmp / name
    write_report(rows, build_report(rows, name=name, threshold=0.5, extra={"engine_dtype": "float32"}), folder)
    return folder


LABELS = {("a", "violence"): True, ("a", "sexual"): False, ("b", "violence"): False, ("b", "sexual"): False}


def test_weights_are_parsed_normalised_and_checked() -> None:
    assert parse_weights("", 4) == [0.25] * 4
    assert parse_weights("1,3", 2) == [0.25, 0.75]
    for bad, msg in (("1,x", "numbers"), ("1,2,3", "3 weights for 2"), ("1,-1", "non-negative"), ("0,0", "positive")):
        with pytest.raises(BlendError, match=msg):
            parse_weights(bad, 2)


def test_blend_is_the_weighted_mean_in_the_first_members_order() -> None:
    one = [ScoredPair("a", "violence", True, 0.9), ScoredPair("b", "violence", False, 0.6)]
    two = [ScoredPair("b", "violence", False, 0.0), ScoredPair("a", "violence", True, 0.3)]  # another order
    out = blend([one, two], [0.5, 0.5])
    assert [(r.record_id, r.score) for r in out] == [("a", pytest.approx(0.6)), ("b", pytest.approx(0.3))]
    assert blend([one, two], [1.0, 0.0])[1].score == pytest.approx(0.6)


@pytest.mark.parametrize(("other", "msg"), [
    ([ScoredPair("a", "violence", True, 0.1)], "different pairs"),
    ([ScoredPair("a", "violence", False, 0.1), ScoredPair("b", "violence", False, 0.1)], "labels a / violence"),
    ([ScoredPair("a", "violence", True, 0.1), ScoredPair("a", "violence", True, 0.2)], "more than once"),
])
def test_members_of_different_splits_are_refused(other: list[ScoredPair], msg: str) -> None:
    one = [ScoredPair("a", "violence", True, 0.9), ScoredPair("b", "violence", False, 0.6)]
    with pytest.raises(BlendError, match=msg):
        blend([one, other], [0.5, 0.5])


def test_cli_writes_a_report_where_two_different_mistakes_cancel(tmp_path: Path) -> None:
    # each member errs on one pair, confidently on the other side of 0.5 from the other member's error
    a = _member(tmp_path, "A", {("a", "violence"): 0.3, ("a", "sexual"): 0.05,
                                ("b", "violence"): 0.1, ("b", "sexual"): 0.7}, LABELS)
    b = _member(tmp_path, "B", {("a", "violence"): 0.95, ("a", "sexual"): 0.05,
                                ("b", "violence"): 0.1, ("b", "sexual"): 0.1}, LABELS)
    assert json.loads((a / "report.json").read_text())["overall"]["f1"] == 0.0  # A: one miss, one false flag
    out = tmp_path / "blend"
    cli(["blend", "--reports", f"{a},{b}", "--out-dir", str(out)])
    rep = json.loads((out / "report.json").read_text())
    assert rep["overall"]["f1"] == 1.0 and rep["benign_fpr"] == 0.0  # 0.625 on a/violence, 0.40 on b/sexual
    assert [m["name"] for m in rep["blend_of"]] == ["A", "B"] and rep["name"] == "blend(A, B)"
    scores = {(r["record_id"], r["category"]): r["score"]
              for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert scores["a", "violence"] == pytest.approx(0.625) and scores["b", "sexual"] == pytest.approx(0.4)
    cli(["blend", "--reports", f"{a},{b}", "--weights", "3,1", "--out-dir", str(out)])
    assert json.loads((out / "report.json").read_text())["overall"]["f1"] == 0.0  # A dominates: its errors return


def test_cli_refuses_without_two_reports_or_an_output(tmp_path: Path) -> None:
    a = _member(tmp_path, "A", {k: 0.5 for k in LABELS}, LABELS)
    with pytest.raises(SystemExit, match="two or more"):
        cli(["blend", "--reports", str(a), "--out-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="--out-dir"):
        cli(["blend", "--reports", f"{a},{a}"])
    with pytest.raises(SystemExit, match=r"blend: .*missing is not a report folder"):
        cli(["blend", "--reports", f"{a},{tmp_path / 'missing'}", "--out-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="3 weights for 2"):
        cli(["blend", "--reports", f"{a},{a}", "--weights", "1,1,1", "--out-dir", str(tmp_path / "o")])
