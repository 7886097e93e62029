"""(text, category, label) pairs: how dataset records become judge prompts for training and evaluation.

Every record expands to one pair per default category (positive when the category is in `labels`)
plus one for its custom category, exactly as serving would judge it: the prompt is
`inference.contract.build_prompt`, the answer `target_answer`. Training cannot afford all pairs
on 2 CPU cores (8 of 9 are negatives), so `sample_pairs` keeps every positive and every custom
pair and, per category, `neg_ratio` negatives per positive: first the category's own file's
negatives (look-alikes written against that very definition), then benign-file texts and other
categories' texts at random. Negatives are re-drawn each epoch (`seed` + epoch).
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
                 hard_share: float = 0.5) -> list[Pair]:
    """Training pairs for one epoch (see the module docstring), shuffled with `seed`.

    Args:
        records: dataset records (a split).
        neg_ratio: negatives per positive, per default category.
        seed: the draw of negatives and the order.
        hard_share: at most this share of a category's negatives comes from its own file; the rest is
            split evenly between benign-file texts and every other text.
    """
    rng = random.Random(seed)
    by_cat: dict[str, dict[str, list[Pair]]] = {}
    extra: list[Pair] = []
    for r in records:
        for p in expand(r):
            if p.category.id == CUSTOM:
                extra.append(p)  # few, each with its own definition: all of them, every epoch
                continue
            slot = by_cat.setdefault(p.category.id, {"pos": [], "hard": [], "benign": [], "other": []})
            if p.label:
                slot["pos"].append(p)
            elif p.source == p.category.id:
                slot["hard"].append(p)
            elif p.source == "benign":
                slot["benign"].append(p)
            else:
                slot["other"].append(p)
    chosen = list(extra)
    for cid in sorted(by_cat):
        slot = by_cat[cid]
        chosen += slot["pos"]
        want = round(neg_ratio * len(slot["pos"]))
        pools = [list(slot["hard"]), list(slot["benign"]), list(slot["other"])]
        for pool in pools:
            rng.shuffle(pool)
        quota = [round(want * hard_share)]
        quota.append((want - min(quota[0], len(pools[0]))) // 2)
        quota.append(want)
        taken = [pool[:min(q, len(pool))] for pool, q in zip(pools, quota, strict=True)]
        taken[2] = taken[2][:want - len(taken[0]) - len(taken[1])]
        short = want - sum(map(len, taken))
        for i in (1, 0):  # a short pool is made up from benign texts first, then the category's own file
            extra_k = min(short, len(pools[i]) - len(taken[i]))
            taken[i] += pools[i][len(taken[i]):len(taken[i]) + extra_k]
            short -= extra_k
        chosen += [p for t in taken for p in t]
    rng.shuffle(chosen)
    return chosen
