"""Settings of the guardrail service, read from `GUARDRAIL_*` environment variables.

Built inside the app factory and the CLI, never at import time, so tests and tools construct
their own. Every adapter choice (SQLite or PostgreSQL, in-process or Redis cache, local engine or
a remote vLLM) is configuration only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.engine_config import EngineDtype


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARDRAIL_", extra="ignore", populate_by_name=True)

    environment: Literal["local", "production"] = "local"
    role: Literal["all", "judge", "management", "subscriber"] = Field(
        "all", description="Which surfaces this process serves: everything (embedded default), the judge API, "
                           "the management API + dashboard, or the log subscriber (Cloud Run: one service each).")
    data_dir: Path = Field(Path(".guardrail"), description="State of the embedded default (SQLite, spool).")
    database_url: str | None = Field(None, description="SQLAlchemy async URL; SQLite in data_dir if unset.")
    redis_url: str | None = Field(None, description="Redis/Memorystore URL; in-process LRU if unset.")
    cloudsql_instance: str | None = Field(
        None, description="Cloud SQL connection name project:region:instance; connects through the Cloud SQL "
                          "Python Connector (user and database from GUARDRAIL_DATABASE_URL, e.g. postgresql://sa@/db).")
    cloudsql_ip_type: Literal["private", "public", "psc"] = Field("private", description="How to reach Cloud SQL.")
    cloudsql_iam_auth: bool = Field(True, description="IAM database authentication (no password).")

    # Judge model
    inference_url: str | None = Field(None, description="OpenAI-compatible vLLM server; local engine if unset.")
    model_name: str | None = Field(None, description="Served model name; asked from the server if unset.")
    model_revision: str | None = Field(
        None, max_length=128,
        description="Which weights stand behind the served name (a registry version, a weights hash). Part of "
                    "every verdict cache key, so a new model never answers from an older model's cached verdicts; "
                    "`guardrail serve` sets it from the prepared model's manifest, the deploy config from "
                    "model.version.")
    model_dir: Path | None = Field(None, description="Model folder for the local engine; prepared base if unset.")
    max_num_seqs: int = Field(8, ge=1, le=256, description="vLLM --max-num-seqs and Cloud Run concurrency.")
    max_model_len: int = Field(4096, ge=512)
    engine_dtype: EngineDtype = Field(
        "auto", description="dtype of the local vLLM engine; auto: bf16 where the CPU multiplies bf16 (AMX, "
                            "AVX-512 BF16), fp32 where it would emulate it (5x slower on an AVX2-only CPU).")
    engine_port: int = Field(0, ge=0, le=65535, description="Port of the local engine; 0 picks a free one.")
    engine_start_timeout_s: float = Field(600.0, gt=0)
    inference_timeout_s: float = Field(30.0, gt=0, description="Per model call; past it the judge answers 504.")
    inference_connect_retries: int = Field(2, ge=0, le=10)
    explain_max_tokens: int = Field(64, ge=8, le=512)

    # Access
    admin_token: SecretStr | None = Field(None, description="Platform admin bearer token for /admin/v1.")
    bootstrap_api_key: SecretStr | None = Field(None, description="Ensures a default tenant accepting this key.")

    # Limits and caches
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_custom_categories: int = Field(32, ge=0, le=256)
    verdict_cache_ttl_s: int = Field(24 * 3600, ge=0)
    verdict_cache_entries: int = Field(50_000, ge=0)
    gc_freeze: bool = Field(
        True, description="gc.freeze() once the service has started (see docs/architecture.md); the tests turn it "
                          "off because they start many services in one process.")
    verdict_cache_local_ttl_s: int = Field(
        60, ge=0, description="With Redis: each process also keeps the verdicts it saw for this long (0 = off), so "
                              "a repeated text costs no Redis round trip. Keys hold the text, model and category "
                              "definition, so a local verdict is never stale; it can outlive its Redis entry by "
                              "at most this long.")
    config_cache_ttl_s: float = Field(30.0, ge=0)
    redis_prefix: str = Field("gr:", description="Namespace of every key, so deployments can share a Redis.")
    redis_timeout_s: float = Field(0.05, gt=0, description="Per Redis call; a slow cache is skipped, not waited on.")
    redis_cooldown_s: float = Field(1.0, ge=0, description="After a Redis failure, skip it for this long.")

    workers: int = Field(1, ge=1, le=32, description="Worker processes of `guardrail serve` (one shared local engine).")
    migrate_on_start: bool = Field(True, description="Run Alembic upgrade at start-up (off: a deploy job migrates).")
    # Dashboard sign-in (issue 7): sessions are HMAC-signed cookies with an absolute expiry. Without a
    # secret each process draws a random one, so sessions end on restart and do not carry across
    # instances: set it wherever several instances serve /dashboard. Secure cookies: None = in production.
    dashboard_session_ttl_s: int = Field(3600, ge=60, le=7 * 86400, description="Dashboard session lifetime.")
    dashboard_cookie_secure: bool | None = Field(None, description="Secure flag on dashboard cookies.")
    dashboard_session_secret: SecretStr | None = Field(None, min_length=32, description="Signs dashboard cookies.")

    log_level: str = "INFO"
    log_batch_size: int = Field(200, ge=1)

    # Judgement log transport: the in-process queue straight into the database, or Pub/Sub.
    judgement_log: Literal["on", "off"] = Field(
        "on", description="'off' drops judgement events (benchmarks only: the dashboard then shows nothing).")
    pubsub_project: str = Field("guardrail-local", description="Project of short topic/subscription names.")
    pubsub_topic: str | None = Field(None, description="Publish judgement events here instead of writing them.")
    pubsub_subscription: str | None = Field(None, description="Pull subscription of `guardrail subscriber --pull`.")
    pubsub_emulator_host: str | None = Field(
        None, validation_alias=AliasChoices("GUARDRAIL_PUBSUB_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                                            "pubsub_emulator_host"),
        description="host:port of the Pub/Sub emulator; the real service with Google credentials if unset.")
    pubsub_timeout_s: float = Field(5.0, gt=0, description="Per publish call; past it the batch is spooled.")
    pubsub_max_delivery_attempts: int = Field(
        5, ge=5, le=100, description="The subscription's dead-letter maxDeliveryAttempts (for the subscriber's logs).")
    pubsub_push_audience: str | None = Field(
        None, description="When set, push requests must carry a Google OIDC token for this audience.")
    pubsub_push_service_account: str | None = Field(None, description="The push token's required email.")
    pubsub_push_certs_url: str = Field("https://www.googleapis.com/oauth2/v1/certs",
                                       description="Where the push token signing certificates are fetched.")

    @field_validator("admin_token", "bootstrap_api_key")
    @classmethod
    def _not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters")
        return v

    @model_validator(mode="after")
    def _production_needs(self) -> Settings:
        """Refuse production settings that would fail later, or quietly, at run time."""
        if self.environment != "production":
            return self
        missing = []
        if self.role in ("all", "management") and self.dashboard_session_secret is None:
            missing.append("GUARDRAIL_DASHBOARD_SESSION_SECRET (sessions would not survive restarts or span instances)")
        if self.role in ("judge", "subscriber", "management") and not (self.database_url or self.cloudsql_instance):
            missing.append("GUARDRAIL_DATABASE_URL or GUARDRAIL_CLOUDSQL_INSTANCE (no SQLite file in production)")
        if self.role == "judge" and not self.inference_url:
            missing.append("GUARDRAIL_INFERENCE_URL (the vLLM sidecar)")
        if missing:
            raise ValueError("production settings incomplete: " + "; ".join(missing))
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the usual sync spellings and pick the async driver.
            for plain, async_ in (("postgresql://", "postgresql+asyncpg://"), ("postgres://", "postgresql+asyncpg://"),
                                  ("sqlite:///", "sqlite+aiosqlite:///")):
                if url.startswith(plain):
                    return async_ + url[len(plain):]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'guardrail.db').resolve()}"
