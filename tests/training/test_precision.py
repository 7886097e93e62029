"""torchao paths: QAT prepare → train → convert and int8 PTQ on CPU with the real 270M; FP8 on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inference.engine_config import native_bf16_cpu
from training import precision
from training.config import train_config
from training.modeling import collate, encode, last_logits, load_model, load_tokenizer, score_prompts
from training.pairs import all_pairs
from training.train import build_model

from .conftest import TINY_RECORDS

PROMPTS = [p.judge_prompt() for p in all_pairs(TINY_RECORDS[:1])][:2]


def _batch(tok: object) -> dict[str, torch.Tensor]:
    pairs = all_pairs(TINY_RECORDS)[:4]
    enc, _ = encode(tok, [p.judge_prompt() for p in pairs], [p.label for p in pairs], max_len=512)
    return collate(enc, tok.pad_token_id)  # type: ignore[attr-defined]


def test_a_run_records_the_dtype_it_actually_trained_in(capsys: pytest.CaptureFixture[str]) -> None:
    from training.train import resolve_dtype

    cpu = torch.device("cpu")
    cfg = resolve_dtype(train_config("gemma-3-270m-cpu-packed", device="cpu"), cpu)
    assert cfg.dtype == ("bfloat16" if native_bf16_cpu() else "float32")
    assert f"dtype auto -> {cfg.dtype}" in capsys.readouterr().out
    assert resolve_dtype(train_config(device="cpu"), cpu).dtype == "float32"


def test_fp8_training_conversion_runs_a_forward_on_cpu_but_training_refuses_without_a_gpu() -> None:
    from torchao.float8.float8_linear import Float8Linear

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
    if not precision.fp8_capable():
        with pytest.raises(precision.PrecisionUnavailable, match="compute capability"):
            precision.convert_fp8_training(model, "rowwise")
    for recipe in ("tensorwise", "rowwise"):
        m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
        precision.convert_fp8_training(m, recipe, allow_cpu=True)
        assert all(isinstance(layer, Float8Linear) for layer in (m[0], m[2]))
        assert m(torch.randn(16, 64)).shape == (16, 64)


def test_qat_prepare_train_convert_on_cpu(base_dir: Path) -> None:
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir, dtype=torch.float32)
    reference = score_prompts(model, tok, PROMPTS)
    precision.qat_prepare(model)
    fake = [n for n, m in model.named_modules() if type(m).__name__ == "FakeQuantizedLinear"]
    assert len(fake) == 18 * 7 and not any("lm_head" in n for n in fake)
    assert score_prompts(model, tok, PROMPTS) != reference  # fake quantisation is active
    model.train()
    batch = _batch(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loss = torch.nn.functional.cross_entropy(last_logits(model, batch), batch["targets"])
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    trained = score_prompts(model, tok, PROMPTS)  # what QAT simulated
    precision.qat_convert(model)
    assert not any(type(m).__name__ == "FakeQuantizedLinear" for m in model.modules())
    assert type(model.model.layers[0].self_attn.q_proj.weight).__name__ != "Parameter"
    # the converted int8 model computes what the fake-quantised one was trained to compute
    assert score_prompts(model, tok, PROMPTS) == pytest.approx(trained, abs=0.05)


@pytest.mark.parametrize("kind", ["int8_weight_only", "int8_dynamic", "int8_dynamic_intx"])
def test_int8_ptq_runs_on_cpu_and_keeps_scores_close(exported_tuned: Path, kind: str) -> None:
    # the tuned judge: its scores are decisive, so a shift means quantisation broke something
    tok = load_tokenizer(exported_tuned)
    dtype = torch.bfloat16 if kind == "int8_weight_only" else torch.float32
    model = load_model(exported_tuned, dtype=dtype)
    reference = score_prompts(model, tok, PROMPTS)
    precision.ptq(model, kind)
    assert "Linear" not in type(model.model.layers[0].mlp.down_proj.weight).__name__
    assert type(model.model.layers[0].mlp.down_proj.weight).__name__ != "Parameter"
    assert score_prompts(model, tok, PROMPTS) == pytest.approx(reference, abs=0.15)


def test_float8_ptq_needs_a_gpu_here(base_dir: Path) -> None:
    if precision.fp8_capable():
        pytest.skip("this machine has an FP8 GPU; the gpu-marked test covers it")  # never on the CPU machines
    with pytest.raises(precision.PrecisionUnavailable):
        precision.ptq(torch.nn.Sequential(torch.nn.Linear(16, 16)), "float8_dynamic")


@pytest.mark.gpu
def test_fp8_training_step_lowers_the_loss_on_gpu(tiny_train: Path, tmp_path: Path) -> None:
    for recipe in ("tensorwise", "rowwise"):
        cfg = train_config(train_file=tiny_train, output_dir=tmp_path, fp8=recipe, dtype="bfloat16", device="cuda",
                           lr=2e-3)
        tok, model = build_model(cfg, torch.device("cuda"))
        batch = _batch(tok)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        before = torch.nn.functional.cross_entropy(last_logits(model, batch), batch["targets"].cuda())
        before.backward()
        opt.step()
        with torch.no_grad():
            after = torch.nn.functional.cross_entropy(last_logits(model, batch), batch["targets"].cuda())
        assert after.item() < before.item()


@pytest.mark.gpu
def test_float8_dynamic_ptq_on_gpu(base_dir: Path) -> None:
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir, dtype=torch.bfloat16, device="cuda")
    reference = score_prompts(model, tok, PROMPTS)
    precision.ptq(model, "float8_dynamic")
    assert score_prompts(model, tok, PROMPTS) == pytest.approx(reference, abs=0.1)


def test_quant_control_row_fine_tunes_without_fake_quantisation(exported_tuned: Path, tiny_train: Path,
                                                                tmp_path: Path) -> None:
    # The control row repeats the QAT fine-tune without fake quantisation, starting from the tuned judge,
    # so a QAT loss can be split into what fine-tuning moves and what int8 costs.
    from training.quant_eval import QuantConfig
    from training.quant_eval import main as quant_main

    reports = quant_main(QuantConfig(model_dir=exported_tuned, data=tiny_train, rows="bf16,qat_control",
                                     qat_steps=1, train_file=tiny_train, out_dir=tmp_path, batch_size=4))
    control = reports["qat_control"]
    assert control["qat_steps"] == 1 and control["fake_quant"] is False
    run = json.loads((tmp_path / "qat_control_run" / "summary.json").read_text())
    assert run["config"]["qat"] == "none" and run["config"]["method"] == "full"
    assert (tmp_path / "qat_control" / "report.json").is_file()

    def arson(row: str) -> float:  # the tuned judge flags the arson threat; the untuned base would not
        scores = [json.loads(line) for line in (tmp_path / row / "scores.jsonl").read_text().splitlines()]
        return next(s["score"] for s in scores if s["record_id"] == "violence-0001" and s["category"] == "violence")

    assert arson("bf16") > 0.5
    assert arson("qat_control") == pytest.approx(arson("bf16"), abs=0.15)  # one step at 1e-5 moves little
