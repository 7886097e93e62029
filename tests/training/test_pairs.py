"""Pair expansion and sampling: the serving prompt, every category, sampled negatives."""

from __future__ import annotations

from collections import Counter

import pytest

from inference.contract import build_prompt, target_answer
from training.pairs import DEFAULT_SPECS, all_pairs, expand, sample_pairs


def _rec(i: int, stem: str, labels: list[str], custom: dict[str, object] | None = None) -> dict[str, object]:
    return {"id": f"{stem}-{i:04d}", "direction": "output" if i % 3 == 0 else "input", "text": f"本文{stem}{i}",
            "prompt": "質問です" if i % 3 == 0 else None, "labels": labels, "tags": [], "custom": custom}


def test_expand_gives_every_default_category_plus_custom_with_the_serving_prompt() -> None:
    r = _rec(3, "violence", ["violence", "harassment"], {"name": "競合", "definition": "他社名", "label": True})
    pairs = expand(r)
    assert [p.category.id for p in pairs] == [c.id for c in DEFAULT_SPECS] + ["custom"]
    assert {p.category.id for p in pairs if p.label} == {"violence", "harassment", "custom"}
    assert pairs[0].judge_prompt() == build_prompt(r["text"], DEFAULT_SPECS[0], "output", "質問です")  # type: ignore[arg-type]
    assert pairs[-1].category.definition == "他社名"
    assert pairs[0].answer() == target_answer(True) == " Yes"


def test_sampling_keeps_every_positive_and_draws_negatives_by_ratio() -> None:
    recs = [_rec(i, "violence", ["violence"] if i % 2 else []) for i in range(1, 41)]
    recs += [_rec(i, "benign", []) for i in range(1, 21)]
    recs += [_rec(i, "custom", [], {"name": "n", "definition": "d", "label": i % 2 == 0}) for i in range(1, 5)]
    pairs = sample_pairs(recs, neg_ratio=2.0, seed=1)
    c = Counter((p.category.id, p.label) for p in pairs)
    assert c[("violence", True)] == 20 and c[("violence", False)] == 40
    hard = [p for p in pairs if p.category.id == "violence" and not p.label and p.source == "violence"]
    assert len(hard) == 20  # hard_share 0.5 of 40, from the category's own file
    assert c[("custom", True)] + c[("custom", False)] == 4
    # categories without positives get no sampled negatives
    assert c[("privacy", False)] == 0
    again = sample_pairs(recs, neg_ratio=2.0, seed=1)
    assert [(p.record_id, p.category.id) for p in again] == [(p.record_id, p.category.id) for p in pairs]
    other = sample_pairs(recs, neg_ratio=2.0, seed=2)
    assert [(p.record_id, p.category.id) for p in other] != [(p.record_id, p.category.id) for p in pairs]
    assert len(all_pairs(recs)) == 64 * 8 + 4


def test_cross_share_asks_other_categories_violations_about_the_wrong_category() -> None:
    recs = [_rec(i, "violence", ["violence"] if i % 2 else []) for i in range(1, 41)]
    recs += [_rec(i, "hate", ["hate"]) for i in range(1, 31)]
    recs += [_rec(i, "benign", []) for i in range(1, 21)]
    pairs = sample_pairs(recs, neg_ratio=2.0, seed=1, hard_share=0.25, cross_share=0.5)
    neg = [p for p in pairs if p.category.id == "violence" and not p.label]
    assert len(neg) == 40
    assert sum(p.source == "violence" for p in neg) == 10
    assert sum(p.source == "hate" for p in neg) == 20  # violate hate, asked about violence
    assert sum(p.source == "benign" for p in neg) == 10
    # without a cross share, the hate texts only come in through the random "other" quarter
    plain = [p for p in sample_pairs(recs, neg_ratio=2.0, seed=1, hard_share=0.25)
             if p.category.id == "violence" and not p.label]
    assert sum(p.source == "hate" for p in plain) == 15
    with pytest.raises(ValueError, match="hard_share"):
        sample_pairs(recs, neg_ratio=2.0, seed=1, hard_share=0.6, cross_share=0.6)
