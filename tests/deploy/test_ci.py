"""The GitHub Actions workflow and the Cloud Build config, parsed and checked."""

from __future__ import annotations

import re
from typing import Any

from deploy import render
from deploy.config import load_config
from tests.deploy.helpers import CONFIG, ROOT, load_yaml

WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
CLOUDBUILD = ROOT / "deploy" / "cloudbuild" / "inference.yaml"


def workflow() -> dict[str, Any]:
    data = load_yaml(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]


def test_pipeline_order_tests_build_push_deploy() -> None:
    wf = workflow()
    assert {"push", "pull_request"} <= set(wf["on"])
    jobs = wf["jobs"]
    assert "scripts/test.sh" in run_text(jobs["test"])
    assert jobs["build-service"]["needs"] == "test" and jobs["build-inference"]["needs"] == "test"
    assert set(jobs["deploy"]["needs"]) == {"build-service", "build-inference"}
    for name in ("build-service", "build-inference"):
        assert "refs/heads/main" in jobs[name]["if"] and "pull_request" in jobs[name]["if"]
    build = run_text(jobs["build-service"])
    assert "docker buildx build --file Dockerfile" in build and "--push" in build
    inference = run_text(jobs["build-inference"])
    assert "gcloud builds submit" in inference and "deploy/cloudbuild/inference.yaml" in inference
    assert "--print-build-substitutions" in run_text(jobs["build-inference"])
    deploy = run_text(jobs["deploy"])
    assert "python -m deploy.render --config deploy/config.yaml --out deploy/rendered/" in deploy
    assert "images.service.digest=${{ needs.build-service.outputs.digest }}" in deploy
    assert "images.inference.digest=${{ needs.build-inference.outputs.digest }}" in deploy
    assert "gcloud run services replace" in deploy
    for svc in ("subscriber", "management", "judge"):
        assert svc in deploy
    assert jobs["deploy"]["environment"] == "production"


def test_workload_identity_federation_only() -> None:
    wf = workflow()
    assert wf["permissions"] == {"contents": "read"}
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    authed = 0
    for name, job in wf["jobs"].items():
        for step in uses(job, "google-github-actions/auth"):
            authed += 1
            assert set(step["with"]) == {"workload_identity_provider", "service_account"}, name
            assert job["permissions"]["id-token"] == "write", name
            assert re.fullmatch(r"google-github-actions/auth@[0-9a-f]{40}", step["uses"]), "pin by commit"
    assert authed == 3
    assert not uses(wf["jobs"]["test"], "google-github-actions/auth"), "tests need no cloud credentials"


def test_actions_are_versioned() -> None:
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].split("@", 1)[1]
                assert re.fullmatch(r"v\d+|[0-9a-f]{40}", ref), step["uses"]


def test_cloud_build_bakes_verified_weights_from_the_registry() -> None:
    cb = load_yaml(CLOUDBUILD)
    fetch, build = cb["steps"]
    assert fetch["id"] == "fetch-weights"
    script = fetch["args"][-1]
    assert 'gcloud storage cp --recursive "${_MODEL_URI}/*" inference/image/model/' in script
    assert "sha256sum --check --strict" in script
    assert build["args"][0] == "build" and "--file=inference/Dockerfile" in build["args"]
    assert "--build-arg=VLLM_IMAGE=${_VLLM_BASE}" in build["args"] and build["args"][-1] == "inference/image"
    assert cb["images"] == ["${_IMAGE}"]
    # Every substitution the renderer prints is declared, and nothing else.
    assert set(cb["substitutions"]) == set(render.build_substitutions(load_config(CONFIG)))
    assert cb["options"]["substitutionOption"] == "MUST_MATCH"
    assert cb["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    for step in cb["steps"]:
        name, _, tag = step["name"].rpartition(":")
        assert name and re.match(r"\d+\.\d+", tag), f"builder image {step['name']} must be pinned"
