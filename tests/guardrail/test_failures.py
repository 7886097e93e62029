"""Failure behaviour with real services taken away mid-run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inference.launcher import LocalEngine
from tests.conftest import admin, app_client, make_settings
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.model


async def test_database_outage_serves_the_last_known_category_set(engine: LocalEngine, pg_database: str,
                                                                 tmp_path: Path) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    # TTL 0: every request goes to the database while it is there.
    settings = make_settings(tmp_path, inference_url=engine.url, database_url=url, config_cache_ttl_s=0)
    async with app_client(settings) as c:
        first = await c.post("/v1/judge", json={"text": "データベース停止前"})
        assert first.status_code == 200
        await proxy.cut()
        during = [await c.post("/v1/judge", json={"text": f"データベース停止中 {i}"}) for i in range(3)]
        assert [r.status_code for r in during] == [200, 200, 200], during[0].text
        assert [x["id"] for x in during[0].json()["categories"]] == [x["id"] for x in first.json()["categories"]]
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["database"].startswith("error")
        await proxy.restore()
        assert (await c.get("/readyz")).json()["status"] == "ready"
        # The judgements made during the outage were spooled and reach the log once it is back.
        tid = (await c.get("/admin/v1/tenants", headers=admin())).json()["items"][0]["id"]
        want = {r.json()["id"] for r in [first, *during]}
        for _ in range(100):
            items = (await c.get(f"/admin/v1/tenants/{tid}/judgements", headers=admin())).json()["items"]
            if want <= {j["id"] for j in items}:
                break
            await asyncio.sleep(0.1)
        assert want <= {j["id"] for j in items}
    await proxy.cut()
