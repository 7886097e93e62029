"""Model-side helpers shared by training, export checks and the transformers-side evaluation.

The judge reads one token: the first answer token after the prompt. Training therefore computes
logits only at the last position (`logits_to_keep=1`; Gemma's 262k-word vocabulary makes full
logits the most expensive part of a step), with left padding and explicit position ids so that
the last position of every row is its real last token. Scoring with transformers goes through the
contract's `score_from_logprobs` over the top-k first tokens, the same function serving uses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference.contract import score_from_logprobs, target_answer

TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class Encoded:
    ids: list[int]
    target: int


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(n: int) -> int:
    """Use every core this process may run on unless told otherwise; returns the count."""
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def base_model_dir() -> Path:
    """The prepared base Gemma 3 270M folder (built once by `guardrail model prepare`)."""
    from inference.model_prep import prepare_base_model

    return prepare_base_model().path


def load_tokenizer(model_dir: str | Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_dir: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, attn_implementation="sdpa")
    return model.to(device)  # type: ignore[arg-type]


def compile_layers(model: Any) -> int:
    """Compile every decoder layer of a (LoRA-wrapped) Gemma 3 text model in place; returns how many.

    Layer by layer rather than the whole model: the layers are where the time goes (the loss reads the
    LM head at a few answer positions only), layers of the same kind reuse each other's compiled code, and
    parameter names, saved adapters and `LayerSplit`, which calls the layers itself, stay as they are.
    Shapes are dynamic from the first call, so batches of other widths do not trigger recompiles (tested).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = base.model.layers
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def answer_ids(tok: Any) -> tuple[int, int]:
    """Token ids of the contract's " Yes" / " No" answers; each must be exactly one token."""
    out = []
    for ans in (target_answer(True), target_answer(False)):
        ids = tok(ans, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"the answer {ans!r} is {len(ids)} tokens in this tokenizer; the judge needs one")
        out.append(int(ids[0]))
    return out[0], out[1]


def encode(tok: Any, prompts: Sequence[str], labels: Sequence[bool], *, max_len: int) -> tuple[list[Encoded], int]:
    """Tokenise prompts (with <bos>, as vLLM does) and attach the answer token; drop too-long ones.

    Returns:
        (encoded examples, number dropped for exceeding `max_len` tokens including the answer).
    """
    yes, no = answer_ids(tok)
    batch = tok(list(prompts)).input_ids
    out, dropped = [], 0
    for ids, lab in zip(batch, labels, strict=True):
        if len(ids) + 1 > max_len:
            dropped += 1
            continue
        out.append(Encoded(list(ids), yes if lab else no))
    return out, dropped


def check_answer_alignment(tok: Any, prompt: str) -> None:
    """The answer token appended to the prompt's ids equals tokenising prompt + answer (no merge)."""
    yes, _ = answer_ids(tok)
    joint = tok(prompt + target_answer(True)).input_ids
    alone = tok(prompt).input_ids
    if joint != [*alone, yes]:
        raise ValueError("prompt + ' Yes' does not tokenise as prompt tokens + the Yes token; "
                         "the answer would not be the model's first generated token")


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad to the longest row; position ids count real tokens only."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, width - len(e.ids):] = torch.tensor(e.ids)
        mask[i, width - len(e.ids):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
            "targets": torch.tensor([e.target for e in batch], dtype=torch.long)}


def last_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the next token after each row's last real token: (batch, vocab), float32."""
    dev = next(model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev),
                position_ids=batch["position_ids"].to(dev), logits_to_keep=1, use_cache=False)
    return out.logits[:, -1].float()


def pair_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the gold answer token over a per-pair batch (`collate`): the training loss."""
    logits = last_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits, batch["targets"].to(logits.device))


@torch.no_grad()
def score_prompts(model: Any, tok: Any, prompts: Sequence[str], *, batch_size: int = 8,
                  progress: Any = None) -> list[float]:
    """P(Yes) for each prompt exactly as serving computes it (top-k first-token logprobs)."""
    model.eval()
    pad = tok.pad_token_id
    enc = [Encoded(list(ids), 0) for ids in tok(list(prompts)).input_ids]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))  # similar lengths: less padding
    scores = [0.0] * len(enc)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        logp = torch.log_softmax(last_logits(model, collate([enc[i] for i in idx], pad)), -1)
        top = torch.topk(logp, TOP_LOGPROBS, dim=-1)
        for row, i in enumerate(idx):
            toks = tok.convert_ids_to_tokens(top.indices[row].tolist())
            scores[i] = score_from_logprobs(dict(zip(toks, top.values[row].tolist(), strict=True)))
        if progress is not None:
            progress.update(len(idx))
    return scores
