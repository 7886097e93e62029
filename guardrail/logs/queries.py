"""Judgement-log queries shared by the management API and the dashboard.

Pages are keyset pages on (created_at, id), newest first — never OFFSET — so page 1,000 of a large log
costs what page 1 does. Statistics are grouped by time bucket in SQL. Per-category flag counts are
grouped by the *distinct* flagged-category lists (a few dozen) and split in Python: on PostgreSQL that
is several times cheaper than unnesting every row's JSON list. The category filter uses a GIN index on
`flagged_categories::jsonb` on PostgreSQL (migration 0002) and `json_each` on SQLite.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, cast, exists, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from guardrail.db.models import Judgement
from guardrail.errors import InvalidRequest

J = Judgement
MAX_BUCKETS = 1000


def utc(dt: datetime | None) -> datetime | None:
    """Aware UTC; naive input is taken as UTC (SQLite hands back, and stores, naive UTC)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 with the UTC offset, also for SQLite's naive values."""
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).isoformat()


@dataclass(frozen=True, slots=True)
class LogFilter:
    """The log explorer's filters; every field is optional and they combine with AND."""

    since: datetime | None = None
    until: datetime | None = None
    flagged: bool | None = None
    direction: str | None = None
    category: str | None = None  # judgements that flagged this category
    q: str | None = None  # substring of the stored text


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _category_cond(category: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # Matches the expression of ix_judgements_flagged_categories (GIN, jsonb_path_ops).
        return cast(J.flagged_categories, JSONB).contains([category])
    each = func.json_each(J.flagged_categories).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == category))


def conditions(*, tenant_id: str, f: LogFilter, dialect: str) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [J.tenant_id == tenant_id]
    if f.since is not None:
        conds.append(J.created_at >= utc(f.since))
    if f.until is not None:
        conds.append(J.created_at < utc(f.until))
    if f.flagged is not None:
        conds.append(J.flagged.is_(f.flagged))
    if f.direction is not None:
        conds.append(J.direction == f.direction)
    if f.category:
        # A judgement that flagged a category is flagged; saying so lets the (tenant, flagged, time)
        # index narrow the scan before the JSON test.
        conds += [J.flagged.is_(True), _category_cond(f.category, dialect)]
    if f.q:
        conds.append(J.text.contains(f.q, autoescape=True))
    return conds


def encode_cursor(j: Judgement) -> str:
    return base64.urlsafe_b64encode(f"{j.created_at.isoformat()}|{j.id}".encode()).decode()


def decode_cursor(c: str) -> tuple[datetime, str]:
    try:
        ts, sep, jid = base64.urlsafe_b64decode(c.encode()).decode().partition("|")
        if not sep or not jid:
            raise ValueError("no id")
        return utc(datetime.fromisoformat(ts)) or datetime.now(UTC), jid
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("malformed cursor", param="cursor", code="invalid_cursor") from exc


async def page_judgements(*, session: AsyncSession, tenant_id: str, f: LogFilter, limit: int,
                          cursor: str | None = None) -> tuple[list[Judgement], str | None]:
    """One page of the log, newest first, and the cursor of the next page (None on the last)."""
    conds = conditions(tenant_id=tenant_id, f=f, dialect=_dialect(session))
    if cursor:
        ts, jid = decode_cursor(cursor)
        conds.append(tuple_(J.created_at, J.id) < tuple_(ts, jid))
    stmt = select(J).where(*conds).order_by(J.created_at.desc(), J.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


async def iter_judgements(*, session: AsyncSession, tenant_id: str, f: LogFilter, chunk: int = 500
                          ) -> AsyncIterator[list[Judgement]]:
    """Every matching judgement, newest first, in keyset chunks (for streaming exports)."""
    cursor: str | None = None
    while True:
        rows, cursor = await page_judgements(session=session, tenant_id=tenant_id, f=f, limit=chunk, cursor=cursor)
        if rows:
            yield rows
        session.expunge_all()  # a long export must not keep every row in the identity map
        if cursor is None:
            return


async def get_judgement(*, session: AsyncSession, tenant_id: str, judgement_id: str) -> Judgement | None:
    """One judgement of the tenant (None for another tenant's, exactly like a missing one)."""
    return await session.scalar(select(J).where(J.tenant_id == tenant_id, J.id == judgement_id))


async def totals(*, session: AsyncSession, tenant_id: str, since: datetime | None, until: datetime | None
                 ) -> dict[str, Any]:
    """Judgements, flagged, cached and mean latency in a time range (the /stats shape)."""
    conds = conditions(tenant_id=tenant_id, f=LogFilter(since=since, until=until), dialect=_dialect(session))
    row = (await session.execute(select(
        func.count(), func.coalesce(func.sum(cast(J.flagged, Integer)), 0),
        func.coalesce(func.sum(cast(J.cached, Integer)), 0), func.avg(J.latency_ms),
    ).where(*conds))).one()
    total, flagged = int(row[0] or 0), int(row[1] or 0)
    return {"judgements": total, "flagged": flagged, "cached": int(row[2] or 0),
            "flag_rate": (flagged / total) if total else 0.0,
            "mean_latency_ms": float(row[3]) if row[3] is not None else None}


def bucket_starts(since: datetime, until: datetime, step_s: int, offset_s: int = 0) -> list[int]:
    """Epoch seconds of every bucket overlapping [since, until); buckets align to local midnight by offset_s."""
    lo, hi = int(since.timestamp()), int(until.timestamp())
    first = (lo + offset_s) // step_s * step_s - offset_s
    n = max(0, -(-(hi - first) // step_s))
    if n > MAX_BUCKETS:
        raise InvalidRequest(f"{n} buckets; at most {MAX_BUCKETS}: choose a larger step", param="step_s",
                             code="too_many_buckets")
    return [first + i * step_s for i in range(n)]


def _bucket_expr(dialect: str, step_s: int, offset_s: int) -> ColumnElement[Any]:
    step, off = int(step_s), int(offset_s)  # ints only: these are formatted into SQL
    if dialect == "postgresql":
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14 and ~2x slower here.
        sql = f"(floor((date_part('epoch', judgements.created_at) + {off}) / {step}) * {step} - {off})::bigint"
    else:
        sql = f"((CAST(strftime('%s', judgements.created_at) AS INTEGER) + {off}) / {step} * {step} - {off})"
    return literal_column(sql, Integer).label("bucket")


@dataclass(slots=True)
class _Agg:
    judgements: int = 0
    flagged: int = 0
    cached: int = 0
    latency_sum: float = 0.0
    p50: float | None = None
    p95: float | None = None


async def _pg_buckets(session: AsyncSession, conds: Sequence[ColumnElement[bool]], b: ColumnElement[Any]
                      ) -> tuple[dict[int, _Agg], _Agg]:
    # GROUPING SETS: the per-bucket rows and the range's own row (bucket NULL) from one scan.
    stmt = select(b, func.count(), func.sum(cast(J.flagged, Integer)), func.sum(cast(J.cached, Integer)),
                  func.sum(J.latency_ms),
                  func.percentile_disc(0.5).within_group(J.latency_ms),
                  func.percentile_disc(0.95).within_group(J.latency_ms),
                  ).where(*conds).group_by(func.grouping_sets(tuple_(b), tuple_()))
    out: dict[int, _Agg] = {}
    total = _Agg()
    for row in (await session.execute(stmt)).all():
        agg = _Agg(int(row[1]), int(row[2] or 0), int(row[3] or 0), float(row[4] or 0.0),
                   _f(row[5]), _f(row[6]))
        if row[0] is None:
            total = agg
        else:
            out[int(row[0])] = agg
    return out, total


async def _sqlite_buckets(session: AsyncSession, conds: Sequence[ColumnElement[bool]], b: ColumnElement[Any]
                          ) -> tuple[dict[int, _Agg], _Agg]:
    stmt = select(b, func.count(), func.sum(cast(J.flagged, Integer)), func.sum(cast(J.cached, Integer)),
                  func.sum(J.latency_ms)).where(*conds).group_by(b)
    out = {int(r[0]): _Agg(int(r[1]), int(r[2] or 0), int(r[3] or 0), float(r[4] or 0.0))
           for r in (await session.execute(stmt)).all()}
    total = _Agg(sum(a.judgements for a in out.values()), sum(a.flagged for a in out.values()),
                 sum(a.cached for a in out.values()), sum(a.latency_sum for a in out.values()))
    # No percentile aggregate in SQLite: nearest-rank from a window (the same definition as
    # PostgreSQL's percentile_disc), per bucket and for the whole range.
    for part, target in ((b, None), (literal_column("0"), total)):
        inner = select(b, J.latency_ms.label("lat"),
                       func.row_number().over(partition_by=part, order_by=J.latency_ms).label("rn"),
                       func.count().over(partition_by=part).label("n")).where(*conds).subquery()
        rank50, rank95 = (inner.c.n * 50 + 99) // 100, (inner.c.n * 95 + 99) // 100
        picks = select(inner.c.bucket, inner.c.lat, inner.c.rn, rank50, rank95).where(
            (inner.c.rn == cast(rank50, Integer)) | (inner.c.rn == cast(rank95, Integer)))
        for bucket, lat, rn, r50, r95 in (await session.execute(picks)).all():
            agg = target if target is not None else out[int(bucket)]
            if rn == int(r50):
                agg.p50 = float(lat)
            if rn == int(r95):
                agg.p95 = float(lat)
    return out, total


def _f(v: Any) -> float | None:
    return float(v) if v is not None else None


async def timeseries(*, session: AsyncSession, tenant_id: str, since: datetime, until: datetime, step_s: int,
                     offset_s: int = 0) -> dict[str, Any]:
    """Volume, flags (in all and per category), cache hits and latency p50/p95 per time bucket.

    Args:
        since, until: the range [since, until).
        step_s: bucket width in seconds (≥ 60; at most MAX_BUCKETS buckets).
        offset_s: the viewer's UTC offset, so that day buckets start at local midnight.

    Returns:
        ``{"since", "until", "step_s", "offset_s", "totals": {...}, "buckets": [{"t", "judgements",
        "flagged", "cached", "p50_ms", "p95_ms"}], "categories": {id: {"flagged", "series"}}}``; per-category
        flag rates are flags over all judgements of the bucket.
    """
    s, u = utc(since), utc(until)
    assert s is not None and u is not None
    if step_s < 60:
        raise InvalidRequest("step_s must be at least 60", param="step_s")
    starts = bucket_starts(s, u, step_s, offset_s)
    dialect = _dialect(session)
    conds = conditions(tenant_id=tenant_id, f=LogFilter(since=s, until=u), dialect=dialect)
    b = _bucket_expr(dialect, step_s, offset_s)
    per, total = await (_pg_buckets if dialect == "postgresql" else _sqlite_buckets)(session, conds, b)

    combos = select(b, cast(J.flagged_categories, String), func.count()).where(*conds, J.flagged.is_(True)) \
        .group_by(b, cast(J.flagged_categories, String))
    index = {t: i for i, t in enumerate(starts)}
    cats: dict[str, dict[str, Any]] = {}
    for bucket, raw, n in (await session.execute(combos)).all():
        for cid in json.loads(raw or "[]"):
            c = cats.setdefault(str(cid), {"flagged": 0, "series": [0] * len(starts)})
            c["flagged"] += int(n)
            if (i := index.get(int(bucket))) is not None:
                c["series"][i] += int(n)

    buckets = []
    for t in starts:
        a = per.get(t, _Agg())
        buckets.append({"t": t, "judgements": a.judgements, "flagged": a.flagged, "cached": a.cached,
                        "p50_ms": a.p50, "p95_ms": a.p95})
    n = total.judgements
    return {
        "since": s.isoformat(), "until": u.isoformat(), "step_s": step_s, "offset_s": offset_s,
        "totals": {"judgements": n, "flagged": total.flagged, "cached": total.cached,
                   "flag_rate": total.flagged / n if n else 0.0, "cache_hit_rate": total.cached / n if n else 0.0,
                   "mean_latency_ms": total.latency_sum / n if n else None,
                   "p50_ms": total.p50, "p95_ms": total.p95},
        "buckets": buckets,
        "categories": dict(sorted(cats.items())),
    }
