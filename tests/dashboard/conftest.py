"""Dashboard fixtures: a real server on a port (uvicorn, PostgreSQL, Redis, the real engine) and headless Chromium.

Chromium is Debian's: the `chromium` fixture runs `scripts/browser.sh`, which installs it (and the CJK
font the screenshots need) when missing; Playwright is pointed at that binary. Nothing here skips: a
missing browser, database or engine fails the tests with the reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from guardrail.app import create_app
from guardrail.config import Settings
from inference.launcher import LocalEngine, free_port
from tests.conftest import ADMIN, API_KEY, make_settings

CHROMIUM = os.environ.get("GUARDRAIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
SESSION_SECRET = "dashboard-test-secret-0123456789abcdef"


class LiveServer:
    """The whole service (`create_app`) served by uvicorn on a free port, in a thread with its own loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard-live-server", daemon=True)

    def start(self, timeout_s: float = 180.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard test server did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="session")
def dash_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the dashboard tests (the app migrates it on start)."""
    from tests.guardrail.pg import create_database, drop_database

    name, url = create_database("gr_dash")
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def live(engine: LocalEngine, dash_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("dash"), inference_url=engine.url, database_url=dash_database,
                             redis_url="redis://127.0.0.1:6379/0",
                             dashboard_session_secret=SESSION_SECRET, dashboard_session_ttl_s=900)
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@dataclass
class Tenant:
    id: str
    name: str
    admin_key: str  # gra-…, signs in to the dashboard
    judge_key: str  # gr-…, calls /v1/judge


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client of the live server (platform admin headers by default)."""
    async with httpx.AsyncClient(base_url=live.url, timeout=120,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


async def settled(http: httpx.AsyncClient, path: str, ready: Any = lambda body: True, timeout_s: float = 10.0
                  ) -> None:
    """Wait until a GET shows what a write just made.

    The management API's request session commits *after* the response has been sent (FastAPI runs a
    yield dependency's exit then), so over real HTTP a created object can be missing for a moment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        r = await http.get(path)
        if r.status_code == 200 and ready(r.json()):
            return
        assert time.monotonic() < deadline, f"GET {path} never showed the write: {r.status_code} {r.text}"
        await asyncio.sleep(0.05)


async def new_tenant(http: httpx.AsyncClient, name: str | None = None) -> Tenant:
    """A tenant of its own for one test (tests share the server, never a tenant)."""
    name = name or f"テスト商事-{uuid.uuid4().hex[:6]}"
    r = await http.post("/admin/v1/tenants", json={"name": name})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    await settled(http, f"/admin/v1/tenants/{tid}")
    adm = await http.post(f"/admin/v1/tenants/{tid}/api-keys", json={"kind": "admin", "name": "dashboard"})
    jdg = await http.post(f"/admin/v1/tenants/{tid}/api-keys", json={"kind": "judge", "name": "app"})
    assert adm.status_code == 201 and jdg.status_code == 201, (adm.text, jdg.text)
    await settled(http, f"/admin/v1/tenants/{tid}/api-keys", lambda body: len(body["items"]) == 2)
    return Tenant(tid, name, adm.json()["key"], jdg.json()["key"])


@pytest.fixture
async def tenant(http: httpx.AsyncClient) -> Tenant:
    return await new_tenant(http)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium and the CJK font, installed by scripts/browser.sh when missing (idempotent, ≈1 s if not)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "browser.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "GUARDRAIL_CHROMIUM": CHROMIUM})
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.fail(f"scripts/browser.sh failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        await b.close()


class PageErrors(list[str]):
    """Uncaught script errors and CSP violations seen by a page; a test fails if any occur."""


@pytest.fixture
async def page(browser: Any, live: LiveServer, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    context = await browser.new_context(locale="ja-JP", timezone_id="Asia/Tokyo", base_url=live.url,
                                        viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = await context.new_page()
    errors = PageErrors()
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console: {msg.text}")
          if msg.type == "error" and "Content Security Policy" in msg.text else None)
    pg.errors = errors
    pg.shot_prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:60]
    yield pg
    await context.close()
    assert not errors, errors


async def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{page.shot_prefix}-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


async def sign_in(page: Any, credential: str, tenant_id: str | None = None) -> None:
    from playwright.async_api import expect

    await page.goto("/dashboard")
    await page.get_by_test_id("credential").fill(credential)
    if tenant_id:
        await page.get_by_test_id("tenant-id").fill(tenant_id)
    await page.get_by_test_id("signin").click()
    await expect(page.get_by_test_id("kpi-judgements")).to_be_visible()


async def seed(live: LiveServer, rows: list[dict[str, Any]]) -> None:
    """Write judgement-log rows straight into the live server's database (as the log writer would)."""
    from sqlalchemy import insert

    from guardrail.db.models import Judgement
    from guardrail.db.session import make_engine

    engine = make_engine(live.settings.sqlalchemy_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Judgement), rows)
    finally:
        await engine.dispose()


def log_row(tenant_id: str, *, minutes_ago: float, text: str, flagged_categories: list[str] | tuple[str, ...] = (),
            direction: str = "input", latency_ms: float = 120.0, cached: bool = False, **extra: Any) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from guardrail.categories.defaults import DEFAULT_CATEGORIES

    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    fc = list(flagged_categories)
    return {"id": "jdg_" + uuid.uuid4().hex, "tenant_id": tenant_id, "api_key_id": None, "direction": direction,
            "flagged": bool(fc), "flagged_categories": fc,
            "scores": {c.id: {"score": 0.91 if c.id in fc else 0.12, "threshold": 0.5, "flagged": c.id in fc,
                              "name": c.name} for c in DEFAULT_CATEGORIES},
            "model": "gemma-3-270m-base", "latency_ms": latency_ms, "cached": cached, "text": text, "prompt": None,
            "text_sha256": "0" * 64, "text_mode": "full", "reason": None, "created_at": created,
            "logged_at": created, **extra}


async def logged(http: httpx.AsyncClient, tenant_id: str, judgement_id: str, timeout_s: float = 20.0
                 ) -> dict[str, Any]:
    """Wait until a judgement made through /v1/judge is in the log (the writer is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = await http.get(f"/admin/v1/tenants/{tenant_id}/judgements/{judgement_id}")
        if r.status_code == 200:
            row: dict[str, Any] = r.json()
            return row
        assert time.monotonic() < deadline, f"{judgement_id} never reached the log: {r.text}"
        await asyncio.sleep(0.2)


async def judge(live: LiveServer, key: str, text: str, **body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url, timeout=120) as c:
        r = await c.post("/v1/judge", json={"text": text, **body}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


__all__ = ["API_KEY", "Tenant", "judge", "log_row", "logged", "new_tenant", "seed", "shot", "sign_in"]
