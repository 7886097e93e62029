"""What judgement logging costs the judge, and how fast the log subscriber stores events.

Part 1 — judge latency with logging off vs on. The same `guardrail serve` (Redis verdict cache,
PostgreSQL config) is started three times: GUARDRAIL_JUDGEMENT_LOG=off; events written by the
in-process queue straight into PostgreSQL (embedded-default path); events published to the
Pub/Sub emulator (cloud path). Each is loaded by wrk with cache-hit judgements (no model call,
so the logging cost is as visible as it can be) and the ratio to "off" is printed.

Part 2 — subscriber inserts/s. N synthetic events are published to a topic first; then the log
subscriber drains them into PostgreSQL, pull mode (in-process) and push mode (`guardrail
subscriber` process, the emulator pushing), timed from start to the last row.

    .venv/bin/python bench/judgement_logging.py [--engine-url URL] [--seconds 15] [--events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cache_hits import engine_for, prime, run_wrk, start_serve  # noqa: E402
from guardrail.adapters.pubsub import PubSubClient  # noqa: E402
from guardrail.config import Settings  # noqa: E402
from guardrail.db.session import upgrade  # noqa: E402
from guardrail.logs.events import encode_message  # noqa: E402
from tests.guardrail.pg import create_database, drop_database  # noqa: E402
from tests.guardrail.pubsub_helpers import SubscriberProcess, log_ids, pull_subscriber, truncate_logs  # noqa: E402
from tests.pubsub_emulator import PROJECT, PubSubEmulator  # noqa: E402


def synthetic(n: int) -> list[dict[str, object]]:
    now = "2026-11-22T00:00:00+00:00"
    return [{"id": f"jdg_b{uuid.uuid4().hex}", "tenant_id": "bench", "api_key_id": None, "direction": "input",
             "flagged": i % 7 == 0, "flagged_categories": ["violence"] if i % 7 == 0 else [],
             "scores": {"violence": 0.3, "harassment": 0.2}, "model": "bench", "latency_ms": 12.0, "cached": True,
             "text": f"ベンチマーク用の文章その{i}", "prompt": None, "text_sha256": "ab" * 32, "text_mode": "full",
             "reason": None, "created_at": now} for i in range(n)]


async def wait_rows(db_url: str, n: int, timeout_s: float = 600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if len(await log_ids(db_url)) >= n:
            return time.perf_counter() - t0
        await asyncio.sleep(0.05)
    raise SystemExit(f"subscriber did not store {n} events in {timeout_s} s")


async def publish(client: PubSubClient, topic: str, rows: list[dict[str, object]]) -> None:
    for i in range(0, len(rows), 500):
        await client.publish(topic, [encode_message(r) for r in rows[i:i + 500]])


async def subscriber_rates(emu: PubSubEmulator, db_url: str, n: int, tmp: Path) -> dict[str, float]:
    client = PubSubClient(project=PROJECT, emulator_host=emu.host)
    out: dict[str, float] = {}
    try:
        # Pull: the backlog is published first, then one subscriber drains it.
        await client.ensure_topic("bench-pull")
        await client.ensure_subscription("bench-pull-sub", "bench-pull", ack_deadline_s=60)
        await truncate_logs(db_url)
        await publish(client, "bench-pull", synthetic(n))
        settings = Settings(data_dir=tmp, database_url=db_url, pubsub_project=PROJECT, pubsub_emulator_host=emu.host,
                            pubsub_subscription="bench-pull-sub", log_level="WARNING", log_batch_size=500)
        print(f"pull: draining {n} events …", flush=True)
        async with pull_subscriber(settings):
            out["pull_inserts_per_s"] = n / await wait_rows(db_url, n)
        # Push: the emulator posts each event to `guardrail subscriber`.
        await truncate_logs(db_url)
        sub = SubscriberProcess(tmp / "subscriber.log", {"GUARDRAIL_DATABASE_URL": db_url,
                                                         "GUARDRAIL_LOG_LEVEL": "WARNING"})
        sub.start()
        try:
            await client.ensure_topic("bench-push")
            await client.ensure_subscription("bench-push-sub", "bench-push", push_endpoint=f"{sub.url}/pubsub/push")
            print(f"push: {n} events through the emulator …", flush=True)
            t0 = time.perf_counter()
            await publish(client, "bench-push", synthetic(n))
            await wait_rows(db_url, n)
            out["push_inserts_per_s"] = n / (time.perf_counter() - t0)
        finally:
            sub.stop()
    finally:
        await client.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine-url")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--out", default=str(ROOT / "bench/results/judgement_logging.json"))
    args = ap.parse_args()
    m, eng, url = engine_for(args.engine_url)
    tmp = Path(tempfile.mkdtemp(prefix="bench-logging-"))
    emu = PubSubEmulator(tmp / "emulator.log")
    emu.start()
    db_name, db_url = create_database("gr_bench_logs")
    upgrade(db_url)
    rows: list[dict[str, object]] = []
    try:
        asyncio.run(PubSubClient(project=PROJECT, emulator_host=emu.host).ensure_topic("bench-judge"))
        modes = {
            "off": {"GUARDRAIL_JUDGEMENT_LOG": "off"},
            "database": {},
            "pubsub": {"GUARDRAIL_PUBSUB_TOPIC": "bench-judge", "GUARDRAIL_PUBSUB_PROJECT": PROJECT,
                       "GUARDRAIL_PUBSUB_EMULATOR_HOST": emu.host},
        }
        for mode, extra in modes.items():
            data = tmp / mode
            data.mkdir()
            serve, base = start_serve(url, m.name, data, {"GUARDRAIL_DATABASE_URL": db_url, **extra})
            try:
                print(f"[{mode}] priming …", flush=True)
                prime(base)
                rows.append({"mode": mode, **run_wrk(base, data, args.connections, args.seconds)})
            finally:
                os.killpg(serve.pid, signal.SIGTERM)
                serve.wait(60)
        rates = asyncio.run(subscriber_rates(emu, db_url, args.events, tmp))
    finally:
        emu.stop()
        drop_database(db_name)
        if eng:
            eng.stop()
    off = next(r for r in rows if r["mode"] == "off")
    print(f"\njudge, cache-hit judgements (8 categories), wrk {args.connections} connections, {args.seconds} s, "
          f"{os.cpu_count()} cores shared by wrk, the service, Redis, PostgreSQL and the emulator\n")
    print(f"{'logging':>9}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'p50/off':>7}  {'p99/off':>7}  {'non-2xx':>7}")
    for r in rows:
        r["p50_ratio"] = float(r["p50_ms"]) / float(off["p50_ms"])  # type: ignore[arg-type]
        r["p99_ratio"] = float(r["p99_ms"]) / float(off["p99_ms"])  # type: ignore[arg-type]
        print(f"{r['mode']:>9}  {r['requests_per_s']:>7.0f}  {r['p50_ms']:>7.2f}  {r['p99_ms']:>7.2f}  "
              f"{r['p50_ratio']:>7.2f}  {r['p99_ratio']:>7.2f}  {r['non_2xx']:>7}")
    print(f"\nlog subscriber into PostgreSQL, {args.events} events: pull {rates['pull_inserts_per_s']:.0f} inserts/s, "
          f"push (emulator → `guardrail subscriber`) {rates['push_inserts_per_s']:.0f} inserts/s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"judge": rows, "subscriber": rates, "events": args.events}, indent=2))


if __name__ == "__main__":
    main()
