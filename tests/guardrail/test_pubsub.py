"""Judgement logs through the real Pub/Sub emulator into the real PostgreSQL, push and pull.

Every judgement becomes exactly one row, re-deliveries included; poison messages end in the
dead-letter topic without holding back the rest; an emulator outage in the middle of a burst
loses nothing and fails no judgement.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest

from guardrail.logs.events import encode_message
from inference.launcher import LocalEngine
from tests.conftest import app_client, make_settings
from tests.guardrail.pubsub_helpers import (
    MAX_ATTEMPTS,
    SubscriberProcess,
    drain,
    log_ids,
    names,
    pull_subscriber,
    topology,
    truncate_logs,
    wait_for_rows,
)
from tests.pubsub_emulator import PROJECT, PubSubEmulator
from tests.tcp_proxy import TcpProxy

TEXTS = ["明日の天気を教えてください。", "あいつを殴ってやりたい。", "おすすめのカレーの作り方は？"]


@pytest.fixture
async def clean_logs(pg_database: str) -> str:
    await truncate_logs(pg_database)
    return pg_database


async def judge_many(c: httpx.AsyncClient, n: int, *, offset: int = 0) -> list[str]:
    """n judgements (texts repeat, so most are cache hits); every one must succeed."""
    ids = []
    for i in range(offset, offset + n):
        r = await c.post("/v1/judge", json={"text": TEXTS[i % len(TEXTS)], "categories": ["violence", "harassment"]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def poison_messages() -> list[dict[str, object]]:
    not_json = {"data": base64.b64encode(b"\xff\xfe not json").decode(), "attributes": {"event_id": "bad-1"}}
    bad_event = {"data": base64.b64encode(json.dumps({"id": "bad-2", "direction": "sideways"}).encode()).decode(),
                 "attributes": {"event_id": "bad-2"}}
    return [not_json, bad_event]


async def test_pull_mode_every_judgement_once_and_poison_dead_lettered(
        engine: LocalEngine, pubsub: PubSubEmulator, clean_logs: str, tmp_path: Path) -> None:
    topic, sub = names()
    client = await topology(pubsub, topic, sub)
    settings = make_settings(tmp_path, inference_url=engine.url, database_url=clean_logs, pubsub_topic=topic,
                             pubsub_subscription=sub, pubsub_emulator_host=pubsub.host, pubsub_project=PROJECT)
    try:
        async with app_client(settings) as c, pull_subscriber(settings):
            await client.publish(topic, poison_messages())  # first in line: must not block the rest
            ids = await judge_many(c, 6)
            stored = await wait_for_rows(clean_logs, ids)
            assert sorted(stored) == sorted(ids)

            # A duplicated delivery: the same six events published again.
            copies = await drain(client, f"{sub}-tap", want=8)
            events = [m for m in copies if m.attributes.get("event_id", "").startswith("jdg_")]
            assert len(events) == 6
            await client.publish(topic, [{"data": m.data, "attributes": m.attributes} for m in events])
            dead = await drain(client, f"{sub}-dl", want=2, timeout_s=60)
            assert {m.attributes["event_id"] for m in dead} == {"bad-1", "bad-2"}
            await asyncio.sleep(1.0)  # give the duplicates time to be (not) stored
            assert sorted(await log_ids(clean_logs)) == sorted(ids)
    finally:
        await client.aclose()


async def test_push_mode_every_judgement_once_and_poison_refused_on_every_delivery(
        engine: LocalEngine, pubsub: PubSubEmulator, clean_logs: str, tmp_path: Path) -> None:
    topic, sub = names()
    subscriber = SubscriberProcess(tmp_path / "subscriber.log", {
        "GUARDRAIL_DATABASE_URL": clean_logs, "GUARDRAIL_PUBSUB_MAX_DELIVERY_ATTEMPTS": str(MAX_ATTEMPTS)})
    subscriber.start()
    client = await topology(pubsub, topic, sub, push=f"{subscriber.url}/pubsub/push")
    settings = make_settings(tmp_path, inference_url=engine.url, database_url=clean_logs, pubsub_topic=topic,
                             pubsub_emulator_host=pubsub.host, pubsub_project=PROJECT)
    try:
        async with app_client(settings) as c:
            await client.publish(topic, poison_messages())
            ids = await judge_many(c, 6)
            await wait_for_rows(clean_logs, ids)
            copies = await drain(client, f"{sub}-tap", want=8)
            events = [m for m in copies if m.attributes.get("event_id", "").startswith("jdg_")]
            await client.publish(topic, [{"data": m.data, "attributes": m.attributes} for m in events])
            # Every push of a poison message is refused (400) and Pub/Sub pushes it again. The move to the
            # dead-letter topic after the last attempt is the emulator's, and its push loop stalls before
            # it on some runs (measured: 4-5 refusals each, then no dispatch for 120 s, in 4 of 7 runs on a
            # fresh machine, even with successful pushes in between); the pull-mode test above checks the
            # dead-letter move itself, with the same subscription settings.
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                refused = Counter(re.findall(r'"event_id": "(bad-[12])"', subscriber.log()))
                if len(refused) == 2 and min(refused.values()) >= 2:
                    break
                await asyncio.sleep(0.5)
            assert set(refused) == {"bad-1", "bad-2"} and min(refused.values()) >= 2, refused
            # The six re-sent events are recognised as duplicates and stored once.
            dup_line = 'guardrail_subscriber_events_total{result="duplicate"} 6.0'
            async with httpx.AsyncClient() as h:
                for _ in range(60):
                    metrics = (await h.get(f"{subscriber.url}/metrics")).text
                    if dup_line in metrics:
                        break
                    await asyncio.sleep(0.5)
            assert dup_line in metrics
            assert sorted(await log_ids(clean_logs)) == sorted(ids)
        log = subscriber.log()
        assert "poison judgement event refused" in log and "dead-letter topic after 5 delivery attempts" in log
        assert '"max_delivery_attempts": 5' in log
        assert TEXTS[0] not in log  # judged text never reaches operational logs
    finally:
        subscriber.stop()
        await client.aclose()


async def test_emulator_outage_during_a_burst_loses_nothing(
        engine: LocalEngine, pg_database: str, tmp_path: Path) -> None:
    await truncate_logs(pg_database)
    emu = PubSubEmulator(tmp_path / "emulator.log")
    emu.start()
    topic, sub = names()
    client = await topology(emu, topic, sub)
    # The service reaches the emulator through a proxy, closed only while a restarted emulator gets its
    # topic and subscriptions back: real Pub/Sub returns with its topology, the emulator forgets it, and
    # an event published to a topic that has no subscription yet would be dropped by design.
    proxy = TcpProxy("127.0.0.1", emu.port)
    await proxy.start()
    settings = make_settings(tmp_path, inference_url=engine.url, database_url=pg_database, pubsub_topic=topic,
                             pubsub_subscription=sub, pubsub_emulator_host=f"127.0.0.1:{proxy.port}",
                             pubsub_project=PROJECT, pubsub_timeout_s=1.0)
    ids: list[str] = []
    try:
        async with app_client(settings) as c, pull_subscriber(settings):
            ids += await judge_many(c, 15)
            await wait_for_rows(pg_database, ids)

            emu.freeze()  # hangs: publishes time out and are spooled (some may land later as well)
            ids += await judge_many(c, 15, offset=15)
            emu.thaw()
            await wait_for_rows(pg_database, ids)

            emu.stop()  # gone: connection refused; its topics and messages are lost with it
            ids += await judge_many(c, 15, offset=30)
            await proxy.cut()
            emu.start()
            await client.aclose()
            client = await topology(emu, topic, sub)  # Terraform's job in production; the emulator forgets
            await proxy.restore()
            ids += await judge_many(c, 15, offset=45)
            stored = await wait_for_rows(pg_database, ids, timeout_s=120)
        assert len(ids) == 60 == len(set(ids))
        assert sorted(stored) == sorted(ids)  # every event, none twice
    finally:
        await client.aclose()
        await proxy.cut()
        emu.stop()


async def test_publisher_spools_when_pubsub_is_down_and_delivers_after_restart(
        engine: LocalEngine, tmp_path: Path) -> None:
    """Shutdown with Pub/Sub unreachable keeps the events on disk; the next start publishes them."""
    emu = PubSubEmulator(tmp_path / "emulator.log")
    topic, _ = names()
    settings = make_settings(tmp_path, inference_url=engine.url, pubsub_topic=topic, pubsub_emulator_host=emu.host,
                             pubsub_project=PROJECT, pubsub_timeout_s=1.0)
    async with app_client(settings) as c:
        ids = await judge_many(c, 4)
    spool = tmp_path / "spool" / "pubsub.jsonl"
    assert sorted(json.loads(line)["id"] for line in spool.read_text().splitlines()) == sorted(ids)
    emu.start()
    try:
        client = await topology(emu, topic, f"{topic}-sub")
        async with app_client(settings):
            got = await drain(client, f"{topic}-sub", want=4, timeout_s=30)
        assert sorted(m.attributes["event_id"] for m in got) == sorted(ids)
        assert not spool.exists() or spool.read_text() == ""
        await client.aclose()
    finally:
        emu.stop()


def test_event_messages_round_trip_and_refuse_poison() -> None:
    from guardrail.logs.events import PoisonMessage, decode_message

    row = {"id": "jdg_1", "tenant_id": "t1", "api_key_id": None, "direction": "output", "flagged": True,
           "flagged_categories": ["violence"], "scores": {"violence": 0.9}, "model": "m", "latency_ms": 12.5,
           "cached": False, "text": "本文", "prompt": "質問", "text_sha256": "ab" * 32, "text_mode": "full",
           "reason": None, "created_at": "2026-11-22T04:00:00+00:00", "extra": {}}
    msg = encode_message(row)
    assert msg["attributes"] == {"event_id": "jdg_1", "tenant_id": "t1", "schema": "judgement.v1"}
    back = decode_message(msg["data"])
    assert back["text"] == "本文" and back["scores"] == {"violence": 0.9} and back["created_at"].year == 2026
    for bad in (None, "!!!", base64.b64encode(b"[1]").decode(),
                base64.b64encode(json.dumps({**row, "id": "x" * 41}).encode()).decode(),
                base64.b64encode(json.dumps({**row, "text_mode": "plain"}).encode()).decode()):
        with pytest.raises(PoisonMessage):
            decode_message(bad)

