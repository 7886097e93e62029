"""Evaluation report: JSON, markdown, PR-curve and confusion-matrix PNGs from scored pairs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.metrics import (
    ScoredPair,
    average_precision,
    bootstrap_ci,
    by_tag,
    calibration,
    pr_curve,
    summary,
    threshold_sweep,
)

SWEEP = tuple(round(0.05 * i, 2) for i in range(1, 20))
CI_RESAMPLES = 2000


def build_report(rows: Sequence[ScoredPair], *, name: str, threshold: float, extra: dict[str, Any] | None = None,
                 tags: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The report dictionary: summary at `threshold` with 95% bootstrap intervals, AP per category, sweep,
    best-F1 threshold, calibration (reliability bins, ECE, Brier) and, given each record's `tags`, the numbers
    per tag."""
    sweep = threshold_sweep(rows, SWEEP)
    best = max(sweep, key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))
    cats = sorted({r.category for r in rows}, key=[r.category for r in rows].index)
    ap = {c: round(average_precision([r.label for r in rows if r.category == c],
                                     [r.score for r in rows if r.category == c]), 4) for c in cats}
    ci = bootstrap_ci(rows, threshold, resamples=CI_RESAMPLES) if rows else None  # none when nothing was scored
    return {"name": name, **summary(rows, threshold), "ci95": ci, "average_precision": ap, "sweep": sweep,
            "best_f1_threshold": best["threshold"], "calibration": calibration(rows), "pairs": len(rows),
            "texts": len({r.record_id for r in rows}),
            **({"by_tag": by_tag(rows, tags, threshold)} if tags is not None else {}), **(extra or {})}


def ci_line(rep: dict[str, Any]) -> list[str]:
    """The report's 95% intervals as one markdown paragraph (none for reports written before they existed)."""
    ci = rep.get("ci95")
    if not ci:
        return []
    return ["", f"95% interval, texts resampled {CI_RESAMPLES:,} times: F1 {ci['f1'][0]:.3f}–{ci['f1'][1]:.3f}; "
                f"benign FPR {ci['benign_fpr'][0]:.1%}–{ci['benign_fpr'][1]:.1%}; "
                f"harmful caught {ci['harmful_caught'][0]:.1%}–{ci['harmful_caught'][1]:.1%}."]


def calibration_lines(rep: dict[str, Any]) -> list[str]:
    """The calibration section (none for reports written before it existed, or with nothing scored)."""
    cal = rep.get("calibration")
    if not cal or not cal["bins"]:
        return []
    lines = ["", f"## Calibration (ECE {cal['ece']:.3f}, Brier {cal['brier']:.4f})", "",
             "Every (text, category) pair, binned by score: a calibrated judge's positive share matches its "
             "mean score in each bin.", "",
             "| score bin | pairs | mean score | positive share |", "| --- | --- | --- | --- |"]
    for b in cal["bins"]:
        close = "]" if b["hi"] == 1.0 else ")"
        lines.append(f"| [{b['lo']:.2f}, {b['hi']:.2f}{close} | {b['pairs']} | {b['mean_score']:.3f} | "
                     f"{b['positive_share']:.3f} |")
    return lines


def tag_lines(rep: dict[str, Any]) -> list[str]:
    """The by-tag section (none for reports built without the records' tags)."""
    tags = rep.get("by_tag")
    if not tags:
        return []
    lines = ["", "## By tag", "",
             "A text counts under every tag it has. Benign FPR and harmful caught count texts, as above; F1 is "
             "over the tag's pairs (— where none is a violation).", "",
             "| tag | texts | F1 | benign FPR | harmful caught | missed / safe-text / wrong-category |",
             "| --- | --- | --- | --- | --- | --- |"]
    for t, g in tags.items():
        e = g["pair_errors"]
        fpr = f"{g['benign_fpr']:.1%} ({g['benign_flagged']}/{g['benign_texts']})" if g["benign_texts"] else "—"
        caught = (f"{g['harmful_caught']:.1%} ({g['harmful_flagged']}/{g['harmful_texts']})"
                  if g["harmful_texts"] else "—")
        f1 = f"{g['overall']['f1']:.3f}" if g["overall"]["support"] else "—"  # no violation to find
        lines.append(f"| `{t}` | {g['texts']} | {f1} | {fpr} | {caught} | "
                     f"{e['missed']} / {e['safe_text_flags']} / {e['wrong_category_flags']} |")
    return lines


def markdown(rep: dict[str, Any]) -> str:
    o = rep["overall"]
    lines = [
        f"# Evaluation: {rep['name']}",
        "",
        f"{rep['texts']} texts, {rep['pairs']} (text, category) pairs; threshold {rep['threshold']}.",
        "",
        f"**Overall (micro) F1 {o['f1']:.3f}** (precision {o['precision']:.3f}, recall {o['recall']:.3f}); "
        f"macro F1 {rep['macro_f1']:.3f}; **benign false-positive rate {rep['benign_fpr']:.1%}** "
        f"({rep['benign_flagged']}/{rep['benign_texts']} texts with no label flagged by some default category)"
        + (f"; **harmful texts caught {rep['harmful_caught']:.1%}** ({rep['harmful_flagged']}/{rep['harmful_texts']} "
           "texts with a default label flagged by some default category)." if "harmful_caught" in rep else "."),
        *ci_line(rep),
        *([] if "pair_errors" not in rep else [
            "", "Wrong pairs by kind: {missed} missed, {safe_text_flags} flags on safe texts, {wrong_category_flags} "
                "flags of a harmful text for a category it does not violate.".format(**rep["pair_errors"])]),
        "",
        "| category | precision | recall | F1 | AP | positives | tp | fp | fn |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, k in rep["categories"].items():
        lines.append(f"| `{c}` | {k['precision']:.3f} | {k['recall']:.3f} | {k['f1']:.3f} | "
                     f"{rep['average_precision'].get(c, 0):.3f} | {k['support']} | {k['tp']} | {k['fp']} | {k['fn']} |")
    lines += ["", f"## Threshold sweep (best overall F1 at {rep['best_f1_threshold']})", "",
              "| threshold | precision | recall | F1 | macro F1 | benign FPR | harmful caught |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rep["sweep"]:
        caught = f"{r['harmful_caught']:.1%}" if "harmful_caught" in r else "—"
        lines.append(f"| {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                     f"{r['macro_f1']:.3f} | {r['benign_fpr']:.1%} | {caught} |")
    lines += tag_lines(rep)
    lines += calibration_lines(rep)
    for key in ("engine", "model", "invalid_outputs", "seconds", "note"):
        if key in rep:
            lines.append(f"\n{key}: {rep[key]}")
    lines += ["", "![PR curves](pr_curve.png)", "", "![confusion](confusion.png)", ""]
    return "\n".join(lines)


def plot(rows: Sequence[ScoredPair], rep: dict[str, Any], out: Path) -> None:
    """pr_curve.png (one curve per category + overall) and confusion.png (2x2 per category at the threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = list(rep["categories"])
    fig, ax = plt.subplots(figsize=(7, 6))
    for c in [*cats, "overall"]:
        sel = rows if c == "overall" else [r for r in rows if r.category == c]
        ys = [r.label for r in sel]
        if not any(ys):
            continue
        p, r, _ = pr_curve(ys, [x.score for x in sel])
        ax.step([0.0, *r], [p[0], *p], where="post", label=c, lw=2.5 if c == "overall" else 1.2)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=f"PR curves: {rep['name']}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no positive pairs", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out / "pr_curve.png", dpi=110)
    plt.close(fig)

    cols = 3
    nrows = max(1, -(-len(cats) // cols))  # one empty panel when nothing was scored
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.9 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(cats):
            ax.axis("off")
            continue
        k = rep["categories"][cats[i]]
        grid = [[k["tn"], k["fp"]], [k["fn"], k["tp"]]]
        ax.imshow(grid, cmap="Blues")
        for (y, x), v in [((0, 0), k["tn"]), ((0, 1), k["fp"]), ((1, 0), k["fn"]), ((1, 1), k["tp"])]:
            ax.text(x, y, str(v), ha="center", va="center", fontsize=11)
        ax.set_xticks([0, 1], ["pred no", "pred yes"])
        ax.set_yticks([0, 1], ["gold no", "gold yes"])
        ax.set_title(f"{cats[i]} (F1 {k['f1']:.2f})", fontsize=9)
    fig.suptitle(f"confusion at threshold {rep['threshold']}: {rep['name']}")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)


def write_report(rows: Sequence[ScoredPair], rep: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.jsonl").write_text("".join(
        json.dumps({"record_id": r.record_id, "category": r.category, "label": r.label, "score": round(r.score, 6)})
        + "\n" for r in rows))
    (out / "report.json").write_text(json.dumps(rep, ensure_ascii=False, indent=1))
    (out / "report.md").write_text(markdown(rep))
    plot(rows, rep, out)
