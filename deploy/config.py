"""The deployment config (`deploy/config.yaml`): loaded, overridden with `--set`, validated.

Every Cloud Run manifest value and every Terraform name comes from here. The validators hold
the platform rules that must never be broken by an edit: images pinned, a warm GPU instance,
an L4 region, the GPU container's minimum size, a startup probe long enough for a model load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Cloud Run regions offering the NVIDIA L4 (docs, 2026); Tokyo is not among them.
L4_REGIONS = frozenset({"asia-southeast1", "asia-south1", "europe-west1", "europe-west4", "us-central1", "us-east4"})
GPU_MIN_CPU = 4
GPU_MIN_MEMORY_GIB = 16
GPU_STARTUP_LIMIT_S = 1800  # failureThreshold * periodSeconds ceiling for GPU containers
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def memory_gib(value: str) -> float:
    """'16Gi' -> 16.0, '512Mi' -> 0.5 (the Kubernetes quantities Cloud Run accepts)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi|Mi)", value)
    if not m:
        raise ValueError(f"memory {value!r} must look like 16Gi or 512Mi")
    return float(m.group(1)) / (1 if m.group(2) == "Gi" else 1024)


class Image(_Strict):
    name: str
    tag: str
    digest: str = ""

    @field_validator("tag")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v == "latest" or not PINNED_TAG.match(v):
            raise ValueError(f"image tag {v!r} is not an explicit pinned tag")
        return v

    @field_validator("digest")
    @classmethod
    def _digest(cls, v: str) -> str:
        if v and not DIGEST.match(v):
            raise ValueError(f"digest {v!r} must be sha256:<64 hex>")
        return v


class Images(_Strict):
    service: Image
    inference: Image
    vllm_base: str

    @field_validator("vllm_base")
    @classmethod
    def _base_pinned(cls, v: str) -> str:
        ref, _, digest = v.partition("@")
        tag = ref.rpartition(":")[2] if ":" in ref.rpartition("/")[2] else ""
        if digest and not DIGEST.match(digest):
            raise ValueError(f"vllm_base digest {digest!r} must be sha256:<64 hex>")
        if not re.match(r"^v\d+\.\d+\.\d+", tag) and not digest:
            raise ValueError(f"vllm_base {v!r} must name a vLLM release tag (vX.Y.Z…) or a digest")
        return v


class Model(_Strict):
    served_model_name: str
    version: str
    path_in_image: str


class Engine(_Strict):
    max_num_seqs: int = Field(ge=1, le=256)  # same bounds as GUARDRAIL_MAX_NUM_SEQS
    max_model_len: int = Field(ge=512)
    gpu_memory_utilization: float = Field(gt=0.0, le=0.98)
    enable_prefix_caching: bool
    dtype: str
    port: int = Field(ge=1024, le=65535)


class Network(_Strict):
    vpc: str
    subnet: str
    subnet_cidr: str
    egress: Literal["private-ranges-only", "all-traffic"]


class Database(_Strict):
    instance: str
    name: str
    tier: str
    version: str


class Redis(_Strict):
    instance: str
    memory_gb: int = Field(ge=1)


class PubSub(_Strict):
    topic: str
    dead_letter_topic: str
    subscription: str
    push_path: str
    push_audience: str
    # Pub/Sub's own bounds: dead-lettering needs 5..100 attempts, backoff is 0..600 s.
    max_delivery_attempts: int = Field(ge=5, le=100)
    min_backoff_seconds: int = Field(ge=0, le=600)
    max_backoff_seconds: int = Field(ge=0, le=600)

    @model_validator(mode="after")
    def _backoff_order(self) -> PubSub:
        if self.min_backoff_seconds > self.max_backoff_seconds:
            raise ValueError("pubsub.min_backoff_seconds must not exceed max_backoff_seconds")
        return self


class Buckets(_Strict):
    models: str
    build_source: str


class Secrets(_Strict):
    version: str
    admin_token: str
    redis_url: str
    redis_ca: str
    dashboard_session: str


class ServiceAccounts(_Strict):
    judge: str
    management: str
    subscriber: str
    push: str
    deployer: str
    builder: str


class GitHub(_Strict):
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")


class Size(_Strict):
    cpu: str
    memory: str


class Probe(_Strict):
    period_seconds: int = Field(ge=1, le=240)
    failure_threshold: int = Field(ge=1)
    timeout_seconds: int = Field(ge=1, le=240)


class JudgeService(_Strict):
    name: str
    ingress: Literal["all", "internal", "internal-and-cloud-load-balancing"]
    min_instances: int
    max_instances: int
    timeout_seconds: int = Field(ge=1, le=3600)
    gpu_type: Literal["nvidia-l4"]
    gpu_zonal_redundancy: bool
    api: Size
    vllm: Size
    startup_probe: Probe

    @model_validator(mode="after")
    def _gpu_rules(self) -> JudgeService:
        if self.min_instances < 1:
            raise ValueError("judge min_instances must be >= 1: a GPU cold start takes minutes")
        if self.max_instances < self.min_instances:
            raise ValueError("judge max_instances must be >= min_instances")
        if float(self.vllm.cpu) < GPU_MIN_CPU or memory_gib(self.vllm.memory) < GPU_MIN_MEMORY_GIB:
            raise ValueError(f"the GPU container needs >= {GPU_MIN_CPU} CPU and >= {GPU_MIN_MEMORY_GIB}Gi")
        p = self.startup_probe
        window = p.period_seconds * p.failure_threshold
        if not 300 <= window <= GPU_STARTUP_LIMIT_S:
            raise ValueError(f"vLLM startup probe window {window}s must be within 300..{GPU_STARTUP_LIMIT_S}s")
        if p.timeout_seconds > p.period_seconds:
            raise ValueError("startup probe timeout_seconds must not exceed period_seconds")
        return self


class PlainService(_Strict):
    name: str
    ingress: Literal["all", "internal", "internal-and-cloud-load-balancing"]
    min_instances: int = Field(ge=0)
    max_instances: int = Field(ge=1)
    concurrency: int = Field(ge=1, le=1000)
    timeout_seconds: int = Field(ge=1, le=3600)
    cpu: str
    memory: str


class Services(_Strict):
    judge: JudgeService
    management: PlainService
    subscriber: PlainService


class DeployConfig(_Strict):
    project: str
    region: str
    artifact_repository: str
    images: Images
    model: Model
    engine: Engine
    network: Network
    database: Database
    redis: Redis
    pubsub: PubSub
    buckets: Buckets
    secrets: Secrets
    service_accounts: ServiceAccounts
    github: GitHub
    services: Services

    @field_validator("region")
    @classmethod
    def _l4_region(cls, v: str) -> str:
        if v not in L4_REGIONS:
            raise ValueError(f"region {v!r} has no Cloud Run L4 GPUs (use one of {sorted(L4_REGIONS)})")
        return v

    # Derived names, shared by the renderer, the docs and the tests.
    def sa_email(self, role: str) -> str:
        return f"{getattr(self.service_accounts, role)}@{self.project}.iam.gserviceaccount.com"

    def db_user(self, role: str) -> str:
        """Cloud SQL IAM database user of a service account: its email without the domain suffix."""
        return self.sa_email(role).removesuffix(".gserviceaccount.com")

    def image_ref(self, kind: Literal["service", "inference"]) -> str:
        img: Image = getattr(self.images, kind)
        ref = f"{self.region}-docker.pkg.dev/{self.project}/{self.artifact_repository}/{img.name}:{img.tag}"
        return f"{ref}@{img.digest}" if img.digest else ref

    @property
    def cloudsql_connection_name(self) -> str:
        return f"{self.project}:{self.region}:{self.database.instance}"

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.pubsub.topic}"


def _coerce(text: str) -> Any:
    """A `--set` value parsed as YAML scalar (so 12 is an int, true a bool, "12" a string)."""
    return yaml.safe_load(text) if text else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to the raw config mapping; unknown keys are errors."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key.path=value")
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"--set {item!r}: no such key {key!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ValueError(f"--set {item!r}: no such key {key!r}")
        node[parts[-1]] = _coerce(raw)
    return data


def load_config(path: Path, overrides: list[str] | None = None) -> DeployConfig:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return DeployConfig.model_validate(apply_overrides(data, list(overrides or [])))
