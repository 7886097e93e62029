"""`training publish`: copy an exported model folder to the model registry the inference image reads.

The registry is a GCS prefix (`gs://bucket/path`, configurable) — or a local folder for tests and
air-gapped use. The folder is uploaded file by file under `<registry>/<name>/<version>/`, then a
`PUBLISHED.json` marker (file list, sizes, sha256) is written last, so a reader that sees the
marker sees a complete model. Uploading needs the `google-cloud-storage` package and credentials
(Application Default Credentials); nothing else in training imports it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from inference.model_prep import sha256_file

MARKER = "PUBLISHED.json"


@dataclass(frozen=True, slots=True)
class PublishConfig:
    """What to publish, where, under which name and version."""

    model_dir: Path = field(default=Path("training/exports/jp-judge-270m"), metadata={"help": "exported folder"})
    registry: str = field(default="", metadata={"help": "gs://bucket/prefix or a local folder (required)"})
    name: str = field(default="", metadata={"help": "model name; default: the folder's manifest name"})
    version: str = field(default="", metadata={"help": "version label, e.g. a date or git sha (required)"})



def marker(folder: Path, name: str, version: str) -> dict[str, Any]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {"name": name, "version": version,
            "files": [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                      for p in files]}


def publish(cfg: PublishConfig) -> str:
    """Upload and return the destination URI.

    Raises:
        ValueError: missing registry/version, or the folder is not an exported model.
    """
    folder = Path(cfg.model_dir)
    if not cfg.registry or not cfg.version:
        raise ValueError("publish needs --registry (gs://bucket/prefix or a folder) and --version")
    if not (folder / "config.json").exists():
        raise ValueError(f"{folder} is not an exported model folder (no config.json); run `training export`")
    manifest = folder / "guardrail-model.json"
    name = cfg.name or (json.loads(manifest.read_text()).get("name") if manifest.exists() else None) or folder.name
    mark = marker(folder, name, cfg.version)
    dest = f"{cfg.registry.rstrip('/')}/{name}/{cfg.version}"
    if dest.startswith("gs://"):
        from google.cloud import storage  # type: ignore[attr-defined, unused-ignore]

        bucket_name, _, prefix = dest.removeprefix("gs://").partition("/")
        bucket = storage.Client().bucket(bucket_name)
        for f in tqdm(mark["files"], desc="publish", unit="file"):
            bucket.blob(f"{prefix}/{f['path']}").upload_from_filename(str(folder / f["path"]))
        bucket.blob(f"{prefix}/{MARKER}").upload_from_string(json.dumps(mark, indent=1),
                                                              content_type="application/json")
    else:
        target = Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        for f in tqdm(mark["files"], desc="publish", unit="file"):
            (target / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / f["path"], target / f["path"])
        (target / MARKER).write_text(json.dumps(mark, indent=1))
    return dest


def main(cfg: PublishConfig) -> str:
    dest = publish(cfg)
    print(f"publish: {dest}", flush=True)
    return dest
