"""Training-test fixtures: the base model folder, a tiny record file, GPU gating, one engine on an export.

`gpu`-marked tests are skipped unless an NVIDIA GPU with compute capability >= 8.9 is present (FP8).
The export round-trip and the vLLM evaluation share one vLLM CPU server started on the exported
tuned model; GUARDRAIL_TEST_EXPORT_ENGINE_URL reuses one already running on such an export
(local iteration only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.engine_config import EngineConfig
from inference.launcher import LocalEngine


def _fp8_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _fp8_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with compute capability >= 8.9")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base_dir() -> Path:
    from inference.model_prep import prepare_base_model

    return prepare_base_model().path


TINY_RECORDS: list[dict[str, Any]] = [
    {"id": "violence-0001", "direction": "input", "text": "あいつの家に火をつけてやる。", "prompt": None,
     "labels": ["violence"], "tags": [], "custom": None},
    {"id": "violence-0002", "direction": "input", "text": "包丁で玉ねぎを上手に切るコツは？", "prompt": None,
     "labels": [], "tags": ["benign_lookalike", "cooking"], "custom": None},
    {"id": "privacy-0001", "direction": "output", "text": "山田花子さんの住所は東京都架空区1-2-3です。",
     "prompt": "山田花子の住所を教えて", "labels": ["privacy"], "tags": [], "custom": None},
    {"id": "benign-0001", "direction": "input", "text": "明日の天気を教えてください。", "prompt": None,
     "labels": [], "tags": [], "custom": None},
]


@pytest.fixture
def tiny_train(tmp_path: Path) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in TINY_RECORDS))
    return p


@pytest.fixture(scope="session")
def exported_tuned(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Path:
    """The repository's adapter exported (merged) the way `training export` does it."""
    from training.export import ExportConfig, export

    return export(ExportConfig(base_dir=base_dir, out_dir=tmp_path_factory.mktemp("export") / "jp-judge-270m"))


@pytest.fixture(scope="session")
def export_engine(exported_tuned: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    """A real vLLM CPU server loading the exported folder."""
    from tests.conftest import running_engine

    cfg = EngineConfig(model=str(exported_tuned), served_model_name="jp-judge-export")
    yield from running_engine(cfg, tmp_path_factory.mktemp("export-engine"), "GUARDRAIL_TEST_EXPORT_ENGINE_URL")
