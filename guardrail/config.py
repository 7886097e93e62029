"""Settings of the guardrail service, read from `GUARDRAIL_*` environment variables.

Built inside the app factory and the CLI, never at import time, so tests and tools construct
their own. Every adapter choice (SQLite or PostgreSQL, in-process or Redis cache, local engine or
a remote vLLM) is configuration only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARDRAIL_", extra="ignore")

    environment: Literal["local", "production"] = "local"
    data_dir: Path = Field(Path(".guardrail"), description="State of the embedded default (SQLite, spool).")
    database_url: str | None = Field(None, description="SQLAlchemy async URL; SQLite in data_dir if unset.")
    redis_url: str | None = Field(None, description="Redis/Memorystore URL; in-process LRU if unset.")

    # Judge model
    inference_url: str | None = Field(None, description="OpenAI-compatible vLLM server; local engine if unset.")
    model_name: str | None = Field(None, description="Served model name; asked from the server if unset.")
    model_dir: Path | None = Field(None, description="Model folder for the local engine; prepared base if unset.")
    max_num_seqs: int = Field(8, ge=1, le=256, description="vLLM --max-num-seqs and Cloud Run concurrency.")
    max_model_len: int = Field(4096, ge=512)
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
    config_cache_ttl_s: float = Field(30.0, ge=0)
    redis_prefix: str = Field("gr:", description="Namespace of every key, so deployments can share a Redis.")
    redis_timeout_s: float = Field(0.05, gt=0, description="Per Redis call; a slow cache is skipped, not waited on.")
    redis_cooldown_s: float = Field(1.0, ge=0, description="After a Redis failure, skip it for this long.")

    log_level: str = "INFO"
    log_batch_size: int = Field(200, ge=1)

    @field_validator("admin_token", "bootstrap_api_key")
    @classmethod
    def _not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters")
        return v

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
