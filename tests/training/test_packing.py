"""Packed rows (one text, every category) compute exactly what separate serving prompts compute."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from training.config import train_config
from training.modeling import collate, encode, last_logits, load_model, load_tokenizer, pair_loss
from training.packing import LayerSplit, PackingError, collate_packed, pack_pairs, pack_records, packed_loss, select
from training.pairs import expand
from training.train import build_model, lora_targets
from training.train_packed import keep_for_epoch, main

from .conftest import TINY_RECORDS


@pytest.fixture(scope="module")
def tok(base_dir: Path) -> Any:
    return load_tokenizer(base_dir)


@pytest.fixture(scope="module")
def model(base_dir: Path) -> Any:
    return load_model(base_dir, dtype=torch.float32)


def test_a_row_holds_the_prefix_once_and_every_category_suffix(tok: Any) -> None:
    rec = TINY_RECORDS[2]  # an output with its user prompt, labelled privacy
    pairs = expand(rec)
    row = pack_pairs(tok, pairs)
    separate = tok([p.judge_prompt() for p in pairs]).input_ids
    prefix_len = row.segments.count(0)
    assert len(row.ids) == prefix_len + sum(len(s) - prefix_len for s in separate)
    for k, (ids, at) in enumerate(zip(separate, row.answer_at, strict=True), start=1):
        suffix = [t for t, s in zip(row.ids, row.segments, strict=True) if s == k]
        assert list(row.ids[:prefix_len]) + suffix == ids  # prefix + this suffix = the served prompt
        assert row.positions[at] == len(ids) - 1 and row.segments[at] == k
    assert [c for c, lab in zip(row.categories, row.labels, strict=True) if lab] == ["privacy"]


def test_pairs_of_different_texts_are_refused(tok: Any) -> None:
    with pytest.raises(PackingError, match="different texts"):
        pack_pairs(tok, [expand(TINY_RECORDS[0])[0], expand(TINY_RECORDS[1])[0]])


def test_the_mask_lets_a_suffix_see_the_prefix_and_itself_only(tok: Any) -> None:
    rows, _ = pack_records(tok, TINY_RECORDS[:2])
    b = collate_packed(rows, tok.pad_token_id)
    mask, seg = b["mask"][0, 0], torch.tensor(rows[0].segments)
    n = len(seg)
    first2 = int((seg == 2).nonzero()[0])
    assert mask[first2, :n][seg == 0].all()  # the whole prefix
    assert not mask[first2, :n][seg == 1].any()  # never another suffix
    assert not mask[first2, first2 + 1:].any()  # never the future
    shorter = 0 if len(rows[0].ids) < len(rows[1].ids) else 1
    pad_from = len(rows[shorter].ids)
    assert b["mask"].sum(-1).gt(0).all()  # no empty attention row, padding included
    assert not b["mask"][shorter, 0][: pad_from, pad_from:].any()  # real tokens never see padding


def test_packed_logits_equal_separate_prompts_with_and_without_frozen_layers(tok: Any, model: Any) -> None:
    rows, _ = pack_records(tok, TINY_RECORDS[:3])
    b = collate_packed(rows, tok.pad_token_id)
    with torch.no_grad():
        whole = LayerSplit(model, 0).full_logits(b)
        split = LayerSplit(model, 9)
        halves = split.answer_logits(split.bottom(b), b)
        for i, rec in enumerate(TINY_RECORDS[:3]):
            pairs = expand(rec)
            enc, _ = encode(tok, [p.judge_prompt() for p in pairs], [p.label for p in pairs], max_len=4096)
            ref = last_logits(model, collate(enc, tok.pad_token_id))
            k = len(pairs)
            assert (whole[i, :k] - ref).abs().max().item() < 1e-3
            assert (halves[i, :k] - ref).abs().max().item() < 1e-3


def test_selected_suffixes_reuse_the_whole_rows_hidden_states(tok: Any, model: Any) -> None:
    row = pack_records(tok, TINY_RECORDS[:1])[0][0]
    split = LayerSplit(model, 6)
    with torch.no_grad():
        full_b = collate_packed([row], tok.pad_token_id)
        states = split.bottom(full_b)[0]
        full = split.answer_logits(states.unsqueeze(0), full_b)[0]
        sub, taken = select(row, [0, 5])
        sub_b = collate_packed([sub], tok.pad_token_id, pad_to=1)  # the cached slice is exactly len(taken) wide
        from_cache = split.answer_logits(states[taken].unsqueeze(0), sub_b)[0]
        fresh = split.full_logits(sub_b)[0]
    assert sub.categories == (row.categories[0], row.categories[5])
    assert (from_cache - full[[0, 5]]).abs().max().item() < 1e-3
    assert (fresh - full[[0, 5]]).abs().max().item() < 1e-3
    with pytest.raises(ValueError):
        select(row, [99])


def test_an_epoch_keeps_every_positive_and_the_custom_question() -> None:
    from training.packing import PackedRow

    row = PackedRow("x-1", (1,), (0,), (0,), (0,) * 9, (0,) * 9,
                    (False, True, False, False, False, False, False, False, False),
                    ("a", "b", "c", "d", "e", "f", "g", "h", "custom"))
    keep = keep_for_epoch(row, 3, random.Random(0))
    assert len(keep) == 5 and 1 in keep and 8 in keep
    assert keep_for_epoch(row, 0, random.Random(0)) == tuple(range(9))


def test_packed_loss_weights_positives() -> None:
    logits = torch.zeros((1, 2, 4))
    logits[0, 0, 1] = 2.0  # confident in token 1 for the first answer
    b = {"answer_valid": torch.tensor([[True, True]]), "targets": torch.tensor([[1, 2]]),
         "labels": torch.tensor([[True, False]])}
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([1, 2]), reduction="none")
    assert packed_loss(logits, b, 1.0).item() == pytest.approx(ce.mean().item())
    assert packed_loss(logits, b, 3.0).item() == pytest.approx(((3 * ce[0] + ce[1]) / 4).item())


def test_packed_loss_weights_wrong_category_negatives_on_harmful_texts() -> None:
    logits = torch.zeros((2, 2, 4))
    logits[0, 1, 3] = 1.5
    logits[1, 0, 2] = -1.0
    # row 0: a harmful text (answer 0 positive, answer 1 a wrong category); row 1: a safe text
    b = {"answer_valid": torch.tensor([[True, True], [True, False]]), "targets": torch.tensor([[1, 2], [2, 0]]),
         "labels": torch.tensor([[True, False], [False, False]])}
    ce = torch.nn.functional.cross_entropy(logits.reshape(4, 4), torch.tensor([1, 2, 2, 0]), reduction="none")
    pos, cross, safe = ce[0], ce[1], ce[2]
    assert packed_loss(logits, b, 2.0).item() == pytest.approx(((2 * pos + cross + safe) / 4).item())
    expected = (2 * pos + 3 * cross + safe) / 6
    assert packed_loss(logits, b, 2.0, cross_neg_weight=3.0).item() == pytest.approx(expected.item())


def test_packed_only_weights_are_refused_for_per_pair_runs(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.train import main as train_main

    with pytest.raises(ValueError, match="packed rows given without --packing: --cross-neg-weight "):
        train_main(TrainConfig(output_dir=tmp_path, cross_neg_weight=2.0))


def test_lora_targets_only_the_layers_above_the_frozen_ones(tmp_path: Path) -> None:
    import re

    pattern = lora_targets(12, 18)
    assert re.fullmatch(pattern, "model.layers.12.mlp.down_proj")
    assert re.fullmatch(pattern, "model.layers.17.self_attn.q_proj")
    assert not re.fullmatch(pattern, "model.layers.11.self_attn.q_proj")
    assert not re.fullmatch(pattern, "model.layers.1.mlp.up_proj")
    with pytest.raises(ValueError, match="none of"):
        lora_targets(18, 18)
    _, m = build_model(train_config(output_dir=tmp_path, frozen_layers=16), torch.device("cpu"))
    trained = {n.split(".layers.")[1].split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trained == {"16", "17"}


def test_one_real_packed_step_on_cached_states_lowers_the_loss(tok: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    _, lora = build_model(train_config(output_dir=tmp_path, frozen_layers=12, dtype="float32"), torch.device("cpu"))
    rows, _ = pack_records(tok, TINY_RECORDS)
    b = collate_packed(rows, tok.pad_token_id)
    split = LayerSplit(lora, 12)
    states = split.bottom(b)
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-3)
    before = packed_loss(split.answer_logits(states, b), b, 2.0)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = packed_loss(split.answer_logits(states, b), b, 2.0)
    assert after.item() < before.item()


def test_a_packed_run_caches_the_frozen_layers_and_resumes_exactly(tiny_train: Path, tmp_path: Path) -> None:
    common: dict[str, Any] = {"train_file": tiny_train, "packing": True, "frozen_layers": 12, "batch_size": 2,
                              "max_steps": 4, "lr": 5e-4, "save_every": 1, "log_every": 1, "max_seq_len": 2048,
                              "neg_per_row": 3, "pos_weight": 2.0, "epochs": 2.0, "dtype": "float32"}
    full = main(train_config(output_dir=tmp_path / "a", **common))
    assert full["steps"] == 4 and full["texts_per_epoch"] == len(TINY_RECORDS)
    assert full["questions_first_epoch"] == sum(min(9 if r["custom"] else 8, 3 + len(r["labels"]))
                                                for r in TINY_RECORDS)
    assert (tmp_path / "a" / "bottom-cache.pt").is_file()
    part = main(train_config(output_dir=tmp_path / "b", time_budget_s=1e-3, **common))
    assert part["stopped_early"] and part["steps"] == 1
    resumed = main(train_config(output_dir=tmp_path / "b", resume=True, **common))
    assert resumed["steps"] == 4
    a = load_file(str(tmp_path / "a" / "checkpoint-4" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint-4" / "trainable.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in a} == set(range(12, 18))


def test_more_steps_than_the_epochs_hold_is_refused_before_any_work(tiny_train: Path, tmp_path: Path) -> None:
    cfg = train_config(output_dir=tmp_path, train_file=tiny_train, packing=True, frozen_layers=12, batch_size=2,
                       epochs=1.0, max_steps=5, max_seq_len=2048)
    with pytest.raises(ValueError, match="raise --epochs or lower --max-steps"):
        main(cfg)
    assert not (tmp_path / "bottom-cache.pt").exists()


def test_the_frozen_layer_cache_key_follows_the_weights_and_the_split(tmp_path: Path) -> None:
    import os

    from training.packing import PackedRow
    from training.train_packed import _cache_key

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    rows = [PackedRow("x-1", (2, 5, 7), (0, 1, 2), (0, 0, 1), (2,), (9,), (True,), ("violence",))]
    cfg = train_config(frozen_layers=9)
    key = _cache_key(cfg, tmp_path, rows)
    assert key == _cache_key(cfg, tmp_path, rows)
    assert key != _cache_key(train_config(frozen_layers=8), tmp_path, rows)
    assert key != _cache_key(cfg, tmp_path, [rows[0], rows[0]])
    st = (tmp_path / "model.safetensors").stat()
    os.utime(tmp_path / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-prepared weights
    assert key != _cache_key(cfg, tmp_path, rows)


# dynamo reads `.grad` of non-leaf tensors while tracing under autograd; harmless, but pytest makes warnings errors
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")
def test_compiled_layers_give_eager_losses_and_gradients_without_recompiling(tok: Any, tmp_path: Path) -> None:
    """`--compile`: eager losses and gradients (packed rows, per-pair prompts); no recompile for a new width."""
    from torch._dynamo.utils import counters

    rows, _ = pack_records(tok, TINY_RECORDS)
    wide, narrow = collate_packed(rows, tok.pad_token_id), collate_packed(rows[2:], tok.pad_token_id, pad_to=1)
    assert wide["input_ids"].shape != narrow["input_ids"].shape
    pairs = [p for r in TINY_RECORDS[:2] for p in expand(r)]
    enc, _ = encode(tok, [p.judge_prompt() for p in pairs], [p.label for p in pairs], max_len=4096)
    flat = collate(enc, tok.pad_token_id)

    def run(compiled: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        cfg = train_config(output_dir=tmp_path, dtype="float32", compile=compiled, init_adapter="")
        _, lora = build_model(cfg, torch.device("cpu"))
        with torch.no_grad():  # a non-zero B, so the A matrices get gradients too
            for n, p in lora.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        split = LayerSplit(lora, 0)
        losses = []
        for b in (wide, narrow):
            loss = packed_loss(split.full_logits(b), b, 2.0)
            loss.backward()
            losses.append(loss.item())
        if compiled:
            graphs = counters["stats"]["unique_graphs"]
            other = collate_packed(rows[:2], tok.pad_token_id, pad_to=1)
            assert other["input_ids"].shape[1] not in (wide["input_ids"].shape[1], narrow["input_ids"].shape[1])
            with torch.compiler.set_stance("fail_on_recompile"):  # a third width: still no new graph
                third = packed_loss(split.full_logits(other), other, 2.0)
            assert graphs > 0 and counters["stats"]["unique_graphs"] == graphs and third.item() > 0
        loss = pair_loss(lora, flat)
        loss.backward()
        losses.append(loss.item())
        return losses, {n: p.grad.clone() for n, p in lora.named_parameters() if p.requires_grad}

    eager_losses, eager_grads = run(False)
    compiled_losses, compiled_grads = run(True)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert eager_grads.keys() == compiled_grads.keys()
    scale = max(g.abs().max().item() for g in eager_grads.values())
    assert scale > 0
    assert max((eager_grads[n] - compiled_grads[n]).abs().max().item() for n in eager_grads) < 1e-3 * scale
