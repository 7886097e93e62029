"""Evaluation maths (pure): confusion counts, precision/recall/F1, benign false-positive rate, sweeps.

A scored pair is one (record, category) judgement with its gold label and P(Yes). A category
flags a pair when score >= threshold (the service's rule). Conventions: precision of a category
that flagged nothing is 0, recall of a category with no positives is 0, and F1 is 0 whenever
precision + recall is 0. "Overall" is micro-averaged over every pair of every category (default
categories and custom ones pooled under `custom`); macro F1 averages categories with positives.
The benign false-positive rate counts texts, not pairs: a text with no default label is a false
positive when any default category flags it — what a user of the service sees; its counterpart,
the share of harmful texts caught, counts a harmful text as caught when any default category flags it.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.pairs import CUSTOM


@dataclass(frozen=True, slots=True)
class ScoredPair:
    record_id: str
    category: str
    label: bool
    score: float


@dataclass(frozen=True, slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, o: Counts) -> Counts:
        return Counts(self.tp + o.tp, self.fp + o.fp, self.fn + o.fn, self.tn + o.tn)

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "support": self.support,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def confusion(labels: Sequence[bool], scores: Sequence[float], threshold: float) -> Counts:
    """Counts of one binary decision `score >= threshold` against gold labels."""
    tp = fp = fn = tn = 0
    for y, s in zip(labels, scores, strict=True):
        hit = s >= threshold
        if y and hit:
            tp += 1
        elif hit:
            fp += 1
        elif y:
            fn += 1
        else:
            tn += 1
    return Counts(tp, fp, fn, tn)


def per_category(rows: Iterable[ScoredPair], threshold: float) -> dict[str, Counts]:
    """Counts per category id, in first-seen order."""
    by: dict[str, tuple[list[bool], list[float]]] = {}
    for r in rows:
        ys, ss = by.setdefault(r.category, ([], []))
        ys.append(r.label)
        ss.append(r.score)
    return {c: confusion(ys, ss, threshold) for c, (ys, ss) in by.items()}


def micro(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total = total + c
    return total


def macro_f1(counts: dict[str, Counts]) -> float:
    scored = [c.f1 for c in counts.values() if c.support]
    return sum(scored) / len(scored) if scored else 0.0


def benign_fpr(rows: Iterable[ScoredPair], threshold: float) -> tuple[int, int, float]:
    """(flagged benign texts, benign texts, rate); benign = no default-category label."""
    flagged, benign, _, _ = _text_outcomes(text_tallies(rows, threshold).values())
    return flagged, benign, (flagged / benign if benign else 0.0)


def harmful_caught(rows: Iterable[ScoredPair], threshold: float) -> tuple[int, int, float]:
    """(harmful texts flagged by *some* default category, harmful texts, rate).

    What an application that blocks on any flag sees: a harmful text flagged under the wrong category
    is still caught here, while per-category F1 counts it as a miss plus a false positive.
    """
    _, _, caught, harmful = _text_outcomes(text_tallies(rows, threshold).values())
    return caught, harmful, (caught / harmful if harmful else 0.0)


def pair_errors(rows: Iterable[ScoredPair], threshold: float) -> dict[str, int]:
    """The wrong pairs by kind: what an error costs differs between them.

    `missed`: a category a text violates, not flagged. `safe_text_flags`: a flag on a text that violates
    nothing (custom categories included). `wrong_category_flags`: a flag on a text that violates some
    other category — the text is still caught, but the dashboard shows the wrong category.
    """
    return _errors_of(text_tallies(rows, threshold).values())


def _errors_of(tallies: Iterable[TextTally]) -> dict[str, int]:
    tallies = list(tallies)
    return {"missed": sum(t.fn for t in tallies),
            "safe_text_flags": sum(t.fp for t in tallies if not t.tp + t.fn),
            "wrong_category_flags": sum(t.fp for t in tallies if t.tp + t.fn)}


def summary(rows: Sequence[ScoredPair], threshold: float) -> dict[str, object]:
    """Everything the report states at one threshold."""
    cats = per_category(rows, threshold)
    total = micro(cats.values())
    tallies = list(text_tallies(rows, threshold).values())  # one pass serves the text-level numbers
    flagged, n_benign, caught, n_harmful = _text_outcomes(tallies)
    return {"threshold": threshold, "overall": total.as_dict(), "macro_f1": round(macro_f1(cats), 4),
            "benign_fpr": round(flagged / n_benign if n_benign else 0.0, 4), "benign_flagged": flagged,
            "benign_texts": n_benign, "harmful_caught": round(caught / n_harmful if n_harmful else 0.0, 4),
            "harmful_flagged": caught, "harmful_texts": n_harmful, "pair_errors": _errors_of(tallies),
            "categories": {c: k.as_dict() for c, k in cats.items()}}


UNTAGGED = "(no tag)"


def by_tag(rows: Sequence[ScoredPair], tags: Mapping[str, Sequence[str]], threshold: float
           ) -> dict[str, dict[str, Any]]:
    """The headline numbers on the texts of each tag (a text counts under every tag it has; texts without any
    under `UNTAGGED`), largest group first: which kinds of text the judge gets wrong. Texts `tags` does not
    know are left out."""
    groups: dict[str, list[ScoredPair]] = {}
    for r in rows:
        if r.record_id in tags:
            for t in dict.fromkeys(tags[r.record_id] or [UNTAGGED]):
                groups.setdefault(t, []).append(r)
    out: list[tuple[int, str, dict[str, Any]]] = []
    for t, group in groups.items():
        s = summary(group, threshold)
        texts = len({r.record_id for r in group})
        out.append((texts, t, {"texts": texts, "pairs": len(group), **{
            k: s[k] for k in ("overall", "benign_fpr", "benign_flagged", "benign_texts", "harmful_caught",
                              "harmful_flagged", "harmful_texts", "pair_errors")}}))
    return {t: g for _, t, g in sorted(out, key=lambda x: (-x[0], x[1]))}


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Agreement of two raters' yes/no verdicts on the same items beyond what their base rates give by chance:
    (observed - chance) / (1 - chance); 1 = identical, 0 = chance level. 1.0 when chance agreement is total."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} verdicts against {len(b)}")
    n = len(a)
    if not n:
        raise ValueError("cohen_kappa: no verdicts")
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def threshold_sweep(rows: Sequence[ScoredPair], thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Overall precision/recall/F1, macro F1 and benign FPR at each threshold."""
    out = []
    for t in thresholds:
        cats = per_category(rows, t)
        tot = micro(cats.values())
        rates = tally_stats(text_tallies(rows, t).values())
        out.append({"threshold": t, "precision": round(tot.precision, 4), "recall": round(tot.recall, 4),
                    "f1": round(tot.f1, 4), "macro_f1": round(macro_f1(cats), 4),
                    "benign_fpr": round(rates["benign_fpr"], 4),
                    "harmful_caught": round(rates["harmful_caught"], 4)})
    return out


def pr_curve(labels: Sequence[bool], scores: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """(precision, recall, threshold) at every distinct score, from the highest threshold down."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda x: -x[0])
    n_pos = sum(labels)
    prec, rec, thr = [], [], []
    tp = fp = 0
    for i, (s, y) in enumerate(pairs):
        tp += y
        fp += not y
        if i + 1 < len(pairs) and pairs[i + 1][0] == s:
            continue
        prec.append(tp / (tp + fp))
        rec.append(tp / n_pos if n_pos else 0.0)
        thr.append(s)
    return prec, rec, thr


def average_precision(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the step PR curve (sum of precision x recall increments)."""
    prec, rec, _ = pr_curve(labels, scores)
    ap, last_r = 0.0, 0.0
    for p, r in zip(prec, rec, strict=True):
        ap += p * (r - last_r)
        last_r = r
    return ap


# Edges of the reliability bins: finer at the top, where the judge's flags are decided and where a
# fine-tuned judge is most likely to be over-confident.
CALIBRATION_EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 1.0)


def calibration(rows: Sequence[ScoredPair], edges: Sequence[float] = CALIBRATION_EDGES) -> dict[str, Any]:
    """How far the scores are from probabilities: reliability bins, expected calibration error, Brier score.

    A bin holds the pairs with lo <= score < hi (the last bin also holds its upper edge, 1 by default); it reports its
    pair count, mean score and the share of its pairs that are positive. A calibrated judge has the two
    close in every bin. ECE is the pair-weighted mean of |mean score - positive share| over the bins;
    the Brier score is the mean of (score - label)^2. Both are 0 for a perfect judge; empty bins are left out.
    """
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("calibration: bin edges must rise strictly and be at least two")
    if any(not edges[0] <= r.score <= edges[-1] for r in rows):
        raise ValueError(f"calibration: a score lies outside the bins {edges[0]}..{edges[-1]}")
    bins = []
    n = len(rows)
    ece = 0.0
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = [r for r in rows if lo <= r.score < hi or (last and r.score == hi)]
        if not inside:
            continue
        mean = sum(r.score for r in inside) / len(inside)
        share = sum(r.label for r in inside) / len(inside)
        ece += len(inside) / n * abs(mean - share)
        bins.append({"lo": lo, "hi": hi, "pairs": len(inside), "mean_score": round(mean, 4),
                     "positive_share": round(share, 4)})
    brier = sum((r.score - r.label) ** 2 for r in rows) / n if n else 0.0
    return {"bins": bins, "ece": round(ece, 4), "brier": round(brier, 4)}


def pick_threshold(sweep: Sequence[dict[str, float]], *, max_benign_fpr: float = 0.10) -> float:
    """The sweep threshold with the best overall F1 among those whose benign FPR stays within the limit.

    Ties go to the threshold closest to 0.5; with no threshold inside the limit, the one with the lowest
    benign FPR. Meant for a dev-split sweep, applied to the test split.
    """
    ok = [r for r in sweep if r["benign_fpr"] <= max_benign_fpr]
    if not ok:
        return min(sweep, key=lambda r: (r["benign_fpr"], -r["f1"]))["threshold"]
    return max(ok, key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))["threshold"]


# -- Per-text tallies: the text-level rates above, and the intervals below. The test split is small (a
# few hundred texts), so every headline number gets an interval. Texts, not pairs, are resampled: a
# text's category judgements are not independent.

STATS = ("f1", "benign_fpr", "harmful_caught")


@dataclass(frozen=True, slots=True)
class TextTally:
    """One text at one threshold: its pair counts over every category, and its text-level outcome."""

    tp: int
    fp: int
    fn: int
    judged: bool  # has at least one default-category pair (else it counts as neither benign nor harmful)
    harmful: bool  # has a default-category label
    flagged: bool  # some default category flagged it


def text_tallies(rows: Iterable[ScoredPair], threshold: float) -> dict[str, TextTally]:
    """Per record id, in first-seen order."""
    acc: dict[str, list[int]] = {}
    for r in rows:
        t = acc.setdefault(r.record_id, [0, 0, 0, 0, 0, 0])
        hit = r.score >= threshold
        t[0] += r.label and hit
        t[1] += hit and not r.label
        t[2] += r.label and not hit
        if r.category != CUSTOM:
            t[3] = 1
            t[4] |= r.label
            t[5] |= hit
    return {k: TextTally(v[0], v[1], v[2], bool(v[3]), bool(v[4]), bool(v[5])) for k, v in acc.items()}


def _text_outcomes(tallies: Iterable[TextTally]) -> tuple[int, int, int, int]:
    """(flagged benign texts, benign texts, caught harmful texts, harmful texts); texts without a
    default-category pair are neither."""
    benign_hit = benign = caught = harmful = 0
    for t in tallies:
        if not t.judged:
            continue
        if t.harmful:
            harmful += 1
            caught += t.flagged
        else:
            benign += 1
            benign_hit += t.flagged
    return benign_hit, benign, caught, harmful


def tally_stats(tallies: Iterable[TextTally]) -> dict[str, float]:
    """Micro F1, benign FPR and harmful caught from text tallies (the values `summary` reports)."""
    tallies = list(tallies)
    benign_hit, benign, caught, harmful = _text_outcomes(tallies)
    counts = Counts(sum(t.tp for t in tallies), sum(t.fp for t in tallies), sum(t.fn for t in tallies))
    return {"f1": counts.f1, "benign_fpr": benign_hit / benign if benign else 0.0,
            "harmful_caught": caught / harmful if harmful else 0.0}


def _interval(values: list[float], level: float) -> tuple[float, float]:
    """The percentile interval, widened outward to the nearest drawn values."""
    values = sorted(values)
    lo = values[math.floor((1 - level) / 2 * (len(values) - 1))]
    hi = values[math.ceil((1 + level) / 2 * (len(values) - 1))]
    return round(lo, 4), round(hi, 4)


def _check_resampling(n_texts: int, resamples: int, level: float) -> None:
    if n_texts < 1:
        raise ValueError("no scored texts to resample")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples} and {level}")


def bootstrap_ci(rows: Sequence[ScoredPair], threshold: float, *, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile interval of each of `STATS` over texts drawn with replacement (fixed seed: reproducible).

    A resample without benign (or harmful) texts counts that rate as 0; negligible with tens of each.
    """
    texts = list(text_tallies(rows, threshold).values())
    _check_resampling(len(texts), resamples, level)
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {s: [] for s in STATS}
    for _ in range(resamples):
        st = tally_stats(texts[rng.randrange(len(texts))] for _ in texts)
        for s in STATS:
            draws[s].append(st[s])
    return {s: _interval(v, level) for s, v in draws.items()}


def pair_mismatch(a: Iterable[ScoredPair], b: Iterable[ScoredPair]) -> str | None:
    """Why `a` and `b` cannot be put side by side pair by pair — they judge different (text, category) pairs, or
    label one differently — with an example; None when they can."""
    la = {(r.record_id, r.category): r.label for r in a}
    lb = {(r.record_id, r.category): r.label for r in b}
    if la.keys() != lb.keys():
        diff = la.keys() ^ lb.keys()
        rid, cat = min(diff)
        return f"they hold different pairs, {len({k[0] for k in diff})} texts differ (e.g. {rid} / {cat})"
    wrong = sorted(k for k, y in la.items() if lb[k] != y)
    if wrong:
        return (f"{len({k[0] for k in wrong})} texts differ in their labels "
                f"(e.g. one labels {wrong[0][0]} / {wrong[0][1]} differently)")
    return None


def paired_bootstrap(a: Sequence[ScoredPair], a_threshold: float, b: Sequence[ScoredPair], b_threshold: float, *,
                     resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """B minus A on the same texts: the difference, its percentile interval, and the shares of resamples
    in which B is higher and lower (the rest are ties: these metrics are discrete).

    Raises:
        ValueError: the two sets judge different texts, categories or gold labels.
    """
    if why := pair_mismatch(a, b):
        raise ValueError(f"paired comparison needs the same texts, categories and labels: {why}")
    ta, tb = text_tallies(a, a_threshold), text_tallies(b, b_threshold)
    ids_list = list(ta)
    _check_resampling(len(ids_list), resamples, level)
    rng = random.Random(seed)
    point_a, point_b = tally_stats(ta.values()), tally_stats(tb.values())
    diffs: dict[str, list[float]] = {s: [] for s in STATS}
    for _ in range(resamples):
        pick = [ids_list[rng.randrange(len(ids_list))] for _ in ids_list]
        sa, sb = tally_stats(ta[i] for i in pick), tally_stats(tb[i] for i in pick)
        for s in STATS:
            diffs[s].append(sb[s] - sa[s])
    out = {}
    for s in STATS:
        lo, hi = _interval(diffs[s], level)
        out[s] = {"diff": round(point_b[s] - point_a[s], 4), "lo": lo, "hi": hi,
                  "b_higher": round(sum(d > 0 for d in diffs[s]) / resamples, 4),
                  "b_lower": round(sum(d < 0 for d in diffs[s]) / resamples, 4)}
    return out
