"""Helpers for the deployment tests: paths, rendering into a temp dir, Dockerfile parsing."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from deploy import render

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "config.yaml"
TERRAFORM = ROOT / "deploy" / "terraform"


def load_yaml(path: Path) -> Any:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert len(docs) == 1, f"{path} must hold exactly one YAML document"
    return docs[0]


def render_into(out: Path, *overrides: str, suffix: str = "") -> dict[str, dict[str, Any]]:
    """Run the real command line (`python -m deploy.render`) and read back what it wrote."""
    argv = ["--config", str(CONFIG), "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    if suffix:
        argv += ["--revision-suffix", suffix]
    assert render.main(argv) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["judge.yaml", "management.yaml", "subscriber.yaml"]
    return {p.stem: load_yaml(p) for p in out.iterdir()}


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return list(manifest["spec"]["template"]["spec"]["containers"])


def container(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(manifest) if c["name"] == name]
    return found


def template_annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return dict(manifest["spec"]["template"]["metadata"]["annotations"])


def env_map(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def last_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1]:]


def exec_form(arguments: str) -> list[str]:
    """The JSON exec form of ENTRYPOINT/CMD (the shell form is refused: signals must reach the app)."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def dockerfile_command(path: Path) -> list[str]:
    """The process the image starts: ENTRYPOINT + CMD of its final stage."""
    stage = last_stage(dockerfile_instructions(path))
    entry = [exec_form(a) for w, a in stage if w == "ENTRYPOINT"]
    cmd = [exec_form(a) for w, a in stage if w == "CMD"]
    return (entry[-1] if entry else []) + (cmd[-1] if cmd else [])


def dockerfile_args(path: Path) -> dict[str, str]:
    """ARG defaults anywhere in the file (ARG NAME=value)."""
    args: dict[str, str] = {}
    for word, rest in dockerfile_instructions(path):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = shlex.split(value)[0] if value else ""
    return args
