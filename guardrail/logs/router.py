"""/admin/v1/tenants/{tenant_id}/judgements (paginated, filterable, one by id, CSV) and /stats[/timeseries]."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guardrail.db.models import Judgement
from guardrail.deps import AdminDep, SessionDep, get_services
from guardrail.errors import ADMIN_ERROR_RESPONSES, NotFound
from guardrail.logs import queries
from guardrail.logs.queries import LogFilter
from guardrail.tenants.service import get_tenant

router = APIRouter(prefix="/admin/v1/tenants/{tenant_id}", tags=["judgements"], responses=ADMIN_ERROR_RESPONSES)

CategoryQ = Annotated[str | None, Query(max_length=64, description="only judgements that flagged this category")]
TextQ = Annotated[str | None, Query(max_length=200, description="substring of the stored text")]
CSV_COLUMNS = ("id", "created_at", "direction", "flagged", "flagged_categories", "scores", "latency_ms", "cached",
               "model", "text_mode", "text", "prompt", "reason", "api_key_id")


def judgement_dict(j: Judgement) -> dict[str, Any]:
    return {"id": j.id, "direction": j.direction, "flagged": j.flagged, "flagged_categories": j.flagged_categories,
            "scores": j.scores, "model": j.model, "latency_ms": j.latency_ms, "cached": j.cached, "text": j.text,
            "prompt": j.prompt, "text_sha256": j.text_sha256, "text_mode": j.text_mode, "reason": j.reason,
            "api_key_id": j.api_key_id, "created_at": queries.iso(j.created_at)}


def _cell(v: Any) -> str:
    s = v if isinstance(v, str) else ("" if v is None else str(v))
    # Logged texts are attacker-controlled: a cell a spreadsheet would run as a formula gets a quote.
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def csv_row(j: Judgement) -> list[str]:
    d = judgement_dict(j)
    d["flagged_categories"] = " ".join(j.flagged_categories or [])
    d["scores"] = json.dumps({k: (v or {}).get("score") for k, v in (j.scores or {}).items()}, ensure_ascii=False)
    return [_cell(d[c]) for c in CSV_COLUMNS]


async def csv_stream(sessions: async_sessionmaker[AsyncSession], tenant_id: str, f: LogFilter
                     ) -> AsyncIterator[bytes]:
    """The filtered log as CSV (UTF-8 with BOM, for spreadsheets), streamed in keyset chunks."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    yield ("\ufeff" + buf.getvalue()).encode()
    async with sessions() as session:
        async for rows in queries.iter_judgements(session=session, tenant_id=tenant_id, f=f):
            buf.seek(0)
            buf.truncate()
            w.writerows(csv_row(j) for j in rows)
            yield buf.getvalue().encode()


def csv_response(sessions: async_sessionmaker[AsyncSession], tenant_id: str, f: LogFilter) -> StreamingResponse:
    name = f"judgements-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.csv"
    return StreamingResponse(csv_stream(sessions, tenant_id, f), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/judgements")
async def list_judgements(
    tenant_id: str, who: AdminDep, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    since: datetime | None = None, until: datetime | None = None,
    flagged: bool | None = None, direction: Literal["input", "output"] | None = None,
    category: CategoryQ = None, q: TextQ = None,
) -> dict[str, Any]:
    """The judgement log, newest first (keyset pagination)."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    f = LogFilter(since=since, until=until, flagged=flagged, direction=direction, category=category, q=q)
    rows, nxt = await queries.page_judgements(session=session, tenant_id=tenant_id, f=f, limit=limit, cursor=cursor)
    return {"items": [judgement_dict(j) for j in rows], "next_cursor": nxt}


@router.get("/judgements.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "the filtered log as CSV"}})
async def export_judgements(
    tenant_id: str, who: AdminDep, session: SessionDep, request: Request,
    since: datetime | None = None, until: datetime | None = None,
    flagged: bool | None = None, direction: Literal["input", "output"] | None = None,
    category: CategoryQ = None, q: TextQ = None,
) -> StreamingResponse:
    """The filtered judgement log as CSV (UTF-8 with BOM), newest first, streamed."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    f = LogFilter(since=since, until=until, flagged=flagged, direction=direction, category=category, q=q)
    return csv_response(get_services(request).sessions, tenant_id, f)


@router.get("/judgements/{judgement_id}")
async def get_judgement(tenant_id: str, judgement_id: str, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """One judgement with every category's score, threshold and the reason."""
    who.check(tenant_id)
    j = await queries.get_judgement(session=session, tenant_id=tenant_id, judgement_id=judgement_id)
    if j is None:
        raise NotFound(f"no judgement {judgement_id!r}", param="judgement_id", code="judgement_not_found")
    return judgement_dict(j)


@router.get("/stats")
async def stats(tenant_id: str, who: AdminDep, session: SessionDep,
                since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Totals for a time range: judgements, flagged, cached, mean latency."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    return await queries.totals(session=session, tenant_id=tenant_id, since=since, until=until)


@router.get("/stats/timeseries")
async def stats_timeseries(
    tenant_id: str, who: AdminDep, session: SessionDep,
    since: Annotated[datetime | None, Query(description="default: 24 h before `until`")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
    step_s: Annotated[int, Query(ge=60, le=31 * 86400, description="bucket width in seconds")] = 3600,
    offset_s: Annotated[int, Query(ge=-14 * 3600, le=14 * 3600,
                                   description="UTC offset of the viewer: day buckets start at local midnight")] = 0,
) -> dict[str, Any]:
    """Per time bucket: volume, flags (in all and per category), cache hits, latency p50/p95."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    u = queries.utc(until) or datetime.now(UTC)
    s = queries.utc(since) or u - timedelta(hours=24)
    return await queries.timeseries(session=session, tenant_id=tenant_id, since=s, until=u, step_s=step_s,
                                    offset_s=offset_s)
