"""/admin/v1/tenants/{tenant_id}/judgements (paginated, filterable) and /stats."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import and_, case, func, or_, select

from guardrail.db.models import Judgement
from guardrail.deps import AdminDep, SessionDep
from guardrail.errors import ADMIN_ERROR_RESPONSES, InvalidRequest
from guardrail.tenants.service import get_tenant

router = APIRouter(prefix="/admin/v1/tenants/{tenant_id}", tags=["judgements"], responses=ADMIN_ERROR_RESPONSES)


def judgement_dict(j: Judgement) -> dict[str, Any]:
    return {"id": j.id, "direction": j.direction, "flagged": j.flagged, "flagged_categories": j.flagged_categories,
            "scores": j.scores, "model": j.model, "latency_ms": j.latency_ms, "cached": j.cached, "text": j.text,
            "prompt": j.prompt, "text_sha256": j.text_sha256, "text_mode": j.text_mode, "reason": j.reason,
            "api_key_id": j.api_key_id, "created_at": j.created_at.isoformat()}


def _cursor(j: Judgement) -> str:
    return base64.urlsafe_b64encode(f"{j.created_at.isoformat()}|{j.id}".encode()).decode()


def _decode_cursor(c: str) -> tuple[datetime, str]:
    try:
        ts, _, jid = base64.urlsafe_b64decode(c.encode()).decode().partition("|")
        return datetime.fromisoformat(ts), jid
    except ValueError as exc:
        raise InvalidRequest("malformed cursor", param="cursor", code="invalid_cursor") from exc


@router.get("/judgements")
async def list_judgements(
    tenant_id: str, who: AdminDep, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    since: datetime | None = None, until: datetime | None = None,
    flagged: bool | None = None, direction: Literal["input", "output"] | None = None,
    category: Annotated[str | None, Query(description="only judgements that flagged this category")] = None,
    q: Annotated[str | None, Query(max_length=200, description="substring of the stored text")] = None,
) -> dict[str, Any]:
    """The judgement log, newest first (keyset pagination)."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    conds = [Judgement.tenant_id == tenant_id]
    if since is not None:
        conds.append(Judgement.created_at >= since)
    if until is not None:
        conds.append(Judgement.created_at < until)
    if flagged is not None:
        conds.append(Judgement.flagged.is_(flagged))
    if direction is not None:
        conds.append(Judgement.direction == direction)
    if q:
        conds.append(Judgement.text.contains(q, autoescape=True))
    if cursor:
        ts, jid = _decode_cursor(cursor)
        conds.append(or_(Judgement.created_at < ts, and_(Judgement.created_at == ts, Judgement.id < jid)))
    stmt = select(Judgement).where(*conds).order_by(Judgement.created_at.desc(), Judgement.id.desc())
    if category is None:
        rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    else:
        # flagged_categories is a JSON list; filter in Python over flagged rows, page by page.
        stmt = stmt.where(Judgement.flagged.is_(True))
        rows, offset = [], 0
        while len(rows) <= limit:
            chunk = list((await session.scalars(stmt.limit(1000).offset(offset))).all())
            rows += [j for j in chunk if category in (j.flagged_categories or [])]
            if len(chunk) < 1000:
                break
            offset += 1000
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [judgement_dict(j) for j in rows], "next_cursor": _cursor(rows[-1]) if more else None}


@router.get("/stats")
async def stats(tenant_id: str, who: AdminDep, session: SessionDep,
                since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Totals for a time range: judgements, flagged, cached, mean latency."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    conds = [Judgement.tenant_id == tenant_id]
    if since is not None:
        conds.append(Judgement.created_at >= since)
    if until is not None:
        conds.append(Judgement.created_at < until)
    row = (await session.execute(select(
        func.count(), func.sum(case((Judgement.flagged.is_(True), 1), else_=0)),
        func.sum(case((Judgement.cached.is_(True), 1), else_=0)), func.avg(Judgement.latency_ms),
    ).where(*conds))).one()
    total = int(row[0] or 0)
    return {"judgements": total, "flagged": int(row[1] or 0), "cached": int(row[2] or 0),
            "flag_rate": (int(row[1] or 0) / total) if total else 0.0,
            "mean_latency_ms": float(row[3]) if row[3] is not None else None}
