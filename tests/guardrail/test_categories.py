"""Tenants, API keys and customer-defined categories on the real PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import admin, tenant_id
from tests.guardrail.test_judge_errors import assert_envelope

INVEST = {"id": "investment_advice", "name": "投資助言",
          "definition": "特定の金融商品（株式・投資信託・暗号資産など）の購入や売却を、具体的に勧める発言。"}
TEXT = "その投資信託はすぐに解約して、米国株に乗り換えるのがおすすめです。"


def scores(body: dict[str, Any]) -> dict[str, float]:
    return {c["id"]: c["score"] for c in body["categories"]}


async def test_category_crud_versions_and_audit(pg_client: httpx.AsyncClient) -> None:
    c, tid = pg_client, await tenant_id(pg_client)
    base = f"/admin/v1/tenants/{tid}/categories"
    listed = (await c.get(base, headers=admin())).json()
    assert len(listed["items"]) == 8 and all(i["default"] for i in listed["items"])
    v0 = listed["version"]

    r = await c.post(base, json={**INVEST, "threshold": 0.7, "examples": {"positive": ["A社株を今すぐ買え"]}},
                     headers=admin())
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "投資助言" and r.json()["default"] is False and r.json()["threshold"] == 0.7
    r = await c.patch(f"{base}/investment_advice", json={"definition": "具体的な銘柄の売買を勧める発言。"},
                      headers=admin())
    assert r.status_code == 200 and r.json()["definition"] == "具体的な銘柄の売買を勧める発言。"
    r = await c.patch(f"{base}/violence", json={"threshold": 0.8, "enabled": False}, headers=admin())
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert (await c.get(base, headers=admin())).json()["version"] == v0 + 2 + 1  # create, patch, patch

    assert (await c.delete(f"{base}/investment_advice", headers=admin())).status_code == 204
    assert_envelope(await c.get(f"{base}/investment_advice", headers=admin()), 404, "category_not_found")
    assert_envelope(await c.delete(f"{base}/violence", headers=admin()), 422, "default_category")

    audit = (await c.get(f"/admin/v1/tenants/{tid}/audit", headers=admin())).json()["items"]
    actions = [a["action"] for a in audit]
    assert actions[:4] == ["category.delete", "category.update", "category.update", "category.create"]
    upd = audit[2]
    assert upd["actor"] == "platform-admin" and upd["target"] == "investment_advice"
    assert upd["before"]["definition"] == INVEST["definition"]
    assert upd["after"]["definition"] == "具体的な銘柄の売買を勧める発言。"


@pytest.mark.parametrize(("body", "code", "param"), [
    ({**INVEST, "id": "Bad-Slug"}, "invalid_value", "id"),
    ({**INVEST, "id": "x"}, "invalid_value", "id"),
    ({**INVEST, "threshold": 1.5}, "invalid_value", "threshold"),
    ({**INVEST, "threshold": -0.1}, "invalid_value", "threshold"),
    ({**INVEST, "name": ""}, "invalid_value", "name"),
    ({**INVEST, "name": "名" * 101}, "invalid_value", "name"),
    ({**INVEST, "definition": "短い"}, "invalid_value", "definition"),
    ({**INVEST, "definition": "長" * 1001}, "invalid_value", "definition"),
    ({"id": "x_y", "name": "n"}, "missing_field", "definition"),
])
async def test_category_validation(pg_client: httpx.AsyncClient, body: dict[str, Any], code: str, param: str) -> None:
    tid = await tenant_id(pg_client)
    r = await pg_client.post(f"/admin/v1/tenants/{tid}/categories", json=body, headers=admin())
    assert_envelope(r, 422, code, param)


async def test_duplicates_and_the_custom_category_limit(pg_client: httpx.AsyncClient) -> None:
    c, tid = pg_client, await tenant_id(pg_client)
    base = f"/admin/v1/tenants/{tid}/categories"
    assert (await c.post(base, json=INVEST, headers=admin())).status_code == 201
    assert_envelope(await c.post(base, json=INVEST, headers=admin()), 409, "category_exists")
    assert_envelope(await c.post(base, json={**INVEST, "id": "violence"}, headers=admin()), 409, "category_exists")
    for i in range(2):  # the fixture allows 3 custom categories
        assert (await c.post(base, json={**INVEST, "id": f"extra_{i}"}, headers=admin())).status_code == 201
    assert_envelope(await c.post(base, json={**INVEST, "id": "one_too_many"}, headers=admin()), 422,
                    "too_many_categories")


async def _tenant_with_keys(c: httpx.AsyncClient, name: str) -> tuple[str, str, str]:
    r = await c.post("/admin/v1/tenants", json={"name": name}, headers=admin())
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    judge = (await c.post(f"/admin/v1/tenants/{tid}/api-keys", json={"name": "app"}, headers=admin())).json()
    adm = (await c.post(f"/admin/v1/tenants/{tid}/api-keys", json={"kind": "admin"}, headers=admin())).json()
    assert judge["key"].startswith("gr-") and adm["key"].startswith("gra-")
    return tid, judge["key"], adm["key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_tenant_isolation(pg_client: httpx.AsyncClient) -> None:
    c = pg_client
    a_id, a_judge, a_admin = await _tenant_with_keys(c, "A銀行")
    b_id, b_judge, _ = await _tenant_with_keys(c, "B商事")
    b_key_id = (await c.get(f"/admin/v1/tenants/{b_id}/api-keys", headers=admin())).json()["items"][0]["id"]
    r = await c.post("/v1/judge", json={"text": "B社の秘密の判定", "categories": ["violence"]},
                     headers=bearer(b_judge))
    assert r.status_code == 200

    # A's tenant admin key sees only A ...
    listed = (await c.get("/admin/v1/tenants", headers=bearer(a_admin))).json()["items"]
    assert [t["id"] for t in listed] == [a_id]
    assert (await c.get(f"/admin/v1/tenants/{a_id}/categories", headers=bearer(a_admin))).status_code == 200
    # ... and every one of B's objects answers 404, never 403 or data.
    for method, path, body in [
        ("GET", f"/admin/v1/tenants/{b_id}", None),
        ("PATCH", f"/admin/v1/tenants/{b_id}", {"fail_mode": "open"}),
        ("GET", f"/admin/v1/tenants/{b_id}/categories", None),
        ("GET", f"/admin/v1/tenants/{b_id}/categories/violence", None),
        ("PATCH", f"/admin/v1/tenants/{b_id}/categories/violence", {"threshold": 0.9}),
        ("POST", f"/admin/v1/tenants/{b_id}/categories", INVEST),
        ("DELETE", f"/admin/v1/tenants/{b_id}/categories/violence", None),
        ("GET", f"/admin/v1/tenants/{b_id}/api-keys", None),
        ("POST", f"/admin/v1/tenants/{b_id}/api-keys", {"name": "x"}),
        ("DELETE", f"/admin/v1/tenants/{b_id}/api-keys/{b_key_id}", None),
        ("GET", f"/admin/v1/tenants/{b_id}/audit", None),
        ("GET", f"/admin/v1/tenants/{b_id}/judgements", None),
        ("GET", f"/admin/v1/tenants/{b_id}/stats", None),
    ]:
        r = await c.request(method, path, json=body, headers=bearer(a_admin))
        assert_envelope(r, 404)
        assert "B商事" not in r.text and "秘密" not in r.text
    # A's key cannot revoke B's key through A's own path either.
    assert_envelope(await c.delete(f"/admin/v1/tenants/{a_id}/api-keys/{b_key_id}", headers=bearer(a_admin)), 404)
    # Nothing of B changed.
    b_cat = (await c.get(f"/admin/v1/tenants/{b_id}/categories/violence", headers=admin())).json()
    assert b_cat["threshold"] == 0.5
    assert (await c.post("/v1/judge", json={"text": "まだ使える", "categories": ["violence"]},
                         headers=bearer(b_judge))).status_code == 200
    # A judge key is not a management credential; a tenant admin cannot create tenants.
    assert_envelope(await c.get(f"/admin/v1/tenants/{a_id}/categories", headers=bearer(a_judge)), 403,
                    "wrong_key_kind")
    assert_envelope(await c.post("/admin/v1/tenants", json={"name": "x"}, headers=bearer(a_admin)), 403)
    # A's judgement log does not contain B's judgement.
    a_log = (await c.get(f"/admin/v1/tenants/{a_id}/judgements", headers=bearer(a_admin))).json()["items"]
    assert all("秘密" not in (j["text"] or "") for j in a_log)


async def test_revoked_key_stops_working_at_once(pg_client: httpx.AsyncClient) -> None:
    c = pg_client
    tid, judge, _ = await _tenant_with_keys(c, "失効テスト")
    body = {"text": "こんにちは", "categories": ["violence"]}
    assert (await c.post("/v1/judge", json=body, headers=bearer(judge))).status_code == 200
    keys = (await c.get(f"/admin/v1/tenants/{tid}/api-keys", headers=admin())).json()["items"]
    app_key = next(k for k in keys if k["name"] == "app")
    kid = app_key["id"]
    assert judge.startswith(app_key["prefix"]) and "key" not in app_key
    assert app_key["last_used_at"] is not None  # recorded on use
    assert next(k for k in keys if k["kind"] == "admin")["last_used_at"] is None
    r = await c.delete(f"/admin/v1/tenants/{tid}/api-keys/{kid}", headers=admin())
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert_envelope(await c.post("/v1/judge", json=body, headers=bearer(judge)), 401, "invalid_api_key")


async def test_disabled_category_is_not_judged(pg_client: httpx.AsyncClient) -> None:
    c, tid = pg_client, await tenant_id(pg_client)
    await c.patch(f"/admin/v1/tenants/{tid}/categories/sexual", json={"enabled": False}, headers=admin())
    body = (await c.post("/v1/judge", json={"text": "こんにちは"})).json()
    assert "sexual" not in scores(body) and len(body["categories"]) == 7
    r = await c.post("/v1/judge", json={"text": "こんにちは", "categories": ["sexual"]})
    assert_envelope(r, 422, "category_disabled", "categories[0]")


@pytest.mark.model
async def test_custom_japanese_category_is_judged_by_its_own_definition(pg_client: httpx.AsyncClient) -> None:
    c, tid = pg_client, await tenant_id(pg_client)
    # No cache: every score below is recomputed by the model, so equality is a property of the
    # prompts (each category judged independently), not of cached values.
    await c.patch(f"/admin/v1/tenants/{tid}", json={"cache_enabled": False}, headers=admin())
    before = (await c.post("/v1/judge", json={"text": TEXT})).json()
    assert (await c.post(f"/admin/v1/tenants/{tid}/categories", json=INVEST, headers=admin())).status_code == 201
    after = (await c.post("/v1/judge", json={"text": TEXT})).json()
    assert before["cached"] is False and after["cached"] is False
    assert "investment_advice" in scores(after)
    inv = next(x for x in after["categories"] if x["id"] == "investment_advice")
    assert inv["name"] == "投資助言" and 0 <= inv["score"] <= 1
    # Each category is its own prompt, so adding one cannot move the others; the CPU engine's bf16
    # arithmetic can still differ by ~0.015 when the same prompt lands in a differently shaped batch
    # under concurrent load, hence a tolerance far below any threshold step.
    others = {k: v for k, v in scores(after).items() if k != "investment_advice"}
    assert others == pytest.approx(scores(before), abs=0.03)

    r = await c.patch(f"/admin/v1/tenants/{tid}/categories/investment_advice",
                      json={"definition": "料理のレシピや調理方法について説明する発言。"}, headers=admin())
    assert r.status_code == 200
    edited = (await c.post("/v1/judge", json={"text": TEXT})).json()
    assert scores(edited)["investment_advice"] != scores(after)["investment_advice"]
    assert {k: v for k, v in scores(edited).items() if k != "investment_advice"} == pytest.approx(scores(before),
                                                                                                abs=0.03)
