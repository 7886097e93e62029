"""Every bad input and every model failure gets a clear status in the one error envelope."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, app_client, make_settings


def assert_envelope(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "message", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert r.headers.get("x-request-id")


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    ({"text": ""}, 422, "empty_text", "text"),
    ({"text": "   \n "}, 422, "empty_text", "text"),
    ({"text": "あ" * 2049}, 422, "text_too_long", "text"),
    ({"text": "こんにちは", "prompt": "あ" * 2049, "direction": "output"}, 422, "text_too_long", "prompt"),
    ({}, 422, "missing_field", "text"),
    ({"text": 123}, 422, "invalid_value", "text"),
    ({"text": ["a"]}, 422, "invalid_value", "text"),
    ({"text": "こんにちは", "direction": "sideways"}, 422, "invalid_value", "direction"),
    ({"text": "こんにちは", "explain": "yes"}, 422, "invalid_value", "explain"),
    ({"text": "こんにちは", "categories": "violence"}, 422, "invalid_value", "categories"),
    ({"text": "こんにちは", "categories": []}, 422, "invalid_value", "categories"),
    ({"text": "こんにちは", "categories": ["violence", "no_such"]}, 422, "unknown_category", "categories[1]"),
    ({"text": "こんにちは", "colour": "red"}, 422, "invalid_value", "colour"),
])
async def test_bad_bodies(client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, param: str) -> None:
    assert_envelope(await client.post("/v1/judge", json=body), status, code, param)


async def test_exactly_2048_characters_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/judge", json={"text": "あ" * 2048, "categories": ["violence"]})
    assert r.status_code == 200, r.text


async def test_malformed_json_and_non_objects(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    assert_envelope(await client.post("/v1/judge", content=b"{oops", headers=headers), 400, "invalid_json")
    assert_envelope(await client.post("/v1/judge", content=b"[1, 2]", headers=headers), 400, "invalid_body")
    assert_envelope(await client.post("/v1/judge", content=b'"text"', headers=headers), 400, "invalid_body")


async def test_body_over_the_size_limit(client: httpx.AsyncClient) -> None:
    big = b'{"text": "' + b"a" * (70 * 1024) + b'"}'
    r = await client.post("/v1/judge", content=big, headers={"Content-Type": "application/json"})
    assert_envelope(r, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size is enforced too
        for _ in range(80):
            yield b"a" * 1024

    r = await client.post("/v1/judge", content=chunks(), headers={"Content-Type": "application/json"})
    assert_envelope(r, 413, "payload_too_large")


async def test_missing_wrong_and_revoked_keys(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/judge", json={"text": "x"}, headers={"Authorization": ""})
    assert_envelope(r, 401, "missing_api_key")
    r = await client.post("/v1/judge", json={"text": "x"}, headers={"Authorization": "Basic abc"})
    assert_envelope(r, 401, "missing_api_key")
    r = await client.post("/v1/judge", json={"text": "x"}, headers={"Authorization": "Bearer nope"})
    assert_envelope(r, 401, "invalid_api_key")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_model_down_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inference_url=f"http://127.0.0.1:{_closed_port()}", model_name="m",
                             inference_connect_retries=1)
    async with app_client(settings) as c:
        r = await c.post("/v1/judge", json={"text": "こんにちは"})
        assert_envelope(r, 503, "model_unavailable")
        assert int(r.headers["retry-after"]) > 0
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["model"] == "error"


async def test_model_timeout_is_504(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # accept the request, never answer
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(tmp_path, inference_url=f"http://127.0.0.1:{port}", model_name="m",
                             inference_timeout_s=0.5)
    try:
        async with app_client(settings) as c:
            r = await c.post("/v1/judge", json={"text": "こんにちは"})
            assert_envelope(r, 504, "model_timeout")
            assert "retry-after" in r.headers
    finally:
        server.close()


async def test_fail_open_tenant_gets_a_degraded_pass_when_the_model_is_down(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, inference_url=f"http://127.0.0.1:{_closed_port()}", model_name="m",
                             inference_connect_retries=0)
    async with app_client(settings) as c:
        tid = (await c.get("/admin/v1/tenants", headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"})).json()["items"][0]["id"]  # noqa: E501
        r = await c.patch(f"/admin/v1/tenants/{tid}", json={"fail_mode": "open"},
                          headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"})
        assert r.status_code == 200
        r = await c.post("/v1/judge", json={"text": "こんにちは"}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] == "model_unavailable" and body["flagged"] is False
    assert all(cat["score"] is None for cat in body["categories"])
