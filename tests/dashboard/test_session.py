"""Dashboard sign-in, sessions and CSRF over HTTP (the app in process, on the real PostgreSQL)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from guardrail.dashboard import session as sess
from guardrail.dashboard.router import router as dashboard_router
from guardrail.observability import JsonFormatter
from inference.launcher import LocalEngine
from tests.conftest import ADMIN, admin, app_client, make_settings
from tests.dashboard.conftest import SESSION_SECRET
from tests.guardrail.test_judge_errors import assert_envelope

SECRET = SESSION_SECRET.encode()


@pytest.fixture
async def dash(engine: LocalEngine, pg_database: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The service on PostgreSQL with a fixed session secret; a client with no credentials of its own."""
    from tests.guardrail.pg import admin_sql

    settings = make_settings(tmp_path, inference_url=engine.url, database_url=pg_database,
                             dashboard_session_secret=SESSION_SECRET, dashboard_cookie_secure=False)
    async with app_client(settings) as c:
        del c.headers["Authorization"]
        yield c
    db = pg_database.rsplit("/", 1)[1]
    await admin_sql("TRUNCATE tenants, api_keys, categories, audit_log, judgements CASCADE", db)


async def tenant_admin_key(c: httpx.AsyncClient, name: str = "セッション株式会社") -> tuple[str, str]:
    r = await c.post("/admin/v1/tenants", json={"name": name}, headers=admin())
    tid = r.json()["id"]
    k = await c.post(f"/admin/v1/tenants/{tid}/api-keys", json={"kind": "admin"}, headers=admin())
    return tid, k.json()["key"]


async def login(c: httpx.AsyncClient, credential: str, **extra: str) -> httpx.Response:
    state = (await c.get("/dashboard/api/session")).json()
    assert state["signed_in"] is False
    return await c.post("/dashboard/api/login", json={"credential": credential, **extra},
                        headers={"X-CSRF-Token": state["csrf"]})


async def test_sign_in_sets_a_hardened_expiring_cookie(dash: httpx.AsyncClient) -> None:
    tid, key = await tenant_admin_key(dash)
    r = await login(dash, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["signed_in"] and body["role"] == "tenant_admin" and body["tenant"]["id"] == tid
    assert body["expires_at"] > time.time() and r.headers["cache-control"] == "no-store"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(sess.SESSION_COOKIE + "="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attrs and "samesite=strict" in cookie.lower()
    assert "Path=/dashboard" in cookie and "secure" not in attrs
    assert key not in cookie  # the key itself never leaves the server again
    data = sess.verify(dash.cookies[sess.SESSION_COOKIE], SECRET)
    assert data is not None and data.tenant_id == tid and data.key_id is not None
    state = (await dash.get("/dashboard/api/session")).json()
    assert state["signed_in"] and state["csrf"] == body["csrf"]
    assert (await dash.get("/dashboard/api/categories")).status_code == 200


async def test_secure_flag_is_configurable(engine: LocalEngine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inference_url=engine.url, dashboard_cookie_secure=True)
    async with app_client(settings) as c:
        r = await c.get("/dashboard/api/session")
        assert "secure" in r.headers["set-cookie"].lower()


async def test_bad_credentials_and_judge_keys_cannot_sign_in(dash: httpx.AsyncClient) -> None:
    assert_envelope(await login(dash, "gra-not-a-real-key"), 401, "invalid_api_key")
    r = await login(dash, "gr-test-key-0123456789abcdef")  # the bootstrap *judge* key
    assert_envelope(r, 403, "wrong_key_kind")
    assert sess.SESSION_COOKIE not in dash.cookies
    assert_envelope(await dash.get("/dashboard/api/overview"), 401, "not_signed_in")


async def test_sign_in_itself_needs_the_prelogin_csrf_token(dash: httpx.AsyncClient) -> None:
    _, key = await tenant_admin_key(dash)
    await dash.get("/dashboard/api/session")  # sets the pre-login cookie
    r = await dash.post("/dashboard/api/login", json={"credential": key})
    assert_envelope(r, 403, "csrf_failed")
    r = await dash.post("/dashboard/api/login", json={"credential": key}, headers={"X-CSRF-Token": "forged" * 8})
    assert_envelope(r, 403, "csrf_failed")


def _state_changing_routes() -> list[tuple[str, str]]:
    out = []
    for r in dashboard_router.routes:
        if isinstance(r, APIRoute) and r.path.startswith("/dashboard/api/") and r.path != "/dashboard/api/login":
            out += [(m, r.path) for m in sorted(r.methods) if m in {"POST", "PATCH", "PUT", "DELETE"}]
    return out


async def test_every_state_changing_request_checks_the_csrf_token(dash: httpx.AsyncClient) -> None:
    routes = _state_changing_routes()
    assert {("POST", "/dashboard/api/categories"), ("PATCH", "/dashboard/api/categories/{category_id}"),
            ("DELETE", "/dashboard/api/categories/{category_id}"), ("POST", "/dashboard/api/keys"),
            ("DELETE", "/dashboard/api/keys/{key_id}"), ("POST", "/dashboard/api/playground"),
            ("POST", "/dashboard/api/tenant"), ("POST", "/dashboard/api/logout")} <= set(routes)
    tid, key = await tenant_admin_key(dash)
    csrf = (await login(dash, key)).json()["csrf"]
    bodies = {"/dashboard/api/categories": {"id": "x_y", "name": "n", "definition": "定義の文章です。"},
              "/dashboard/api/keys": {"name": "n"}, "/dashboard/api/tenant": {"tenant_id": tid},
              "/dashboard/api/playground": {"name": "n", "definition": "定義の文章です。"}}
    for method, path in routes:
        url = path.replace("{category_id}", "violence").replace("{key_id}", "nope")
        for headers in ({}, {"X-CSRF-Token": csrf[:-2] + "xx"}):
            r = await dash.request(method, url, json=bodies.get(path, {"enabled": False}), headers=headers)
            assert_envelope(r, 403, "csrf_failed")
    # Nothing changed, and the session still works with the right token.
    cats = (await dash.get("/dashboard/api/categories")).json()["items"]
    assert all(c["enabled"] for c in cats) and not any(c["id"] == "x_y" for c in cats)
    r = await dash.patch("/dashboard/api/categories/violence", json={"threshold": 0.7},
                         headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["threshold"] == 0.7
    audit = (await dash.get(f"/admin/v1/tenants/{tid}/audit", headers=admin())).json()["items"]
    assert audit[0]["action"] == "category.update" and audit[0]["actor"].endswith("@dashboard")


async def test_expired_tampered_and_revoked_sessions_are_refused(dash: httpx.AsyncClient) -> None:
    tid, key = await tenant_admin_key(dash)
    await login(dash, key)
    good = dash.cookies[sess.SESSION_COOKIE]
    data = sess.verify(good, SECRET)
    assert data is not None

    def use(token: str) -> None:
        dash.cookies.clear()
        dash.cookies.set(sess.SESSION_COOKIE, token, domain="guardrail.test", path="/dashboard")

    use(sess.sign(replace(data, exp=int(time.time()) - 1), SECRET))
    assert_envelope(await dash.get("/dashboard/api/categories"), 401, "session_expired")
    body, _, mac = good.partition(".")
    use(sess.sign(replace(data, tenant_id="someone_else"), b"x" * 40))  # signed with another key
    assert_envelope(await dash.get("/dashboard/api/categories"), 401, "session_expired")
    use(body + "." + mac[:-4] + "AAAA")
    assert_envelope(await dash.get("/dashboard/api/categories"), 401, "session_expired")
    use(good)
    assert (await dash.get("/dashboard/api/categories")).status_code == 200
    # Revoking the admin key ends its sessions at once, not at expiry.
    assert data.key_id is not None
    r = await dash.delete(f"/admin/v1/tenants/{tid}/api-keys/{data.key_id}", headers=admin())
    assert r.status_code == 200
    assert_envelope(await dash.get("/dashboard/api/categories"), 401, "session_revoked")
    state = (await dash.get("/dashboard/api/session")).json()
    assert state["signed_in"] is False and state["reason"] == "session_revoked"


async def test_sign_out_drops_the_cookie(dash: httpx.AsyncClient) -> None:
    _, key = await tenant_admin_key(dash)
    csrf = (await login(dash, key)).json()["csrf"]
    assert_envelope(await dash.post("/dashboard/api/logout"), 403, "csrf_failed")
    r = await dash.post("/dashboard/api/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and sess.SESSION_COOKIE not in dash.cookies
    assert_envelope(await dash.get("/dashboard/api/categories"), 401, "not_signed_in")


async def test_platform_admin_chooses_a_tenant_and_sessions_stay_in_it(dash: httpx.AsyncClient) -> None:
    a_id, _ = await tenant_admin_key(dash, "A社")
    b_id, b_key = await tenant_admin_key(dash, "B社")
    r = await login(dash, ADMIN, tenant_id=a_id)
    assert r.status_code == 200 and r.json()["role"] == "platform_admin" and r.json()["tenant"]["id"] == a_id
    names = {t["name"] for t in (await dash.get("/dashboard/api/tenants")).json()["items"]}
    assert {"A社", "B社"} <= names
    exp = r.json()["expires_at"]
    r = await dash.post("/dashboard/api/tenant", json={"tenant_id": b_id}, headers={"X-CSRF-Token": r.json()["csrf"]})
    assert r.status_code == 200 and r.json()["tenant"]["name"] == "B社" and r.json()["expires_at"] == exp
    # A tenant admin sees only its own tenant and cannot switch, nor read another tenant's judgement.
    dash.cookies.clear()
    r = await login(dash, b_key)
    assert [t["id"] for t in (await dash.get("/dashboard/api/tenants")).json()["items"]] == [b_id]
    r2 = await dash.post("/dashboard/api/tenant", json={"tenant_id": a_id}, headers={"X-CSRF-Token": r.json()["csrf"]})
    assert_envelope(r2, 403, "platform_admin_only")
    assert_envelope(await dash.get("/dashboard/api/judgements/jdg_of_someone_else"), 404, "judgement_not_found")


async def test_keys_never_reach_the_log(dash: httpx.AsyncClient) -> None:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Capture()
    logging.getLogger("guardrail").addHandler(handler)
    try:
        _, key = await tenant_admin_key(dash)
        await login(dash, "gra-wrong-key-xxxxxxxxxxxxxxxxxxxx")
        csrf = (await login(dash, key)).json()["csrf"]
        issued = (await dash.post("/dashboard/api/keys", json={"name": "x"}, headers={"X-CSRF-Token": csrf})).json()
        dash.cookies.clear()
        await login(dash, ADMIN)
    finally:
        logging.getLogger("guardrail").removeHandler(handler)
    text = "\n".join(lines)
    assert "dashboard sign-in" in text and "sign-in refused" in text  # the capture works
    for secret in (key, issued["key"], ADMIN, "gra-wrong-key"):
        assert secret not in text


async def test_security_headers_and_local_assets_only(dash: httpx.AsyncClient) -> None:
    page = await dash.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    api = await dash.get("/dashboard/api/session")
    assert api.headers["cache-control"] == "no-store" and "content-security-policy" in api.headers
    for path in ("../../config.py", "..%2F..%2Fconfig.py", "/etc/passwd", "js/../../router.py"):
        assert (await dash.get(f"/dashboard/static/{path}")).status_code == 404
    js = await dash.get("/dashboard/static/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    again = await dash.get("/dashboard/static/js/app.js", headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304
