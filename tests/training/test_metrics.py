"""Evaluation maths on hand-computed confusion matrices (pure)."""

from __future__ import annotations

import random

import pytest

from training.metrics import (
    Counts,
    ScoredPair,
    _interval,
    average_precision,
    benign_fpr,
    bootstrap_ci,
    by_tag,
    calibration,
    confusion,
    harmful_caught,
    macro_f1,
    micro,
    pair_errors,
    paired_bootstrap,
    per_category,
    pick_threshold,
    pr_curve,
    summary,
    tally_stats,
    text_tallies,
    threshold_sweep,
)


def test_confusion_counts_and_ratios() -> None:
    labels = [True, True, True, False, False, False, False, True]
    scores = [0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.5, 0.5]
    c = confusion(labels, scores, 0.5)  # >= threshold flags, as the service does
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 2, 1, 2)
    assert c.precision == pytest.approx(3 / 5)
    assert c.recall == pytest.approx(3 / 4)
    assert c.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert c.fpr == pytest.approx(2 / 4)


def test_degenerate_counts_are_zero_not_nan() -> None:
    assert Counts(0, 0, 3, 5).precision == 0.0 and Counts(0, 0, 3, 5).f1 == 0.0
    assert Counts(0, 2, 0, 5).recall == 0.0
    assert Counts().fpr == 0.0
    assert Counts(4, 0, 0, 0).f1 == 1.0


def test_micro_pools_counts_and_macro_skips_categories_without_positives() -> None:
    cats = {"a": Counts(8, 2, 2, 88), "b": Counts(1, 1, 3, 95), "c": Counts(0, 4, 0, 96)}
    tot = micro(cats.values())
    assert (tot.tp, tot.fp, tot.fn, tot.tn) == (9, 7, 5, 279)
    assert tot.f1 == pytest.approx(2 * 9 / (2 * 9 + 7 + 5))
    assert macro_f1(cats) == pytest.approx((0.8 + 2 * 0.5 * 0.25 / 0.75) / 2)


def _rows() -> list[ScoredPair]:
    # three texts x two default categories + one custom pair
    return [
        ScoredPair("r1", "violence", True, 0.9), ScoredPair("r1", "privacy", False, 0.2),
        ScoredPair("r2", "violence", False, 0.6), ScoredPair("r2", "privacy", False, 0.1),  # benign, flagged
        ScoredPair("r3", "violence", False, 0.3), ScoredPair("r3", "privacy", False, 0.4),  # benign, clean
        ScoredPair("r3", "custom", True, 0.8),  # custom pairs never count towards the benign FPR
    ]


def test_per_category_and_benign_fpr_counts_texts() -> None:
    rows = _rows()
    cats = per_category(rows, 0.5)
    assert cats["violence"] == Counts(1, 1, 0, 1)
    assert cats["privacy"] == Counts(0, 0, 0, 3)
    assert cats["custom"] == Counts(1, 0, 0, 0)
    assert benign_fpr(rows, 0.5) == (1, 2, 0.5)
    assert benign_fpr(rows, 0.65) == (0, 2, 0.0)
    assert harmful_caught(rows, 0.5) == (1, 1, 1.0)
    assert harmful_caught(rows, 0.95) == (0, 1, 0.0)
    wrong_category = [ScoredPair("h", "violence", True, 0.1), ScoredPair("h", "privacy", False, 0.9)]
    assert harmful_caught(wrong_category, 0.5) == (1, 1, 1.0)  # caught, though per-category it is a miss
    assert per_category(wrong_category, 0.5)["violence"].fn == 1
    s = summary(rows, 0.5)
    assert s["overall"]["tp"] == 2 and s["overall"]["fp"] == 1  # type: ignore[index]
    # summary tallies the texts once; it must agree with the standalone functions
    assert (s["benign_flagged"], s["benign_texts"], s["benign_fpr"]) == benign_fpr(rows, 0.5)
    assert (s["harmful_flagged"], s["harmful_texts"], s["harmful_caught"]) == harmful_caught(rows, 0.5)


def test_pair_errors_tell_misses_safe_text_flags_and_wrong_categories_apart() -> None:
    rows = [ScoredPair("h", "violence", True, 0.1), ScoredPair("h", "privacy", False, 0.9),  # missed + wrong category
            ScoredPair("s", "violence", False, 0.7), ScoredPair("s", "privacy", False, 0.2),  # a safe text flagged
            ScoredPair("c", "custom", True, 0.9), ScoredPair("c", "sexual", False, 0.6),  # custom rule only
            ScoredPair("ok", "violence", True, 0.8), ScoredPair("ok", "privacy", False, 0.1)]
    assert pair_errors(rows, 0.5) == {"missed": 1, "safe_text_flags": 1, "wrong_category_flags": 2}
    assert pair_errors(rows, 0.95) == {"missed": 3, "safe_text_flags": 0, "wrong_category_flags": 0}
    total = summary(rows, 0.5)["overall"]
    assert total["fn"] == 1 and total["fp"] == 3  # type: ignore[index]  # the kinds partition the wrong pairs
    assert summary(rows, 0.5)["pair_errors"] == pair_errors(rows, 0.5)


def test_threshold_sweep_moves_the_tradeoff() -> None:
    sweep = threshold_sweep(_rows(), [0.05, 0.5, 0.95])
    assert sweep[0]["recall"] == 1.0 and sweep[0]["benign_fpr"] == 1.0
    assert sweep[2]["recall"] == 0.0 and sweep[2]["benign_fpr"] == 0.0
    assert sweep[1]["f1"] == pytest.approx(0.8)


def test_pr_curve_and_average_precision() -> None:
    labels = [True, False, True, False]
    scores = [0.9, 0.8, 0.7, 0.1]
    prec, rec, thr = pr_curve(labels, scores)
    assert thr == [0.9, 0.8, 0.7, 0.1]
    assert prec == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert rec == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # ties share one point
    assert pr_curve([True, False], [0.5, 0.5])[2] == [0.5]


def test_pick_threshold_respects_the_benign_limit() -> None:
    sweep = [{"threshold": 0.3, "f1": 0.9, "benign_fpr": 0.2}, {"threshold": 0.5, "f1": 0.85, "benign_fpr": 0.08},
             {"threshold": 0.6, "f1": 0.85, "benign_fpr": 0.05}, {"threshold": 0.7, "f1": 0.8, "benign_fpr": 0.0}]
    assert pick_threshold(sweep) == 0.5  # 0.3 breaks the limit; 0.5 and 0.6 tie on F1, 0.5 is nearer 0.5
    assert pick_threshold(sweep, max_benign_fpr=0.06) == 0.6
    assert pick_threshold(sweep[:1], max_benign_fpr=0.1) == 0.3  # nothing inside: the lowest FPR


def _random_split(seed: int, texts: int = 60, noise: float = 0.35) -> list[ScoredPair]:
    """Texts with 0-2 default labels plus a custom pair; scores = label +- noise."""
    rng = random.Random(seed)
    cats = ["violence", "privacy", "harassment", "custom"]
    rows = []
    for t in range(texts):
        gold = set(rng.sample(cats, rng.choice([0, 0, 1, 2])))
        for c in cats:
            y = c in gold
            score = (0.75 if y else 0.25) + rng.uniform(-noise, noise)
            rows.append(ScoredPair(f"t{t}", c, y, min(1.0, max(0.0, score))))
    rows.append(ScoredPair("custom-only", "custom", True, 0.9))  # counts for F1, not as a benign or harmful text
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_text_tallies_give_the_summary_numbers(seed: int) -> None:
    rows = _random_split(seed)
    for thr in (0.3, 0.5, 0.7):
        s = summary(rows, thr)
        st = tally_stats(text_tallies(rows, thr).values())
        assert st["f1"] == pytest.approx(s["overall"]["f1"], abs=1e-4)
        assert st["benign_fpr"] == pytest.approx(s["benign_fpr"], abs=1e-4)
        assert st["harmful_caught"] == pytest.approx(s["harmful_caught"], abs=1e-4)


def test_text_tallies_keep_custom_out_of_the_text_outcome() -> None:
    rows = [ScoredPair("a", "custom", True, 0.9), ScoredPair("a", "violence", False, 0.1),
            ScoredPair("b", "custom", False, 0.9)]
    t = text_tallies(rows, 0.5)
    assert (t["a"].tp, t["a"].fp, t["a"].fn, t["a"].judged, t["a"].harmful, t["a"].flagged) == (1, 0, 0, True, False,
                                                                                                  False)
    assert not t["b"].judged and tally_stats(t.values())["benign_fpr"] == 0.0  # "b" is no benign text


def test_interval_is_the_percentile_interval_widened_outward() -> None:
    values = [float(i) for i in range(2000)]
    assert _interval(values, 0.95) == (49.0, 1950.0)
    assert _interval(values, 0.5) == (499.0, 1500.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([ScoredPair("a", "violence", True, 0.9)], 0.5, resamples=0)


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_texts() -> None:
    small, large = _random_split(5, texts=40), _random_split(5, texts=400)
    ci_small, ci_large = bootstrap_ci(small, 0.5, resamples=500), bootstrap_ci(large, 0.5, resamples=500)
    for rows, ci in ((small, ci_small), (large, ci_large)):
        point = tally_stats(text_tallies(rows, 0.5).values())
        for stat, (lo, hi) in ci.items():
            assert lo <= point[stat] + 1e-4 and point[stat] - 1e-4 <= hi, stat
    width = {k: hi - lo for k, (lo, hi) in ci_small.items()}
    assert all(ci_large[k][1] - ci_large[k][0] < width[k] for k in width)
    assert bootstrap_ci(small, 0.5, resamples=500, seed=7) == bootstrap_ci(small, 0.5, resamples=500, seed=7)
    constant = [ScoredPair(f"t{i}", "violence", True, 0.9) for i in range(20)]
    assert bootstrap_ci(constant, 0.5, resamples=200)["f1"] == (1.0, 1.0)


def test_paired_bootstrap_separates_a_better_model_from_itself() -> None:
    weak = _random_split(9, texts=150, noise=0.45)
    strong = [ScoredPair(r.record_id, r.category, r.label, 0.9 if r.label else 0.1) for r in weak]
    same = paired_bootstrap(weak, 0.5, weak, 0.5, resamples=300)
    assert all(d == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "b_higher": 0.0, "b_lower": 0.0} for d in same.values())
    better = paired_bootstrap(weak, 0.5, strong, 0.5, resamples=300)
    assert better["f1"]["lo"] > 0 and better["f1"]["b_higher"] == 1.0
    assert better["benign_fpr"]["diff"] < 0 and better["benign_fpr"]["hi"] <= 0
    assert better["f1"]["lo"] <= better["f1"]["diff"] <= better["f1"]["hi"]
    assert better["benign_fpr"]["b_lower"] == 1.0
    # Each side at its own threshold: at 0.95 the strong scores (0.9) flag nothing.
    silent = paired_bootstrap(weak, 0.5, strong, 0.95, resamples=300)
    assert silent["harmful_caught"]["hi"] < 0 and silent["f1"]["b_lower"] == 1.0
    with pytest.raises(ValueError, match="same texts"):
        paired_bootstrap(weak, 0.5, [r for r in strong if r.record_id != "t0"], 0.5)
    relabelled = [ScoredPair(r.record_id, r.category, not r.label if r.record_id == "t3" else r.label, r.score)
                  for r in strong]
    with pytest.raises(ValueError, match="1 texts differ"):
        paired_bootstrap(weak, 0.5, relabelled, 0.5)


def test_calibration_bins_ece_and_brier_by_hand() -> None:
    def pair(i: int, label: bool, score: float) -> ScoredPair:
        return ScoredPair(f"r{i}", "violence", label, score)

    # Bin [0, 0.5): scores 0.1, 0.3 with one positive -> mean 0.2, share 0.5.
    # Bin [0.5, 1.0]: scores 0.9, 1.0 (1.0 belongs to the last bin), both positive -> mean 0.95, share 1.0.
    rows = [pair(0, False, 0.1), pair(1, True, 0.3), pair(2, True, 0.9), pair(3, True, 1.0)]
    cal = calibration(rows, edges=(0.0, 0.5, 1.0))
    assert [(b["lo"], b["hi"], b["pairs"]) for b in cal["bins"]] == [(0.0, 0.5, 2), (0.5, 1.0, 2)]
    assert [b["mean_score"] for b in cal["bins"]] == [pytest.approx(0.2), pytest.approx(0.95)]
    assert [b["positive_share"] for b in cal["bins"]] == [0.5, 1.0]
    assert cal["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.05)
    assert cal["brier"] == pytest.approx((0.01 + 0.49 + 0.01 + 0.0) / 4)


def test_an_over_confident_judge_scores_worse_calibration_than_a_calibrated_one() -> None:
    rng = random.Random(3)
    honest, proud = [], []
    for i in range(4000):
        p = rng.random()
        y = rng.random() < p  # the label really is positive with probability p
        honest.append(ScoredPair(f"r{i}", "sexual", y, p))
        proud.append(ScoredPair(f"r{i}", "sexual", y, 0.99 if p >= 0.5 else 0.01))
    good, bad = calibration(honest), calibration(proud)
    assert good["ece"] < 0.03
    assert bad["ece"] > 0.2
    assert bad["brier"] > good["brier"]
    # Empty bins are left out: the over-confident judge only fills the lowest and the highest.
    assert [(b["lo"], b["hi"]) for b in bad["bins"]] == [(0.0, 0.1), (0.97, 1.0)]


def test_calibration_rejects_bad_edges_and_scores_outside_them() -> None:
    rows = [ScoredPair("r0", "privacy", True, 0.7)]
    with pytest.raises(ValueError, match="rise strictly"):
        calibration(rows, edges=(0.0, 0.5, 0.5, 1.0))
    with pytest.raises(ValueError, match="outside"):
        calibration(rows, edges=(0.0, 0.5))
    assert calibration([]) == {"bins": [], "ece": 0.0, "brier": 0.0}


def test_by_tag_counts_each_text_under_every_tag_it_has() -> None:
    rows = [
        ScoredPair("a", "violence", True, 0.9), ScoredPair("a", "sexual", False, 0.1),   # caught
        ScoredPair("b", "violence", True, 0.2), ScoredPair("b", "sexual", False, 0.7),   # missed, wrong category
        ScoredPair("c", "violence", False, 0.6), ScoredPair("c", "sexual", False, 0.0),  # a safe text flagged
        ScoredPair("d", "violence", False, 0.1), ScoredPair("d", "sexual", False, 0.2),  # untagged, fine
        ScoredPair("e", "violence", True, 0.9), ScoredPair("e", "sexual", False, 0.0),   # tags do not know it
    ]
    tags = {"a": ["dialect"], "b": ["obfuscated", "dialect"], "c": ["obfuscated", "obfuscated"], "d": []}
    got = by_tag(rows, tags, 0.5)
    assert list(got) == ["dialect", "obfuscated", "(no tag)"]  # two texts each (name order), then one
    ob = got["obfuscated"]
    assert (ob["texts"], ob["pairs"]) == (2, 4)  # c's repeated tag counts once
    assert (ob["benign_flagged"], ob["benign_texts"], ob["harmful_flagged"], ob["harmful_texts"]) == (1, 1, 1, 1)
    assert ob["pair_errors"] == {"missed": 1, "safe_text_flags": 1, "wrong_category_flags": 1}
    assert ob["overall"]["tp"] == 0 and ob["overall"]["f1"] == 0.0
    di = got["dialect"]
    assert (di["overall"]["tp"], di["overall"]["fp"], di["overall"]["fn"]) == (1, 1, 1)
    assert di["overall"]["f1"] == pytest.approx(0.5) and di["benign_texts"] == 0
    assert got["(no tag)"]["benign_fpr"] == 0.0 and got["(no tag)"]["texts"] == 1
    assert sum(g["texts"] for g in got.values()) == 5  # b counted twice, e not at all


def test_a_report_built_with_tags_shows_them_and_one_without_does_not() -> None:
    from training.report import build_report, markdown

    rows = [ScoredPair("a", "violence", True, 0.9), ScoredPair("b", "violence", False, 0.6)]
    with_tags = build_report(rows, name="m", threshold=0.5, tags={"a": ["dialect"], "b": ["fiction"]})
    assert set(with_tags["by_tag"]) == {"dialect", "fiction"}
    md = markdown(with_tags)
    assert "## By tag" in md and "| `fiction` | 1 | — | 100.0% (1/1) | — | 0 / 1 / 0 |" in md  # nothing to find
    assert "| `dialect` | 1 | 1.000 | — | 100.0% (1/1) | 0 / 0 / 0 |" in md
    assert "## By tag" not in markdown(build_report(rows, name="m", threshold=0.5))
