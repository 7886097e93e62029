"""Packed training rows: every category question about one text in a single row.

A judgement's prompts share one long prefix (instructions + the text) and differ only in each
category's suffix (`inference.contract`). Training them as separate rows prefills that prefix
once per category; a packed row holds it once, followed by every category's suffix:

    [prefix][suffix 1][suffix 2] ... [suffix n]

with an attention mask in which each suffix sees the prefix and itself (never another suffix) and
position ids that restart after the prefix for every suffix. Each suffix's last position therefore
computes exactly what the served prompt `prefix + suffix` computes (a test checks the logits
against separate rows), at about half the tokens, and every category of a text is in the same
step, so the loss contrasts the right category with the wrong ones for the same text.

Because the mask keeps each suffix independent of the others, the frozen bottom layers of a
LoRA-on-top-layers run give the same hidden states every epoch: `LayerSplit` computes them once
per row (`bottom`) and trains only through the top layers (`top`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from inference.contract import shared_prefix
from training.modeling import answer_ids
from training.pairs import Pair, expand


class PackingError(ValueError):
    """A prompt does not tokenise as the shared prefix's tokens followed by its suffix's tokens."""


@dataclass(frozen=True, slots=True)
class PackedRow:
    """One text with all its category questions (see the module docstring)."""

    record_id: str
    ids: tuple[int, ...]
    positions: tuple[int, ...]
    segments: tuple[int, ...]  # 0 = shared prefix, k >= 1 = the k-th category suffix
    answer_at: tuple[int, ...]  # index of each suffix's last token
    targets: tuple[int, ...]  # the gold answer token after each suffix
    labels: tuple[bool, ...]
    categories: tuple[str, ...]


def pack_pairs(tok: Any, pairs: Sequence[Pair]) -> PackedRow:
    """One row from the pairs of one record (same text, direction and prompt; one per category).

    Raises:
        PackingError: the pairs are not of one text, or a prompt's tokens do not start with the
            prefix's tokens (then the packed row would not be what serving computes).
    """
    if not pairs:
        raise PackingError("no pairs to pack")
    first = pairs[0]
    if any((p.record_id, p.text, p.direction, p.prompt) != (first.record_id, first.text, first.direction, first.prompt)
           for p in pairs):
        raise PackingError(f"{first.record_id}: pairs of different texts cannot share a row")
    yes, no = answer_ids(tok)
    prefix = list(tok(shared_prefix(first.text, first.direction, first.prompt)).input_ids)
    ids, positions, segments = list(prefix), list(range(len(prefix))), [0] * len(prefix)
    answer_at, targets = [], []
    full_ids = tok([p.judge_prompt() for p in pairs]).input_ids
    for k, (p, full) in enumerate(zip(pairs, full_ids, strict=True), start=1):
        if list(full[:len(prefix)]) != prefix or len(full) == len(prefix):
            raise PackingError(f"{p.record_id}/{p.category.id}: the prompt's tokens do not extend the prefix's")
        suffix = list(full[len(prefix):])
        ids += suffix
        positions += range(len(prefix), len(prefix) + len(suffix))
        segments += [k] * len(suffix)
        answer_at.append(len(ids) - 1)
        targets.append(yes if p.label else no)
    return PackedRow(first.record_id, tuple(ids), tuple(positions), tuple(segments), tuple(answer_at),
                     tuple(targets), tuple(p.label for p in pairs), tuple(p.category.id for p in pairs))


def pack_records(tok: Any, records: Sequence[dict[str, Any]], *, max_len: int = 0) -> tuple[list[PackedRow], int]:
    """Every record as one packed row (all its pairs, as `pairs.expand` lists them).

    Returns:
        (rows, number of records dropped because their row is longer than `max_len`; 0 = no limit).
    """
    rows, dropped = [], 0
    for r in records:
        row = pack_pairs(tok, expand(r))
        if max_len and len(row.ids) > max_len:
            dropped += 1
            continue
        rows.append(row)
    return rows, dropped


def collate_packed(rows: Sequence[PackedRow], pad_id: int, pad_to: int = 32) -> dict[str, torch.Tensor]:
    """Right-padded ids/positions, the (batch, 1, L, L) boolean mask, answer indices and targets.

    The width is rounded up to a multiple of `pad_to`: fewer distinct shapes, so the CPU matmul
    kernels built for one shape are reused by later batches.

    Padding positions see only themselves (so no attention row is empty) and are never read.
    Rows with fewer answers pad `answer_at` with 0 and `answer_valid` with False.
    """
    width = -(-max(len(r.ids) for r in rows) // pad_to) * pad_to
    n_ans = max(len(r.answer_at) for r in rows)
    b = len(rows)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    seg = torch.full((b, width), -1, dtype=torch.long)
    at = torch.zeros((b, n_ans), dtype=torch.long)
    valid = torch.zeros((b, n_ans), dtype=torch.bool)
    targets = torch.zeros((b, n_ans), dtype=torch.long)
    labels = torch.zeros((b, n_ans), dtype=torch.bool)
    for i, r in enumerate(rows):
        n, k = len(r.ids), len(r.answer_at)
        ids[i, :n] = torch.tensor(r.ids)
        pos[i, :n] = torch.tensor(r.positions)
        seg[i, :n] = torch.tensor(r.segments)
        at[i, :k] = torch.tensor(r.answer_at)
        valid[i, :k] = True
        targets[i, :k] = torch.tensor(r.targets)
        labels[i, :k] = torch.tensor(r.labels)
    q, kv = seg.unsqueeze(2), seg.unsqueeze(1)  # (b, L, 1), (b, 1, L)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    mask = causal & (kv >= 0) & ((kv == 0) | (kv == q))
    mask |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves only
    return {"input_ids": ids, "position_ids": pos, "mask": mask.unsqueeze(1), "answer_at": at,
            "answer_valid": valid, "targets": targets, "labels": labels}


class LayerSplit:
    """Run a Gemma 3 text model as frozen bottom layers + trainable top layers over packed rows.

    `bottom` returns the hidden states after the first `frozen` decoder layers (no gradient; the
    caller may cache them, since they never change while only the top layers train), `answer_logits`
    runs the remaining layers, the final norm and the LM head at the answer positions only.
    With `frozen=0` it is a full forward pass.
    """

    def __init__(self, model: Any, frozen: int) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.lm = base
        self.text = base.model
        self.layer_types = list(base.config.layer_types)
        self.n_layers = len(self.text.layers)
        if not 0 <= frozen < self.n_layers:
            raise ValueError(f"frozen layers must be in [0, {self.n_layers - 1}], got {frozen}")
        self.frozen = frozen
        self.softcap = getattr(base.config, "final_logit_softcapping", None)

    def _run(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], layers: range) -> torch.Tensor:
        dev = hidden.device
        pos = batch["position_ids"].to(dev)
        mask = batch["mask"].to(dev)
        pe = {t: self.text.rotary_emb(hidden, pos, t) for t in set(self.layer_types[i] for i in layers)}
        for i in layers:
            hidden = self.text.layers[i](hidden, attention_mask=mask, position_embeddings=pe[self.layer_types[i]],
                                         position_ids=pos, past_key_values=None)
        return hidden

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        dev = next(self.text.parameters()).device
        emb: torch.Tensor = self.text.embed_tokens(batch["input_ids"].to(dev))
        return emb

    @torch.no_grad()
    def bottom(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states after the frozen layers: (batch, L, hidden)."""
        return self._run(self.embed(batch), batch, range(self.frozen))

    def answer_logits(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of the first answer token after every suffix: (batch, answers, vocab), float32."""
        hidden = self._run(hidden, batch, range(self.frozen, self.n_layers))
        at = batch["answer_at"].to(hidden.device)
        picked = torch.gather(hidden, 1, at.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = self.lm.lm_head(self.text.norm(picked)).float()
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def full_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.answer_logits(self.bottom(batch) if self.frozen else self.embed(batch), batch)


def packed_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], pos_weight: float = 1.0,
                cross_neg_weight: float = 1.0) -> torch.Tensor:
    """Weighted mean cross-entropy of the gold answer token over the valid answers.

    A positive answer weighs `pos_weight`; a negative answer weighs `cross_neg_weight` when its text
    violates some other category in the row (the question whose wrong "yes" is a wrong-category flag
    on a harmful text) and 1 when the text is safe.
    """
    valid = batch["answer_valid"].to(logits.device)
    targets = batch["targets"].to(logits.device)
    labels = batch["labels"].to(logits.device)
    ce = torch.nn.functional.cross_entropy(logits[valid], targets[valid], reduction="none")
    harmful_text = (labels & valid).any(dim=1, keepdim=True).expand_as(labels)
    neg = torch.where(harmful_text, cross_neg_weight, 1.0)
    w = torch.where(labels, pos_weight, neg)[valid]
    return (ce * w).sum() / w.sum()


def select(row: PackedRow, keep: Sequence[int]) -> tuple[PackedRow, list[int]]:
    """The row with only the suffixes `keep` (indices into its answers, in row order), and which tokens it took.

    The shared prefix always stays. Because no suffix attends to another, a kept suffix's hidden
    states are the same in the smaller row, so states cached for the whole row can be indexed with
    the returned token list.
    """
    wanted = sorted(set(keep))
    if not wanted or wanted[0] < 0 or wanted[-1] >= len(row.answer_at):
        raise ValueError(f"{row.record_id}: keep must name some of its {len(row.answer_at)} answers, got {list(keep)}")
    renumber = {k + 1: n for n, k in enumerate(wanted, start=1)}
    taken = [i for i, s in enumerate(row.segments) if s == 0 or s in renumber]
    where = {old: new for new, old in enumerate(taken)}
    sub = PackedRow(
        row.record_id,
        tuple(row.ids[i] for i in taken),
        tuple(row.positions[i] for i in taken),
        tuple(renumber.get(row.segments[i], 0) for i in taken),
        tuple(where[row.answer_at[k]] for k in wanted),
        tuple(row.targets[k] for k in wanted),
        tuple(row.labels[k] for k in wanted),
        tuple(row.categories[k] for k in wanted),
    )
    return sub, taken
