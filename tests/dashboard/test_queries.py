"""Judgement-log queries on SQLite and on the real PostgreSQL, checked against plain Python over the same rows."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail.db.models import Judgement
from guardrail.db.session import make_engine, make_sessionmaker, upgrade
from guardrail.logs import queries
from guardrail.logs.queries import LogFilter
from inference.launcher import LocalEngine
from tests.conftest import admin, app_client, make_settings, tenant_id
from tests.guardrail.pg import create_database, drop_database

T, OTHER = "t" * 32, "u" * 32
CATS = ["violence", "self_harm", "privacy", "investment_advice"]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))


def make_rows(n: int = 600, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tenant = OTHER if i % 10 == 9 else T
        flagged = [c for c in CATS if rng.random() < 0.12]
        # Several rows share a timestamp: keyset pages must order ties by id and never skip one.
        created = NOW - timedelta(minutes=7 * (i // 3), seconds=rng.choice([0, 0, 13]))
        text = rng.choice(["こんにちは", "割引100%_OK です", "=HYPERLINK(\"x\")", "爆弾の作り方", "<b>太字</b>"])
        rows.append({
            "id": f"jdg_{i:05d}_{rng.randrange(16**6):06x}", "tenant_id": tenant, "api_key_id": None,
            "direction": rng.choice(["input", "output"]), "flagged": bool(flagged), "flagged_categories": flagged,
            "scores": {c: {"score": 0.9 if c in flagged else 0.1, "threshold": 0.5, "flagged": c in flagged,
                           "name": c} for c in CATS},
            "model": "m", "latency_ms": round(rng.lognormvariate(5, 0.6), 3), "cached": rng.random() < 0.3,
            "text": text, "prompt": None, "text_sha256": "0" * 64, "text_mode": "full", "reason": None,
            "created_at": created, "logged_at": created,
        })
    return rows


ROWS = make_rows()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    name, url = create_database("gr_dashq")
    upgrade(url)
    yield url
    drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[AsyncSession]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
        await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
    else:
        url = pg_url
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(Judgement.__table__.delete())
        await conn.execute(insert(Judgement), ROWS)
    async with make_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()


def expected(f: LogFilter, tenant: str = T) -> list[str]:
    def keep(r: dict[str, Any]) -> bool:
        return (r["tenant_id"] == tenant and (f.since is None or r["created_at"] >= f.since)
                and (f.until is None or r["created_at"] < f.until)
                and (f.flagged is None or r["flagged"] == f.flagged)
                and (f.direction is None or r["direction"] == f.direction)
                and (f.category is None or f.category in r["flagged_categories"])
                and (f.q is None or f.q in r["text"]))
    rows = sorted(filter(keep, ROWS), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [r["id"] for r in rows]


FILTERS = [
    LogFilter(),
    LogFilter(category="privacy"),
    LogFilter(category="investment_advice", direction="output"),
    LogFilter(flagged=False, direction="input"),
    LogFilter(q="100%_"),  # LIKE wildcards are matched literally
    LogFilter(q="%"),
    LogFilter(since=NOW - timedelta(hours=10), until=(NOW - timedelta(hours=3)).astimezone(JST), flagged=True),
    LogFilter(category="nope"),
]


@pytest.mark.parametrize("f", FILTERS, ids=repr)
async def test_keyset_pages_walk_exactly_the_filtered_rows(db: AsyncSession, f: LogFilter) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        rows, cursor = await queries.page_judgements(session=db, tenant_id=T, f=f, limit=37, cursor=cursor)
        seen += [j.id for j in rows]
        assert len(rows) == 37 or cursor is None
        if cursor is None:
            break
    assert seen == expected(f)


async def test_a_judgement_is_found_only_in_its_own_tenant(db: AsyncSession) -> None:
    mine = next(r for r in ROWS if r["tenant_id"] == T)["id"]
    theirs = next(r for r in ROWS if r["tenant_id"] == OTHER)["id"]
    assert (await queries.get_judgement(session=db, tenant_id=T, judgement_id=mine)) is not None
    assert await queries.get_judgement(session=db, tenant_id=T, judgement_id=theirs) is None


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[math.ceil(p * len(s)) - 1]


@pytest.mark.parametrize(("hours", "step", "offset"), [(24, 3600, 9 * 3600), (72, 86400, 9 * 3600), (6, 900, 0)])
async def test_timeseries_matches_plain_python(db: AsyncSession, hours: int, step: int, offset: int) -> None:
    since, until = NOW - timedelta(hours=hours), NOW + timedelta(minutes=1)
    got = await queries.timeseries(session=db, tenant_id=T, since=since, until=until, step_s=step, offset_s=offset)
    rows = [r for r in ROWS if r["tenant_id"] == T and since <= r["created_at"] < until]
    starts = queries.bucket_starts(since, until, step, offset)
    assert [b["t"] for b in got["buckets"]] == starts
    assert all((t + offset) % step == 0 for t in starts)  # aligned to local midnight/hours
    by_bucket: dict[int, list[dict[str, Any]]] = {t: [] for t in starts}
    for r in rows:
        epoch = int(r["created_at"].timestamp())
        by_bucket[(epoch + offset) // step * step - offset].append(r)
    for b in got["buckets"]:
        rs = by_bucket[b["t"]]
        assert (b["judgements"], b["flagged"], b["cached"]) == (
            len(rs), sum(r["flagged"] for r in rs), sum(r["cached"] for r in rs))
        assert b["p50_ms"] == nearest_rank([r["latency_ms"] for r in rs], 0.5)
        assert b["p95_ms"] == nearest_rank([r["latency_ms"] for r in rs], 0.95)
    tot = got["totals"]
    assert tot["judgements"] == len(rows) and tot["flagged"] == sum(r["flagged"] for r in rows)
    assert tot["p50_ms"] == nearest_rank([r["latency_ms"] for r in rows], 0.5)
    assert tot["p95_ms"] == nearest_rank([r["latency_ms"] for r in rows], 0.95)
    assert tot["cache_hit_rate"] == pytest.approx(sum(r["cached"] for r in rows) / len(rows))
    for c in CATS:
        series = [sum(c in r["flagged_categories"] for r in by_bucket[t]) for t in starts]
        if sum(series):
            assert got["categories"][c] == {"flagged": sum(series), "series": series}
        else:
            assert c not in got["categories"]


async def test_empty_ranges_and_too_many_buckets(db: AsyncSession) -> None:
    from guardrail.errors import InvalidRequest

    got = await queries.timeseries(session=db, tenant_id="nobody", since=NOW - timedelta(hours=2), until=NOW,
                                   step_s=3600)
    assert got["totals"]["judgements"] == 0 and got["totals"]["p50_ms"] is None and got["categories"] == {}
    assert [b["judgements"] for b in got["buckets"]] == [0, 0]
    with pytest.raises(InvalidRequest):
        await queries.timeseries(session=db, tenant_id=T, since=NOW - timedelta(days=30), until=NOW, step_s=60)


async def test_admin_api_keeps_its_shapes_and_adds_csv_detail_and_timeseries(engine: LocalEngine,
                                                                              tmp_path: Path) -> None:
    async with app_client(make_settings(tmp_path, inference_url=engine.url)) as c:
        tid = await tenant_id(c)
        engine_ = make_engine(make_settings(tmp_path).sqlalchemy_url)
        async with engine_.begin() as conn:
            await conn.execute(insert(Judgement), [{**r, "tenant_id": tid if r["tenant_id"] == T else r["tenant_id"]}
                                                   for r in ROWS])
        await engine_.dispose()
        base = f"/admin/v1/tenants/{tid}"
        page = (await c.get(f"{base}/judgements", params={"limit": 5, "category": "privacy"}, headers=admin())).json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) == 5
        assert set(page["items"][0]) == {"id", "direction", "flagged", "flagged_categories", "scores", "model",
                                         "latency_ms", "cached", "text", "prompt", "text_sha256", "text_mode",
                                         "reason", "api_key_id", "created_at"}
        assert datetime.fromisoformat(page["items"][0]["created_at"]).tzinfo is not None
        stats = (await c.get(f"{base}/stats", headers=admin())).json()
        assert set(stats) == {"judgements", "flagged", "cached", "flag_rate", "mean_latency_ms"}
        assert stats["judgements"] == len(expected(LogFilter()))
        one = (await c.get(f"{base}/judgements/{page['items'][0]['id']}", headers=admin())).json()
        assert one == page["items"][0]
        theirs = next(r for r in ROWS if r["tenant_id"] == OTHER)["id"]
        assert (await c.get(f"{base}/judgements/{theirs}", headers=admin())).status_code == 404
        ts = (await c.get(f"{base}/stats/timeseries", headers=admin(), params={
            "since": (NOW - timedelta(days=2)).isoformat(), "until": NOW.isoformat(), "step_s": 86400})).json()
        assert ts["totals"]["judgements"] > 0 and len(ts["buckets"]) == 3

        r = await c.get(f"{base}/judgements.csv", params={"category": "privacy"}, headers=admin())
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.content.startswith("\ufeff".encode())
        table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert [row["id"] for row in table] == expected(LogFilter(category="privacy"))
        formulas = [row["text"] for row in table if "HYPERLINK" in row["text"]]
        assert formulas and all(t.startswith("'=") for t in formulas)  # no spreadsheet formula injection


async def test_csv_export_is_streamed_in_keyset_chunks(db: AsyncSession) -> None:
    from guardrail.logs.router import csv_stream

    assert db.bind is not None
    chunks = [c async for c in csv_stream(make_sessionmaker(db.bind), T, LogFilter())]  # type: ignore[arg-type]
    want = expected(LogFilter())
    # The header goes out before any query; then one chunk per 500-row keyset page, never the whole log at once.
    assert chunks[0].startswith("\ufeffid,created_at".encode()) and chunks[0].count(b"\n") == 1
    assert len(chunks) == 1 + math.ceil(len(want) / 500)
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    assert [r["id"] for r in rows] == want
