"""Weight-space averaging of LoRA adapters (pure tensors, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from training.__main__ import main as cli
from training.average import AverageConfig, AverageError, average

KEY_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
KEY_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


def _adapter(folder: Path, a: float, b: float, *, r: int = 2, shape_b: tuple[int, int] = (4, 2)) -> Path:
    folder.mkdir(parents=True)
    save_file({KEY_A: torch.full((r, 4), a, dtype=torch.bfloat16), KEY_B: torch.full(shape_b, b, dtype=torch.bfloat16)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 32, "target_modules": ["q_proj"]}))
    return folder


def test_the_average_is_the_weighted_mean_of_every_factor(tmp_path: Path) -> None:
    one, two = _adapter(tmp_path / "one", 1.0, -2.0), _adapter(tmp_path / "two", 3.0, 2.0)
    rec = average(AverageConfig(adapters=f"{one},{two}", out_dir=tmp_path / "avg"))
    out = load_file(str(tmp_path / "avg" / "adapter_model.safetensors"))
    assert out[KEY_A].dtype == torch.bfloat16
    assert torch.equal(out[KEY_A].float(), torch.full((2, 4), 2.0))
    assert torch.equal(out[KEY_B].float(), torch.zeros(4, 2))
    assert [s["weight"] for s in rec["sources"]] == [0.5, 0.5]
    assert json.loads((tmp_path / "avg" / "average.json").read_text())["sha256"] == rec["sha256"]
    before = rec["sources"][0]["sha256"]
    into_source = average(AverageConfig(adapters=f"{one},{two}", out_dir=one))  # overwrites the first source
    assert into_source["sources"][0]["sha256"] == before != into_source["sha256"]
    cli(["average", "--adapters", f"{two},{tmp_path / 'avg'}", "--weights", "3,1", "--out-dir", str(tmp_path / "w")])
    assert torch.equal(load_file(str(tmp_path / "w" / "adapter_model.safetensors"))[KEY_A].float(),
                       torch.full((2, 4), 2.75))  # (3 * 3 + 1 * 2) / 4


def test_unlike_adapters_are_refused(tmp_path: Path) -> None:
    one = _adapter(tmp_path / "one", 1.0, 1.0)
    other_rank = _adapter(tmp_path / "r4", 1.0, 1.0, r=4, shape_b=(4, 4))
    with pytest.raises(AverageError, match=r"differs .* in r"):
        average(AverageConfig(adapters=f"{one},{other_rank}", out_dir=tmp_path / "x"))
    with pytest.raises(AverageError, match="at least two"):
        average(AverageConfig(adapters=str(one), out_dir=tmp_path / "x"))
    with pytest.raises(AverageError, match="not a peft adapter folder"):
        average(AverageConfig(adapters=f"{one},{tmp_path}", out_dir=tmp_path / "x"))
    with pytest.raises(SystemExit, match="--weights needs 2"):
        cli(["average", "--adapters", f"{one},{one}", "--weights", "1", "--out-dir", str(tmp_path / "x")])


def _random_adapter(folder: Path, r: int, alpha: float, seed: int, out_f: int = 6, in_f: int = 5) -> Path:
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    save_file({KEY_A: torch.randn(r, in_f, generator=g), KEY_B: torch.randn(out_f, r, generator=g)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": ["q_proj"]}))
    return folder


def _update(folder: Path) -> torch.Tensor:
    cfg = json.loads((folder / "adapter_config.json").read_text())
    s = load_file(str(folder / "adapter_model.safetensors"))
    return (cfg["lora_alpha"] / cfg["r"]) * s[KEY_B].double() @ s[KEY_A].double()


def test_delta_space_is_the_exact_weighted_sum_of_the_updates(tmp_path: Path) -> None:
    one, two = _random_adapter(tmp_path / "one", 2, 32, seed=1), _random_adapter(tmp_path / "two", 3, 6, seed=2)
    rec = average(AverageConfig(adapters=f"{one},{two}", weights="1.5,-0.5", space="delta",
                                out_dir=tmp_path / "x"))
    want = 1.5 * _update(one) - 0.5 * _update(two)
    got = _update(tmp_path / "x")
    assert torch.allclose(got, want, atol=1e-4 * float(want.abs().max()))
    assert rec["rank"] == 5 and rec["exact"] and rec["energy_kept"] == pytest.approx(1.0)
    assert [s["weight"] for s in rec["sources"]] == [1.5, -0.5]  # as given, not normalised
    # the factor-wise mean of the same two would not even have a shape: the ranks differ
    with pytest.raises(AverageError, match=r"differs .* in r"):
        average(AverageConfig(adapters=f"{one},{two}", out_dir=tmp_path / "y"))


def test_a_lower_rank_keeps_the_best_approximation_of_each_update(tmp_path: Path) -> None:
    one = _random_adapter(tmp_path / "one", 4, 8, seed=3)
    rec = average(AverageConfig(adapters=str(one), space="delta", rank=2, out_dir=tmp_path / "r2"))
    full = _update(one)
    u, sv, vh = torch.linalg.svd(full, full_matrices=False)
    best = (u[:, :2] * sv[:2]) @ vh[:2]
    got = _update(tmp_path / "r2")
    assert torch.allclose(got, best, atol=1e-4 * float(full.abs().max()))
    assert not torch.allclose(got, full, atol=1e-2)  # something was dropped
    assert rec["energy_kept"] == pytest.approx(float((sv[:2] ** 2).sum() / (sv ** 2).sum()), rel=1e-5)
    cfg = json.loads((tmp_path / "r2" / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], rec["exact"]) == (2, 2, False)
    # a rank above what a (6, 5) matrix can hold keeps it whole and pads with zero directions
    rec = average(AverageConfig(adapters=str(one), space="delta", rank=8, out_dir=tmp_path / "r8"))
    padded = load_file(str(tmp_path / "r8" / "adapter_model.safetensors"))
    assert padded[KEY_A].shape == (8, 5) and padded[KEY_B].shape == (6, 8)
    assert torch.allclose(_update(tmp_path / "r8"), full, atol=1e-4 * float(full.abs().max()))
    assert rec["exact"] and rec["energy_kept"] == pytest.approx(1.0)


def test_delta_space_refuses_what_it_cannot_combine(tmp_path: Path) -> None:
    one = _random_adapter(tmp_path / "one", 2, 4, seed=4)
    with pytest.raises(AverageError, match="at least two"):
        average(AverageConfig(adapters=str(one), space="delta", out_dir=tmp_path / "x"))
    with pytest.raises(AverageError, match="only means something with --space delta"):
        average(AverageConfig(adapters=f"{one},{one}", rank=1, out_dir=tmp_path / "x"))
    with pytest.raises(AverageError, match="not all zero"):
        average(AverageConfig(adapters=f"{one},{one}", weights="0,0", space="delta", out_dir=tmp_path / "x"))
    with pytest.raises(AverageError, match="factors or delta"):
        average(AverageConfig(adapters=f"{one},{one}", space="mean", out_dir=tmp_path / "x"))
    extra = _random_adapter(tmp_path / "extra", 2, 4, seed=5)
    state = load_file(str(extra / "adapter_model.safetensors"))
    save_file({**state, "base_model.model.lm_head.weight": torch.zeros(3, 3)}, str(extra / "adapter_model.safetensors"))
    with pytest.raises(AverageError, match="LoRA factors only"):
        average(AverageConfig(adapters=str(extra), space="delta", rank=1, out_dir=tmp_path / "x"))
    other = _random_adapter(tmp_path / "wide", 2, 4, seed=6, in_f=7)
    with pytest.raises(AverageError, match="has shape"):
        average(AverageConfig(adapters=f"{one},{other}", space="delta", out_dir=tmp_path / "x"))


def test_delta_space_refuses_adapters_whose_update_is_not_scale_b_a(tmp_path: Path) -> None:
    dora = _random_adapter(tmp_path / "dora", 2, 4, seed=7)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(AverageError, match="not a plain LoRA adapter"):
        average(AverageConfig(adapters=str(dora), space="delta", rank=1, out_dir=tmp_path / "x"))
