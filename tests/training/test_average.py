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
