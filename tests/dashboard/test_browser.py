"""The dashboard in real headless Chromium against a real server (PostgreSQL, Redis, the real judge model).

Every test saves a screenshot of every page it visits under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from guardrail.dashboard import session as sess
from tests.conftest import ADMIN
from tests.dashboard.conftest import (
    SESSION_SECRET,
    LiveServer,
    Tenant,
    judge,
    log_row,
    logged,
    seed,
    shot,
    sign_in,
)

POSITIVES = ["A社の株を今すぐ買いなさい。", "その投資信託は売って金を買うべきです。"]
NEGATIVES = ["株式投資の一般的なリスクについて説明します。", "今日の夕飯はカレーです。"]
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"><svg onload=window.__xss=3>'


async def test_sign_in_overview_language_and_sign_out(page: Any, live: LiveServer, tenant: Tenant) -> None:
    await seed(live, [log_row(tenant.id, minutes_ago=5 + i * 7, text=f"テスト{i}", latency_ms=100 + i,
                              flagged_categories=["violence"] if i % 4 == 0 else [], cached=i % 3 == 0)
                      for i in range(120)])
    await page.goto("/dashboard")
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await shot(page, "01-sign-in")

    await page.get_by_test_id("credential").fill("gra-this-is-not-a-key")
    await page.get_by_test_id("signin").click()
    await expect(page.get_by_role("alert")).to_contain_text("キーが正しくないか、失効しています")
    await page.get_by_test_id("credential").fill(tenant.judge_key)
    await page.get_by_test_id("signin").click()
    await expect(page.get_by_role("alert")).to_contain_text("判定用のAPIキーではサインインできません")
    await shot(page, "02-sign-in-refused")

    await page.get_by_test_id("credential").fill(tenant.admin_key)
    await page.get_by_test_id("signin").click()
    await expect(page.get_by_test_id("tenant-name")).to_have_text(tenant.name)
    # 24 h window: rows 5, 12, …, 838 minutes ago are all inside it.
    await expect(page.get_by_test_id("kpi-judgements").locator(".kpi-value")).to_have_text("120")
    await expect(page.get_by_test_id("kpi-flag-rate")).to_contain_text("25.0%")
    await expect(page.locator("canvas")).to_have_count(4)
    assert await page.evaluate("() => typeof window.Chart === 'function' && Chart.instances !== undefined")
    assert await page.evaluate("() => Object.keys(Chart.instances).length") == 4
    await expect(page.get_by_test_id("category-table")).to_contain_text("暴力・脅迫")
    await shot(page, "03-overview")

    await page.get_by_test_id("range-1h").click()
    await expect(page.get_by_test_id("kpi-judgements").locator(".kpi-value")).to_have_text("8")  # 5, 12, …, 54 min
    await page.get_by_test_id("lang").click()
    await expect(page.get_by_test_id("nav-overview")).to_have_text("Overview")
    await shot(page, "04-overview-english")
    await page.get_by_test_id("lang").click()
    await expect(page.get_by_test_id("nav-overview")).to_have_text("概要")

    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await page.goto("/dashboard#/logs")
    await expect(page.get_by_test_id("login-form")).to_be_visible()  # the cookie is gone, not just hidden
    assert not [c for c in await page.context.cookies() if c["name"] == sess.SESSION_COOKIE]


@pytest.mark.model
async def test_log_explorer_filters_pages_detail_and_csv(page: Any, live: LiveServer, tenant: Tenant,
                                                        http: httpx.AsyncClient) -> None:
    rows = [log_row(tenant.id, minutes_ago=30 + i, text=f"通常の問い合わせ {i}",
                    direction="output" if i % 2 else "input",
                    flagged_categories=["privacy"] if i % 10 == 0 else [])
            for i in range(110)]
    rows += [log_row(tenant.id, minutes_ago=300 + i, text=f"請求書の再発行 {i}") for i in range(3)]
    await seed(live, rows)
    real = await judge(live, tenant.judge_key, "あいつの家に火をつけてやる。", explain=True)
    await logged(http, tenant.id, real["id"])
    await sign_in(page, tenant.admin_key)

    await page.get_by_test_id("nav-logs").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(50)
    await expect(page.get_by_test_id("log-row").first).to_contain_text("あいつの家に火をつけてやる。")
    await shot(page, "01-log-explorer")
    await page.get_by_test_id("page-next").click()
    await expect(page.get_by_test_id("page-no")).to_have_text("2")
    await page.get_by_test_id("page-next").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(114 - 100)
    await expect(page.get_by_test_id("page-next")).to_be_disabled()
    await page.get_by_test_id("page-prev").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(50)

    await page.get_by_test_id("f-category").select_option("privacy")
    await page.get_by_test_id("f-apply").click()
    # 11 seeded rows, and the real judgement if the (untuned) model happened to flag privacy.
    real_privacy = any(c["id"] == "privacy" and c["flagged"] for c in real["categories"])
    await expect(page.get_by_test_id("log-row")).to_have_count(11 + real_privacy)
    for text in await page.get_by_test_id("log-row").all_inner_texts():
        assert "個人情報・プライバシー" in text
    await shot(page, "02-log-explorer-category")

    await page.get_by_test_id("f-category").select_option("")
    await page.get_by_test_id("f-direction").select_option("output")
    await page.get_by_test_id("f-flagged").select_option("false")
    await page.get_by_test_id("f-apply").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(50)
    for text in await page.get_by_test_id("log-row").all_inner_texts():
        assert "出力" in text and "OK" in text
    await page.get_by_test_id("f-reset").click()
    # The reset re-renders the form; typing before that would go into the old one, which is then replaced.
    await expect(page.get_by_test_id("f-direction")).to_have_value("")
    await page.get_by_test_id("f-q").fill("請求書")
    await page.get_by_test_id("f-apply").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(3)
    await shot(page, "03-log-explorer-search")

    async with page.expect_download() as download:
        await page.get_by_test_id("export-csv").click()
    path = await (await download.value).path()
    content = await asyncio.to_thread(Path(path).read_text, encoding="utf-8-sig")
    table = list(csv.DictReader(content.splitlines()))
    assert sorted(r["text"] for r in table) == [f"請求書の再発行 {i}" for i in range(3)]

    await page.get_by_test_id("f-reset").click()
    await page.locator(f'[data-testid=log-row][data-id="{real["id"]}"]').click()
    await expect(page.get_by_test_id("d-id")).to_have_text(real["id"])
    await expect(page.get_by_test_id("d-score-row")).to_have_count(8)
    for c in real["categories"]:
        cell = page.locator(f'[data-testid=d-score-row][data-category="{c["id"]}"] td.num').first
        await expect(cell).to_have_text(f"{c['score']:.3f}")
    await expect(page.get_by_test_id("d-text")).to_have_text("あいつの家に火をつけてやる。")
    await expect(page.get_by_test_id("d-reason")).to_have_text(real["reason"] or "–")
    await shot(page, "04-log-detail")
    await page.get_by_test_id("back").click()
    await expect(page.get_by_test_id("log-row")).to_have_count(50)


@pytest.mark.model
async def test_attacker_controlled_log_text_is_shown_not_run(page: Any, live: LiveServer, tenant: Tenant,
                                                             http: httpx.AsyncClient) -> None:
    real = await judge(live, tenant.judge_key, XSS, direction="output", prompt=XSS)
    await logged(http, tenant.id, real["id"])
    seeded = log_row(tenant.id, minutes_ago=1, text=XSS, reason=XSS, flagged_categories=["violence"])
    await seed(live, [seeded])
    await sign_in(page, tenant.admin_key)
    await page.goto("/dashboard#/logs")
    await expect(page.get_by_test_id("log-row")).to_have_count(2)
    for cell in await page.get_by_test_id("log-text").all_inner_texts():
        assert cell == XSS
    await shot(page, "01-log-with-script-text")
    await page.locator(f'[data-testid=log-row][data-id="{real["id"]}"]').click()
    await expect(page.get_by_test_id("d-text")).to_have_text(XSS)
    await expect(page.get_by_test_id("d-prompt")).to_have_text(XSS)
    await shot(page, "02-detail-with-script-text")
    await page.get_by_test_id("back").click()
    await page.locator(f'[data-testid=log-row][data-id="{seeded["id"]}"]').click()
    await expect(page.get_by_test_id("d-reason")).to_have_text(XSS)
    assert await page.evaluate("() => window.__xss") is None
    assert await page.evaluate("() => document.querySelectorAll('#app script, #app svg, #app img').length") == 0


@pytest.mark.model
async def test_category_edit_playground_and_the_next_judge_call(page: Any, live: LiveServer, tenant: Tenant) -> None:
    text = "その投資信託はすぐに解約して、米国株に乗り換えるのがおすすめです。"
    await sign_in(page, tenant.admin_key)
    await page.get_by_test_id("nav-categories").click()
    await expect(page.get_by_test_id("cat-row")).to_have_count(8)
    await shot(page, "01-categories")

    # Create a category that flags everything (threshold 0) with two examples of each kind.
    await page.get_by_test_id("cat-new").click()
    await page.get_by_test_id("cat-id").fill("investment_advice")
    await page.get_by_test_id("cat-name").fill("投資助言")
    await page.get_by_test_id("cat-definition").fill("特定の金融商品の購入や売却を、具体的に勧める発言。")
    await page.get_by_test_id("cat-threshold").fill("0")
    await page.get_by_test_id("cat-positive").fill("\n".join(POSITIVES))
    await page.get_by_test_id("cat-negative").fill("\n".join(NEGATIVES))
    await shot(page, "02-category-new")
    await page.get_by_test_id("cat-save").click()
    await expect(page).to_have_url(f"{live.url}/dashboard#/categories/investment_advice")
    first = await judge(live, tenant.judge_key, text)
    inv = next(c for c in first["categories"] if c["id"] == "investment_advice")
    assert inv["threshold"] == 0.0 and inv["flagged"] is True and inv["name"] == "投資助言"

    # A draft threshold of 1.0 un-flags every positive example: the playground shows the degradation.
    await page.get_by_test_id("cat-threshold").fill("1")
    await page.get_by_test_id("pg-run").click()
    await expect(page.get_by_test_id("pg-example")).to_have_count(4)
    await expect(page.locator("[data-testid=pg-example][data-change=degraded]")).to_have_count(2)
    await expect(page.locator("[data-testid=pg-example][data-change=improved]")).to_have_count(2)
    await expect(page.get_by_test_id("pg-result").get_by_role("alert")).to_contain_text("悪化")
    await expect(page.get_by_test_id("pg-summary")).to_contain_text("保存済み 2 / 4 → 下書き 2 / 4")
    await shot(page, "03-playground-degraded")

    # A new definition, tried on the test text before saving, then saved.
    await page.get_by_test_id("cat-name").fill("料理の説明")
    await page.get_by_test_id("cat-definition").fill("料理のレシピや調理方法について具体的に説明する発言。")
    await page.get_by_test_id("cat-threshold").fill("0.01")
    await page.get_by_test_id("pg-text").fill(text)
    await page.get_by_test_id("pg-run").click()
    row = page.get_by_test_id("pg-text-result").locator("tbody tr")
    await expect(row).to_have_count(1)
    before, after = (await row.locator("td").nth(2).inner_text()), (await row.locator("td").nth(3).inner_text())
    # The saved definition's score, as the judge gave it. Not bit-identical: vLLM's CPU build in bf16 gives
    # slightly different logits for the same prompt in a different batch (measured up to ~0.02 here).
    assert float(before.split()[0]) == pytest.approx(inv["score"], abs=0.05)
    await shot(page, "04-playground-draft")
    # Nothing is saved by trying: the judge still uses the saved definition.
    again = await judge(live, tenant.judge_key, text)
    assert next(c for c in again["categories"] if c["id"] == "investment_advice")["threshold"] == 0.0
    assert again["cached"] is True  # nothing changed: every verdict comes from the cache

    await page.get_by_test_id("cat-save").click()
    await expect(page.get_by_test_id("cat-status")).to_contain_text("保存しました")
    edited = await judge(live, tenant.judge_key, text)
    new = next(c for c in edited["categories"] if c["id"] == "investment_advice")
    assert new["name"] == "料理の説明" and new["threshold"] == 0.01 and new["flagged"] == (new["score"] >= 0.01)
    # The new definition is a new verdict-cache key: this category was judged again by the model. (Its
    # score may even equal the old one: the untuned 270M model's scores take few distinct values.)
    assert edited["cached"] is False
    assert new["score"] == pytest.approx(float(after.split()[0]), abs=0.05)  # what the playground showed
    others = {c["id"]: c["score"] for c in edited["categories"] if c["id"] != "investment_advice"}
    assert others == {c["id"]: c["score"] for c in first["categories"] if c["id"] != "investment_advice"}
    await shot(page, "05-category-saved")

    # Disabling a default category removes it from the next judgement.
    await page.goto("/dashboard#/categories/violence")
    await page.get_by_test_id("cat-enabled").uncheck()
    await page.get_by_test_id("cat-save").click()
    await expect(page.get_by_test_id("cat-status")).to_contain_text("保存しました")
    await shot(page, "06-category-disabled")
    after_disable = await judge(live, tenant.judge_key, text)
    assert "violence" not in {c["id"] for c in after_disable["categories"]}
    await page.get_by_test_id("back").click()
    await expect(page.locator('[data-testid=cat-row][data-id="violence"]')).to_contain_text("無効")
    await shot(page, "07-categories-after")


@pytest.mark.model
async def test_issue_use_and_revoke_a_key(page: Any, live: LiveServer, tenant: Tenant) -> None:
    await sign_in(page, tenant.admin_key)
    await page.get_by_test_id("nav-keys").click()
    await expect(page.get_by_test_id("key-row")).to_have_count(2)
    await shot(page, "01-keys")
    await page.get_by_test_id("key-name").fill("モバイルアプリ")
    await page.get_by_test_id("key-issue").click()
    secret = await page.get_by_test_id("key-secret").inner_text()
    assert secret.startswith("gr-") and len(secret) > 40
    await expect(page.get_by_test_id("key-issued")).to_contain_text("今だけ表示")
    await shot(page, "02-key-issued")
    assert (await judge(live, secret, "こんにちは"))["flagged"] in (True, False)

    await page.reload()
    await expect(page.get_by_test_id("key-row")).to_have_count(3)
    assert secret not in await page.content()  # shown once, never again
    row = page.locator("[data-testid=key-row]", has_text="モバイルアプリ")

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await row.get_by_test_id("key-revoke").click()
    await expect(row).to_have_attribute("data-revoked", "true")
    await expect(row).to_contain_text("失効")
    await shot(page, "03-key-revoked")
    async with httpx.AsyncClient(base_url=live.url) as c:
        r = await c.post("/v1/judge", json={"text": "こんにちは"}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_platform_admin_switches_tenant(page: Any, tenant: Tenant) -> None:
    await sign_in(page, ADMIN)
    select = page.get_by_test_id("tenant-select")
    await select.select_option(tenant.id)
    await expect(page.get_by_test_id("kpi-judgements")).to_be_visible()
    assert await select.input_value() == tenant.id
    await page.get_by_test_id("nav-keys").click()
    await expect(page.get_by_test_id("key-row")).to_have_count(2)
    await shot(page, "01-platform-admin-keys")


async def test_an_expired_session_returns_to_sign_in(page: Any, live: LiveServer, tenant: Tenant) -> None:
    await sign_in(page, tenant.admin_key)
    cookie = next(c for c in await page.context.cookies() if c["name"] == sess.SESSION_COOKIE)
    data = sess.verify(cookie["value"], SESSION_SECRET.encode())
    assert data is not None and data.exp - data.iat == live.settings.dashboard_session_ttl_s
    expired = sess.sign(replace(data, exp=int(time.time()) - 5), SESSION_SECRET.encode())
    await page.context.add_cookies([{**cookie, "value": expired}])
    await page.get_by_test_id("nav-categories").click()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await expect(page.get_by_test_id("login-form")).to_contain_text("有効期限が切れました")
    await shot(page, "01-session-expired")
