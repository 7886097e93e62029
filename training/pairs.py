"""(text, category, label) pairs: how dataset records become judge prompts for training and evaluation.

Every record expands to one pair per default category (positive when the category is in `labels`)
plus one for its custom category, exactly as serving would judge it: the prompt is
`inference.contract.build_prompt`, the answer `target_answer`. Training cannot afford all pairs
on 2 CPU cores (8 of 9 are negatives), so `sample_pairs` keeps every positive and every custom
pair and, per category, `neg_ratio` negatives per positive: first the category's own file's
negatives (look-alikes written against that very definition) and, with `cross_share`, texts that
violate another category, then benign-file texts and other texts at random. Negatives are
re-drawn each epoch (`seed` + epoch).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail.categories.defaults import DEFAULT_CATEGORIES
from inference.contract import CategorySpec, Direction, build_prompt, target_answer

DEFAULT_SPECS: tuple[CategorySpec, ...] = tuple(CategorySpec(c.id, c.name, c.definition) for c in DEFAULT_CATEGORIES)
CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Pair:
    """One judge question with its gold answer."""

    record_id: str
    text: str
    direction: Direction
    prompt: str | None
    category: CategorySpec
    label: bool

    @property
    def source(self) -> str:
        return self.record_id.rsplit("-", 1)[0]

    def judge_prompt(self) -> str:
        """The serving prompt, byte for byte."""
        return build_prompt(self.text, self.category, self.direction, self.prompt)

    def answer(self) -> str:
        return target_answer(self.label)


def custom_spec(record: dict[str, Any]) -> CategorySpec:
    c = record["custom"]
    return CategorySpec(CUSTOM, c["name"], c["definition"])


def expand(record: dict[str, Any], categories: Sequence[CategorySpec] = DEFAULT_SPECS) -> list[Pair]:
    """Every pair of one record: the default categories, then its custom category if any."""
    base = (record["id"], record["text"], record["direction"], record["prompt"])
    out = [Pair(*base, c, c.id in record["labels"]) for c in categories]
    if record.get("custom"):
        out.append(Pair(*base, custom_spec(record), bool(record["custom"]["label"])))
    return out


def all_pairs(records: Iterable[dict[str, Any]]) -> list[Pair]:
    """Every pair of every record (evaluation uses these, unsampled)."""
    return [p for r in records for p in expand(r)]


def sample_pairs(records: Sequence[dict[str, Any]], *, neg_ratio: float, seed: int,
                 hard_share: float = 0.5, cross_share: float = 0.0) -> list[Pair]:
    """Training pairs for one epoch (see the module docstring), shuffled with `seed`.

    Args:
        records: dataset records (a split).
        neg_ratio: negatives per positive, per default category.
        seed: the draw of negatives and the order.
        hard_share: at most this share of a category's negatives comes from its own file.
        cross_share: at most this share comes from texts that violate a *different* default category
            (the same harmful text asked about the wrong category: what teaches the model to read the
            definition instead of answering "is this harmful at all").
            The rest is split evenly between benign-file texts and every other text.
    """
    if not 0 <= hard_share + cross_share <= 1:
        raise ValueError(f"hard_share + cross_share must lie in [0, 1], got {hard_share} + {cross_share}")
    rng = random.Random(seed)
    by_cat: dict[str, dict[str, list[Pair]]] = {}
    extra: list[Pair] = []
    for r in records:
        for p in expand(r):
            if p.category.id == CUSTOM:
                extra.append(p)  # few, each with its own definition: all of them, every epoch
                continue
            slot = by_cat.setdefault(p.category.id, {"pos": [], "hard": [], "cross": [], "benign": [], "other": []})
            if p.label:
                slot["pos"].append(p)
            elif p.source == p.category.id:
                slot["hard"].append(p)
            elif cross_share and r["labels"]:
                slot["cross"].append(p)
            elif p.source == "benign":
                slot["benign"].append(p)
            else:
                slot["other"].append(p)
    chosen = list(extra)
    for cid in sorted(by_cat):
        slot = by_cat[cid]
        chosen += slot["pos"]
        want = round(neg_ratio * len(slot["pos"]))
        names = ("hard", "cross", "benign", "other")
        pools = {k: list(slot[k]) for k in names}
        for k in names:
            rng.shuffle(pools[k])
        taken: dict[str, list[Pair]] = {}
        for k, share in (("hard", hard_share), ("cross", cross_share)):
            taken[k] = pools[k][:min(round(want * share), len(pools[k]))]
        rest = want - len(taken["hard"]) - len(taken["cross"])
        taken["benign"] = pools["benign"][:min(rest // 2, len(pools["benign"]))]
        taken["other"] = pools["other"][:min(rest - len(taken["benign"]), len(pools["other"]))]
        short = want - sum(map(len, taken.values()))
        for k in ("benign", "cross", "hard"):  # a short pool is made up from benign texts first
            extra_k = min(short, len(pools[k]) - len(taken[k]))
            taken[k] += pools[k][len(taken[k]):len(taken[k]) + extra_k]
            short -= extra_k
        chosen += [p for k in names for p in taken[k]]
    rng.shuffle(chosen)
    return chosen
