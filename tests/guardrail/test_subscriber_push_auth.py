"""Push authentication of the log subscriber with real signed tokens and a real certificate endpoint.

A local HTTP server plays Google's certificate endpoint with a key pair made here; tokens are
signed with google-auth exactly as Google signs push tokens (RS256, kid header).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as gjwt

from guardrail.logs.events import encode_message
from guardrail.subscriber.app import create_subscriber_app
from tests.conftest import make_settings
from tests.guardrail.pubsub_helpers import log_ids, truncate_logs

AUDIENCE = "https://subscriber.example.run.app/pubsub/push"
PUSH_SA = "pubsub-push@guardrail-prod.iam.gserviceaccount.com"


def _key_and_cert() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem_key, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def signer() -> Iterator[tuple[crypt.RSASigner, str]]:
    """(signer, certs URL) with the certificate served over real HTTP."""
    pem_key, pem_cert = _key_and_cert()
    body = json.dumps({"kid-1": pem_cert}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield crypt.RSASigner.from_string(pem_key, key_id="kid-1"), f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()


def token(signer: crypt.RSASigner, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_SA, "email_verified": True,
               "iat": now, "exp": now + 600, "sub": "1234567890", **claims}
    return gjwt.encode(signer, payload).decode()


def envelope(event_id: str) -> dict[str, Any]:
    row = {"id": event_id, "tenant_id": "t1", "api_key_id": None, "direction": "input", "flagged": False,
           "flagged_categories": [], "scores": {"violence": 0.1}, "model": "m", "latency_ms": 5.0, "cached": True,
           "text": None, "prompt": None, "text_sha256": "cd" * 32, "text_mode": "hash", "reason": None,
           "created_at": "2026-11-22T04:00:00+00:00"}
    msg = encode_message(row)
    return {"message": {**msg, "messageId": f"m-{event_id}", "publishTime": "2026-11-22T04:00:01Z"},
            "subscription": "projects/p/subscriptions/s"}


@pytest.fixture
async def push_client(pg_database: str, signer: tuple[crypt.RSASigner, str],
                      tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    await truncate_logs(pg_database)
    settings = make_settings(tmp_path, database_url=pg_database, pubsub_push_audience=AUDIENCE,
                             pubsub_push_service_account=PUSH_SA, pubsub_push_certs_url=signer[1])
    app = create_subscriber_app(settings)
    async with LifespanManager(app) as mgr:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mgr.app), base_url="http://sub.test") as c:
            yield c


async def test_push_requires_a_valid_token_for_our_audience_and_account(
        push_client: httpx.AsyncClient, signer: tuple[crypt.RSASigner, str], pg_database: str) -> None:
    s = signer[0]
    cases = [
        (None, 401, "missing_token"),
        ("Bearer not-a-jwt", 401, "invalid_token"),
        (f"Bearer {token(s, aud='https://someone-else.example')}", 401, "invalid_token"),
        (f"Bearer {token(s, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)}", 401, "invalid_token"),
        (f"Bearer {token(s, iss='https://evil.example')}", 401, "invalid_token"),
        (f"Bearer {token(s, email='intruder@evil.iam.gserviceaccount.com')}", 403, "wrong_push_identity"),
    ]
    for i, (auth, status, code) in enumerate(cases):
        headers = {"Authorization": auth} if auth else {}
        r = await push_client.post("/pubsub/push", json=envelope(f"jdg_rejected_{i}"), headers=headers)
        assert r.status_code == status, (i, r.text)
        assert r.json()["error"]["code"] == code
    assert await log_ids(pg_database) == []

    good = {"Authorization": f"Bearer {token(s)}"}
    r = await push_client.post("/pubsub/push", json=envelope("jdg_ok"), headers=good)
    assert r.status_code == 204, r.text
    r = await push_client.post("/pubsub/push", json=envelope("jdg_ok"), headers=good)  # redelivery
    assert r.status_code == 204
    assert await log_ids(pg_database) == ["jdg_ok"]


async def test_push_envelope_errors_are_clear(push_client: httpx.AsyncClient,
                                              signer: tuple[crypt.RSASigner, str]) -> None:
    good = {"Authorization": f"Bearer {token(signer[0])}"}
    r = await push_client.post("/pubsub/push", content=b"{not json",
                               headers={**good, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await push_client.post("/pubsub/push", json={"subscription": "s"}, headers=good)
    assert r.status_code == 422 and r.json()["error"]["param"] == "message"
    r = await push_client.post("/pubsub/push", json={"message": {"data": "%%%", "messageId": "1"}}, headers=good)
    assert r.status_code == 400 and r.json()["error"]["code"] == "poison_message"
