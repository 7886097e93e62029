"""Verdict and configuration caching on the real Redis (127.0.0.1:6379), and its outages."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from guardrail.adapters.memory import TieredVerdictCache
from guardrail.adapters.redis import RedisBreaker, RedisContextCache, RedisVerdictCache
from guardrail.ports import CacheUnavailable
from guardrail.tenants.context import CategoryConf, TenantContext
from inference.launcher import LocalEngine
from tests.conftest import admin, app_client, make_settings, tenant_id
from tests.tcp_proxy import TcpProxy

REDIS = "redis://127.0.0.1:6379/0"


async def test_verdict_cache_hits_misses_and_ttl() -> None:
    b = RedisBreaker(REDIS)
    cache = RedisVerdictCache(b, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        assert await cache.get_many(["a", "b"]) == {}
        await cache.set_many({"a": 0.25, "b": 0.75}, ttl_s=1)
        assert await cache.get_many(["a", "b", "c"]) == {"a": 0.25, "b": 0.75}
        ttl = await b.client.ttl(cache._prefix + "a")
        assert 0 < ttl <= 1
        await asyncio.sleep(1.3)
        assert await cache.get_many(["a", "b"]) == {}
    finally:
        await b.aclose()


async def test_local_tier_spares_round_trips_and_outlives_redis_only_briefly() -> None:
    """The process-local layer in front of Redis: copies what Redis has, keeps it at most local_ttl_s."""
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    prefix = f"test:{uuid.uuid4().hex}:"
    b, other_b = RedisBreaker(f"redis://127.0.0.1:{proxy.port}/0", cooldown_s=0.0), RedisBreaker(REDIS)
    tiered = TieredVerdictCache(RedisVerdictCache(b, prefix=prefix), local_ttl_s=1, max_entries=100)
    other = TieredVerdictCache(RedisVerdictCache(other_b, prefix=prefix), local_ttl_s=60, max_entries=100)
    try:
        await other.set_many({"a": 0.25, "b": 0.75}, ttl_s=60)  # written by another process
        assert await other_b.client.ttl(prefix + "a") > 50  # Redis keeps the verdict TTL, not the local one
        assert await tiered.get_many(["a", "c"]) == {"a": 0.25}  # from Redis, now copied locally
        await proxy.cut()
        # Redis unreachable: what this process holds still serves; what it lacks is a cache failure.
        assert await tiered.get_many(["a", "b"]) == {"a": 0.25}
        with pytest.raises(CacheUnavailable):
            await tiered.get_many(["b"])
        await asyncio.sleep(1.2)  # past local_ttl_s: the local copy is gone, nothing is served
        with pytest.raises(CacheUnavailable):
            await tiered.get_many(["a"])
        await proxy.restore()
        assert await tiered.get_many(["a", "b"]) == {"a": 0.25, "b": 0.75}
        await other_b.client.delete(prefix + "a", prefix + "b")
        assert await tiered.get_many(["a", "b"]) == {"a": 0.25, "b": 0.75}  # local copies, no round trip
    finally:
        await proxy.cut()
        await b.aclose()
        await other_b.aclose()


async def _engine_sequences(engine: LocalEngine) -> float:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{engine.url}/metrics")).text
    return sum(float(m) for m in re.findall(r'^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)', text, re.M))


@pytest.mark.model
async def test_cached_judgements_edits_and_coalescing(engine: LocalEngine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inference_url=engine.url, redis_url=REDIS)
    async with app_client(settings) as c:
        tid = await tenant_id(c)
        text = f"キャッシュ確認 {uuid.uuid4().hex[:6]}"
        first = (await c.post("/v1/judge", json={"text": text})).json()
        second = (await c.post("/v1/judge", json={"text": text})).json()
        assert (first["cached"], second["cached"]) == (False, True)
        assert first["categories"] == second["categories"]

        # A threshold edit reaches the very next judgement (config cache invalidated) ...
        r = await c.patch(f"/admin/v1/tenants/{tid}/categories/violence", json={"threshold": 0.01}, headers=admin())
        assert r.status_code == 200
        third = (await c.post("/v1/judge", json={"text": text})).json()
        v = next(x for x in third["categories"] if x["id"] == "violence")
        assert v["threshold"] == 0.01 and v["flagged"] is True and third["cached"] is True
        # ... and a definition edit is never answered from a stale verdict.
        r = await c.patch(f"/admin/v1/tenants/{tid}/categories/violence",
                          json={"definition": "人を傷つける行為の予告や具体的な手順。"}, headers=admin())
        fourth = (await c.post("/v1/judge", json={"text": text})).json()
        assert fourth["cached"] is False

        # Many identical concurrent judgements cost one model call (8 sequences, one per category).
        before = await _engine_sequences(engine)
        same = {"text": f"同時リクエスト {uuid.uuid4().hex[:6]}"}
        rs = await asyncio.gather(*[c.post("/v1/judge", json=same) for _ in range(12)])
        assert all(r.status_code == 200 for r in rs)
        assert len({tuple(x["score"] for x in r.json()["categories"]) for r in rs}) == 1
        assert await _engine_sequences(engine) - before == 8


async def test_an_edit_on_one_instance_invalidates_the_others() -> None:
    """Two instances' context caches over one Redis: an invalidation by one is seen by the other."""
    prefix = f"test:{uuid.uuid4().hex}:ctx:"
    ba, bb = RedisBreaker(REDIS), RedisBreaker(REDIS)
    a, b = RedisContextCache(ba, 300, prefix=prefix), RedisContextCache(bb, 300, prefix=prefix)
    cats = (CategoryConf("privacy", "個人情報", "定義", 0.5, True),)
    ctx = TenantContext("t1", "k1", "closed", True, "full", 3, cats)
    try:
        await a.put("hash-1", ctx)
        assert await b.fresh("hash-1") == ctx  # shared: b never loaded it itself
        await b.invalidate_tenant("t1")
        assert await a.fresh("hash-1") is None and await b.fresh("hash-1") is None
        assert a.last_known("hash-1") == ctx  # still there for a database outage
        await a.put("hash-1", ctx)
        await b.forget_key_id("k1", "t1")  # revocation
        assert await a.fresh("hash-1") is None and b.last_known("hash-1") is None
    finally:
        await ba.aclose()
        await bb.aclose()


@pytest.mark.model
async def test_redis_outage_fails_no_request_and_caching_resumes(engine: LocalEngine, tmp_path: Path) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.start()
    # Without the process-local layer, which would keep serving these texts through the outage
    # (test_local_tier_spares_round_trips_and_outlives_redis_only_briefly covers that layer).
    settings = make_settings(tmp_path, inference_url=engine.url, redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                             redis_cooldown_s=0.3, verdict_cache_local_ttl_s=0)
    texts = [f"障害試験 {i} {uuid.uuid4().hex[:4]}" for i in range(3)]
    statuses: list[int] = []
    async with app_client(settings) as c:
        for t in texts:
            statuses.append((await c.post("/v1/judge", json={"text": t, "categories": ["violence"]})).status_code)
        await proxy.cut()
        cached_during = []
        for i in range(12):
            r = await c.post("/v1/judge", json={"text": texts[i % 3], "categories": ["violence"]})
            statuses.append(r.status_code)
            cached_during.append(r.json().get("cached"))
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"] != "ok"
        metrics = (await c.get("/metrics")).text
        await proxy.restore()
        await asyncio.sleep(0.5)  # past the breaker's cool-down
        after = [await c.post("/v1/judge", json={"text": t, "categories": ["violence"]}) for t in texts]
        statuses += [r.status_code for r in after]
        assert (await c.get("/readyz")).json()["status"] == "ready"
    await proxy.cut()
    assert statuses == [200] * len(statuses)  # zero failed requests
    assert not any(cached_during)  # served uncached while Redis was away
    assert re.search(r"^guardrail_cache_errors_total [1-9]", metrics, re.M)
    assert all(r.json()["cached"] for r in after)  # the entries written before the outage serve again


async def test_slow_redis_is_skipped_not_waited_on(engine: LocalEngine, tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(tmp_path, inference_url=engine.url, redis_url=f"redis://127.0.0.1:{port}/0")
    try:
        async with app_client(settings) as c:
            r = await c.post("/v1/judge", json={"text": "遅いキャッシュ", "categories": ["violence"]})
            assert r.status_code == 200 and r.json()["cached"] is False
    finally:
        server.close()


def test_redis_client_is_real() -> None:
    async def go() -> bool:
        r = aioredis.Redis.from_url(REDIS)
        try:
            return bool(await r.ping())
        finally:
            await r.aclose()

    assert asyncio.run(go())


async def test_a_new_model_revision_never_answers_from_the_old_ones_verdicts(engine: LocalEngine,
                                                                             tmp_path: Path) -> None:
    # One database and one Redis namespace, restarted with other weights behind the same served name.
    settings = make_settings(tmp_path, inference_url=engine.url, redis_url=REDIS, model_revision="v1")
    text = {"text": f"モデル更新の確認 {uuid.uuid4().hex[:6]}"}
    cached = []
    for revision in ("v1", "v1", "v2", "v1"):
        async with app_client(settings.model_copy(update={"model_revision": revision})) as c:
            cached.append((await c.post("/v1/judge", json=text)).json()["cached"])
    assert cached == [False, True, False, True]
