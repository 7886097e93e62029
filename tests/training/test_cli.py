"""`python -m training` subcommands exist, each with --help; configs come from presets and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.__main__ import main
from training.config import TrainConfig, train_config


@pytest.mark.parametrize("argv", [["data", "build"], ["data", "augment"], ["train"], ["export"], ["publish"], ["eval"],
                                  ["compare"], ["agree"], ["blend"], ["quant"]])
def test_every_subcommand_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main([*argv, "--help"])
    assert ei.value.code == 0
    assert "usage: python -m training" in capsys.readouterr().out


def test_presets_and_overrides() -> None:
    small = train_config()
    big = train_config("gemma-3-12b-gpu", lora_r=64)
    packed = train_config("gemma-3-270m-cpu-packed")
    assert not small.packing and small.frozen_layers == 0
    assert packed.packing and packed.frozen_layers == 9 and packed.dtype == "auto" and packed.neg_per_row == 4
    assert small.method == "lora" and small.fp8 == "none" and small.dtype == "float32"
    assert big.fp8 == "rowwise" and big.dtype == "bfloat16" and big.lora_r == 64 and big.device == "cuda"
    with pytest.raises(ValueError, match="unknown preset"):
        train_config("gpt-5")
    with pytest.raises(TypeError):
        TrainConfig(nonsense=1)  # type: ignore[call-arg]


def test_data_build_reports_schema_errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "violence.jsonl").write_text('{"id": "violence-0001"}\n')
    with pytest.raises(SystemExit, match=r"violence.jsonl:1: missing field"):
        main(["data", "build", "--source-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")])
