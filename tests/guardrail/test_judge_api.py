"""POST /v1/judge end to end with the real vLLM CPU server and the real Gemma weights."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from guardrail.categories.defaults import DEFAULT_IDS
from inference.launcher import LocalEngine
from tests.conftest import admin, app_client, make_settings, tenant_id

pytestmark = pytest.mark.model

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
THREAT = "あいつの家に火をつけてやる。灯油はどれくらい必要？"
BENIGN = "今日は天気がいいので散歩に行きます。"


def scores(body: dict) -> dict[str, float]:
    return {c["id"]: c["score"] for c in body["categories"]}


async def test_scores_are_probabilities_that_depend_on_the_text(client: httpx.AsyncClient) -> None:
    a = await client.post("/v1/judge", json={"text": THREAT})
    b = await client.post("/v1/judge", json={"text": BENIGN})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    ja, jb = a.json(), b.json()
    assert set(scores(ja)) == DEFAULT_IDS
    for body in (ja, jb):
        assert body["id"].startswith("jdg_") and body["model"] == "gemma-3-270m-base"
        assert body["cached"] is False and body["latency_ms"] > 0 and body["reason"] is None
        for c in body["categories"]:
            assert 0.0 <= c["score"] <= 1.0
            assert c["flagged"] == (c["score"] >= c["threshold"])
        assert body["flagged"] == any(c["flagged"] for c in body["categories"])
    assert scores(ja) != scores(jb)


async def test_identical_input_gives_identical_scores_without_the_cache(engine: LocalEngine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inference_url=engine.url, verdict_cache_ttl_s=0)
    async with app_client(settings) as c:
        first = await c.post("/v1/judge", json={"text": THREAT})
        second = await c.post("/v1/judge", json={"text": THREAT})
        third = await c.post("/v1/judge", json={"text": THREAT})
        # The CPU engine is not bit-invariant in bf16: a prefix computed fresh (the first call) and one
        # read from vLLM's prefix cache, or copies batched differently, agree to ~0.015 (seen in CI),
        # far below a threshold step. (The verdict cache makes repeated texts identical by default.)
        again = await asyncio.gather(*[c.post("/v1/judge", json={"text": THREAT}) for _ in range(3)])
    assert all(r.json()["cached"] is False for r in [first, second, third, *again])
    assert all(scores(r.json()) == pytest.approx(scores(second.json()), abs=0.03) for r in [first, third, *again])


async def test_a_repeated_judgement_is_served_from_the_cache(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/judge", json={"text": BENIGN})).json()
    second = (await client.post("/v1/judge", json={"text": BENIGN})).json()
    assert first["cached"] is False and second["cached"] is True
    assert scores(first) == scores(second)


async def test_output_direction_judges_the_answer_in_the_context_of_the_prompt(client: httpx.AsyncClient) -> None:
    answer = "はい、手順を詳しく説明します。まず材料を用意してください。"
    a = await client.post("/v1/judge", json={"text": answer, "direction": "output",
                                             "prompt": "爆弾の作り方を教えて"})
    b = await client.post("/v1/judge", json={"text": answer, "direction": "output",
                                             "prompt": "カレーの作り方を教えて"})
    c = await client.post("/v1/judge", json={"text": answer, "direction": "input"})
    assert {a.status_code, b.status_code, c.status_code} == {200}
    assert a.json()["direction"] == "output"
    assert scores(a.json()) != scores(b.json())
    assert scores(a.json()) != scores(c.json())


async def test_explain_adds_a_japanese_reason(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/judge", json={"text": THREAT, "explain": True})
    assert r.status_code == 200
    reason = r.json()["reason"]
    assert isinstance(reason, str) and JAPANESE.search(reason), reason


async def test_a_category_subset_judges_only_those(client: httpx.AsyncClient) -> None:
    full = (await client.post("/v1/judge", json={"text": THREAT})).json()
    r = await client.post("/v1/judge", json={"text": THREAT, "categories": ["violence", "privacy"]})
    assert r.status_code == 200
    body = r.json()
    assert [c["id"] for c in body["categories"]] == ["violence", "privacy"]
    assert scores(body) == {k: scores(full)[k] for k in ("violence", "privacy")}


async def test_every_judgement_reaches_the_judgement_log(client: httpx.AsyncClient) -> None:
    ids = [(await client.post("/v1/judge", json={"text": f"ログ確認 {i} 番目"})).json()["id"] for i in range(3)]
    tid = await tenant_id(client)
    for _ in range(50):
        r = await client.get(f"/admin/v1/tenants/{tid}/judgements?limit=10", headers=admin())
        logged = {j["id"]: j for j in r.json()["items"]}
        if set(ids) <= set(logged):
            break
        await asyncio.sleep(0.1)
    assert set(ids) <= set(logged)
    row = logged[ids[0]]
    assert row["text"] == "ログ確認 0 番目" and row["direction"] == "input"
    assert set(row["scores"]) == DEFAULT_IDS and row["model"] == "gemma-3-270m-base"


async def test_openai_compatible_moderations(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/moderations", json={"input": [THREAT, BENIGN], "model": "omni-moderation-latest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("modr-") and len(body["results"]) == 2
    res = body["results"][0]
    assert set(res["categories"]) == DEFAULT_IDS == set(res["category_scores"])
    assert all(0 <= v <= 1 for v in res["category_scores"].values())
