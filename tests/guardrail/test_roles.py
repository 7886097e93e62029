"""One image, four roles: what each Cloud Run service serves, chosen by settings alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from google.auth.exceptions import DefaultCredentialsError
from pydantic import ValidationError

from guardrail.app import create_app
from guardrail.config import Settings
from guardrail.db.session import DatabaseConfigError, cloudsql_target, open_database
from guardrail.errors import ModelUnavailable
from inference.contract import CategorySpec
from inference.launcher import LocalEngine
from tests.conftest import admin, app_client, make_settings
from tests.http_wait import wait_http
from tests.pubsub_emulator import free_port


async def test_judge_role_serves_only_the_judge(engine: LocalEngine, tmp_path: Path) -> None:
    async with app_client(make_settings(tmp_path, inference_url=engine.url, role="judge")) as c:
        r = await c.post("/v1/judge", json={"text": "こんにちは", "categories": ["violence"]})
        assert r.status_code == 200, r.text
        assert (await c.get("/admin/v1/tenants", headers=admin())).status_code == 404
        assert (await c.get("/dashboard")).status_code == 404
        assert (await c.get("/readyz")).json()["status"] == "ready"


async def test_management_role_runs_without_a_model(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, role="management"))
    async with LifespanManager(app) as mgr, httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app),
                                                              base_url="http://m.test") as c:
        ready = (await c.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["checks"]["model"] == "not used"
        assert (await c.get("/admin/v1/tenants", headers=admin())).status_code == 200
        assert (await c.post("/v1/judge", json={"text": "こんにちは"})).status_code == 404
        assert (await c.get("/dashboard")).status_code == 200
        # The playground needs a model: it answers 503, not a crash.
        with pytest.raises(ModelUnavailable, match="GUARDRAIL_INFERENCE_URL"):
            await app.state.services.judge.score_specs(["テスト"], [CategorySpec("x", "テスト", "テストの定義")])


def test_serve_with_the_subscriber_role_runs_the_push_endpoint(pg_database: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GUARDRAIL_ROLE": "subscriber", "GUARDRAIL_DATABASE_URL": pg_database,
           "GUARDRAIL_DATA_DIR": str(tmp_path)}
    exe = Path(sys.executable).with_name("guardrail")
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", timeout_s=30, proc=proc, log_path=log)
        r = httpx.post(f"{base}/pubsub/push", json={"message": {"data": "@@", "messageId": "1"}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "poison_message"
        assert httpx.get(f"{base}/v1/judge").status_code == 404
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert "engine" not in log.read_text().lower()  # no local model engine for the subscriber


async def test_cloudsql_settings_select_the_connector(tmp_path: Path) -> None:
    assert cloudsql_target("postgresql://guardrail-judge@/guardrail") == ("guardrail-judge", None, "guardrail")
    with pytest.raises(DatabaseConfigError):
        cloudsql_target("postgresql:///guardrail")
    s = make_settings(tmp_path, cloudsql_instance="proj:asia-southeast1:guardrail",
                      database_url="postgresql://guardrail-judge@/guardrail", cloudsql_ip_type="private")
    # No Google credentials on this machine: reaching for them proves the connector path was taken
    # (a plain URL engine would have been built without asking).
    with pytest.raises(DefaultCredentialsError):
        await open_database(s)


def test_production_settings_refuse_what_would_fail_later() -> None:
    with pytest.raises(ValidationError, match="GUARDRAIL_DASHBOARD_SESSION_SECRET"):
        Settings(environment="production", role="management", database_url="postgresql://u@h/db")
    with pytest.raises(ValidationError, match="GUARDRAIL_INFERENCE_URL"):
        Settings(environment="production", role="judge", database_url="postgresql://u@h/db")
    with pytest.raises(ValidationError, match="GUARDRAIL_DATABASE_URL or GUARDRAIL_CLOUDSQL_INSTANCE"):
        Settings(environment="production", role="subscriber")
    ok = Settings(environment="production", role="subscriber", cloudsql_instance="p:r:i",
                  database_url="postgresql://sa@/guardrail")
    assert ok.role == "subscriber"
