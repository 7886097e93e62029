"""Helpers for the Pub/Sub tests: topology, a subscriber process, and waiting for log rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from asgi_lifespan import LifespanManager

from guardrail.adapters.pubsub import PubSubClient, Received
from guardrail.config import Settings
from guardrail.subscriber.app import create_subscriber_app
from tests.http_wait import wait_http
from tests.pubsub_emulator import PROJECT, PubSubEmulator, free_port

MAX_ATTEMPTS = 5


def names() -> tuple[str, str]:
    topic = f"judgements-{uuid.uuid4().hex[:8]}"
    return topic, f"{topic}-sub"


async def topology(emu: PubSubEmulator, topic: str, sub: str, *, push: str | None = None) -> PubSubClient:
    """Topic, dead-letter topic and subscription, plus a 'tap' subscription that keeps a copy of every event."""
    client = PubSubClient(project=PROJECT, emulator_host=emu.host)
    for t in (topic, f"{topic}-dl"):
        await client.ensure_topic(t)
    await client.ensure_subscription(f"{sub}-dl", f"{topic}-dl")
    await client.ensure_subscription(f"{sub}-tap", topic)
    await client.ensure_subscription(sub, topic, push_endpoint=push, dead_letter_topic=f"{topic}-dl",
                                     max_delivery_attempts=MAX_ATTEMPTS, ack_deadline_s=10,
                                     min_backoff_s=0.5, max_backoff_s=1.0)
    return client


async def drain(client: PubSubClient, sub: str, *, want: int, timeout_s: float = 60.0) -> list[Received]:
    """Pull (and ack) from `sub` until `want` messages arrived."""
    got: dict[str, Received] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        msgs = await client.pull(sub, max_messages=100)
        await client.ack(sub, [m.ack_id for m in msgs])
        got.update({m.message_id: m for m in msgs})
        if not msgs:
            await asyncio.sleep(0.2)
    assert len(got) >= want, f"only {len(got)} of {want} messages arrived on {sub}"
    return list(got.values())


def pg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


async def log_ids(database_url: str, tenant_id: str | None = None) -> list[str]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        if tenant_id is None:
            rows = await conn.fetch("SELECT id FROM judgements")
        else:
            rows = await conn.fetch("SELECT id FROM judgements WHERE tenant_id = $1", tenant_id)
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def wait_for_rows(database_url: str, ids: Iterable[str], timeout_s: float = 90.0) -> list[str]:
    """Every id of `ids` in the log table (or fail with what is missing); returns all stored ids."""
    want = set(ids)
    deadline = time.monotonic() + timeout_s
    stored: list[str] = []
    while time.monotonic() < deadline:
        stored = await log_ids(database_url)
        if want <= set(stored):
            return stored
        await asyncio.sleep(0.3)
    missing = want - set(stored)
    raise AssertionError(f"{len(missing)} of {len(want)} judgement events never reached the log table")


async def truncate_logs(database_url: str) -> None:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute("TRUNCATE judgements")
    finally:
        await conn.close()


@asynccontextmanager
async def pull_subscriber(settings: Settings) -> AsyncIterator[Any]:
    app = create_subscriber_app(settings, pull=True)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as mgr:
        yield mgr.app


class SubscriberProcess:
    """`guardrail subscriber` (push mode) as a real process on a free port."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).with_name("guardrail")
        self.proc = subprocess.Popen([str(exe), "subscriber", "--port", str(self.port)], env=self.env,
                                     stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/readyz", timeout_s=60, proc=self.proc, log_path=self.log_path)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
