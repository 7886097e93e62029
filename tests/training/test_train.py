"""The training path on CPU with the real Gemma 3 270M: a real step lowers the loss, resume, padding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from training.config import train_config
from training.modeling import base_model_dir, collate, encode, last_logits, load_model, load_tokenizer, score_prompts
from training.pairs import all_pairs
from training.train import build_model, load_trainable_state, main

from .conftest import TINY_RECORDS


def test_one_real_training_step_lowers_the_loss_on_a_tiny_slice(tiny_train: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = train_config(train_file=tiny_train, output_dir=tmp_path, lr=2e-3)
    tok, model = build_model(cfg, torch.device("cpu"))
    pairs = all_pairs(TINY_RECORDS)[:6]
    enc, dropped = encode(tok, [p.judge_prompt() for p in pairs], [p.label for p in pairs], max_len=cfg.max_seq_len)
    assert dropped == 0
    batch = collate(enc, tok.pad_token_id)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(last_logits(model, batch), batch["targets"])

    before = loss()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


def test_checkpoint_resume_reproduces_an_uninterrupted_run(tiny_train: Path, tmp_path: Path) -> None:
    common: dict[str, Any] = {"train_file": tiny_train, "batch_size": 2, "limit_pairs": 8, "max_steps": 3, "lr": 1e-3,
              "save_every": 1, "log_every": 1}
    full = main(train_config(output_dir=tmp_path / "a", **common))
    assert full["steps"] == 3 and not full["stopped_early"]
    # interrupted after the first step (time budget), then resumed
    part = main(train_config(output_dir=tmp_path / "b", time_budget_s=1e-3, **common))
    assert part["stopped_early"] and part["steps"] == 1
    assert (tmp_path / "b" / "checkpoint-1" / "trainable.safetensors").exists()
    resumed = main(train_config(output_dir=tmp_path / "b", resume=True, **common))
    assert resumed["steps"] == 3
    a = load_file(str(tmp_path / "a" / "checkpoint-3" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint-3" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # only the newest keep_checkpoints (2) remain; the final adapter is bf16 and small
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    adapter = tmp_path / "a" / "final" / "adapter_model.safetensors"
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(adapter)).values())
    assert (tmp_path / "a" / "train_log.jsonl").read_text().count("\n") == 3


def test_left_padding_does_not_change_the_score(base_dir: Path) -> None:
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir, dtype=torch.float32)
    prompts = [p.judge_prompt() for p in all_pairs(TINY_RECORDS[:2])][:2]
    prompts.append(all_pairs(TINY_RECORDS[2:3])[0].judge_prompt())  # longer: forces padding of the others
    together = score_prompts(model, tok, prompts, batch_size=3)
    alone = [score_prompts(model, tok, [p], batch_size=1)[0] for p in prompts]
    assert together == pytest.approx(alone, abs=1e-4)


def test_a_second_stage_starts_from_the_given_adapter_and_refuses_a_misfit(tmp_path: Path) -> None:
    """--init-adapter loads the shipped default adapter into the fresh LoRA (bit for bit, in fp32)."""
    from training.config import ADAPTER_DIR

    shipped = load_file(str(ADAPTER_DIR / "adapter_model.safetensors"))
    _, model = build_model(train_config(output_dir=tmp_path, init_adapter=str(ADAPTER_DIR)), torch.device("cpu"))
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    assert state.keys() == shipped.keys()
    assert all(torch.equal(state[k].to(torch.bfloat16), shipped[k]) for k in shipped)
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_model(train_config(output_dir=tmp_path, init_adapter=str(ADAPTER_DIR), lora_r=8), torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match=r"adapter_model\.safetensors"):
        build_model(train_config(output_dir=tmp_path, init_adapter=str(tmp_path)), torch.device("cpu"))


def test_a_full_fine_tune_checkpoints_once_per_tied_weight_and_resumes(tiny_train: Path, tmp_path: Path) -> None:
    # Gemma ties lm_head to the embedding matrix; a full fine-tune's checkpoint must name that tensor once
    # (safetensors refuses two names for one tensor) and a resume must load what it saved.
    common: dict[str, Any] = {"train_file": tiny_train, "batch_size": 2, "limit_pairs": 4, "max_steps": 2, "lr": 1e-5,
                              "save_every": 1, "log_every": 1, "method": "full", "train_embeddings": False}
    part = main(train_config(output_dir=tmp_path, time_budget_s=1e-3, **common))
    assert part["stopped_early"] and part["steps"] == 1
    saved = load_file(str(tmp_path / "checkpoint-1" / "trainable.safetensors"))
    assert "lm_head.weight" not in saved and not any("embed_tokens" in k for k in saved)  # frozen, tied
    assert any(k.endswith("mlp.down_proj.weight") for k in saved)
    resumed = main(train_config(output_dir=tmp_path, resume=True, **common))
    assert resumed["steps"] == 2 and not resumed["stopped_early"]
    after = load_file(str(tmp_path / "checkpoint-2" / "trainable.safetensors"))
    assert after.keys() == saved.keys()
    assert any(not torch.equal(after[k], saved[k]) for k in saved)  # the resumed step trained
    assert (tmp_path / "final" / "config.json").is_file()  # a full fine-tune's final is a model folder
    # a freshly loaded model (all weights trainable, as the QAT row loads one) takes the checkpoint ...
    fresh = load_model(base_model_dir(), dtype=torch.float32)
    load_trainable_state(fresh, train_config(**common), after)
    key = next(k for k in after if k.endswith("mlp.down_proj.weight"))
    assert torch.equal(fresh.state_dict()[key], after[key])
    # ... and refuses one that lacks a trained weight
    with pytest.raises(ValueError, match="trained weights missing"):
        load_trainable_state(fresh, train_config(**common), {k: v for k, v in after.items() if k != key})
