"""/dashboard/api: the dashboard's data, for the signed-in session's tenant.

Every route calls the same service and query functions as /admin/v1 (categories.service,
apikeys.service, logs.queries); only the authentication differs (session cookie + CSRF instead of a
bearer token). After a configuration change the tenant's cached contexts are dropped exactly as the
management API does, so the next judge call sees the change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from guardrail.apikeys import service as keys
from guardrail.apikeys.router import ApiKeyCreate, key_dict
from guardrail.categories import service as categories
from guardrail.categories.schemas import CategoryCreate, CategoryRead, CategoryUpdate
from guardrail.dashboard import playground
from guardrail.dashboard.http import DashboardRoute
from guardrail.dashboard.session import TenantSessionDep
from guardrail.deps import SessionDep, get_services
from guardrail.errors import InvalidRequest, NotFound
from guardrail.logs import queries
from guardrail.logs.queries import LogFilter
from guardrail.logs.router import CategoryQ, TextQ, csv_response, judgement_dict
from guardrail.tenants.service import get_tenant

router = APIRouter(prefix="/dashboard/api", include_in_schema=False, route_class=DashboardRoute)

RANGES: dict[str, tuple[timedelta, int]] = {  # preset → (length, bucket width in seconds)
    "1h": (timedelta(hours=1), 300), "24h": (timedelta(hours=24), 3600), "7d": (timedelta(days=7), 6 * 3600),
    "30d": (timedelta(days=30), 86400), "90d": (timedelta(days=90), 7 * 86400),
}
_STEPS = (300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
OffsetQ = Annotated[int, Query(ge=-14 * 3600, le=14 * 3600, description="the browser's UTC offset in seconds")]


def _step_for(span: timedelta, max_buckets: int = 60) -> int:
    return next((s for s in _STEPS if span.total_seconds() / s <= max_buckets), _STEPS[-1])


@router.get("/overview")
async def overview(
    s: TenantSessionDep, db: SessionDep,
    range_: Annotated[Literal["1h", "24h", "7d", "30d", "90d", "custom"], Query(alias="range")] = "24h",
    since: datetime | None = None, until: datetime | None = None, offset_s: OffsetQ = 0,
) -> dict[str, Any]:
    """Volume, flag rates per category, latency p50/p95 and cache hit rate over a time range."""
    assert s.tenant_id is not None
    now = datetime.now(UTC)
    if range_ == "custom":
        if since is None:
            raise InvalidRequest("a custom range needs 'since'", param="since", code="missing_field")
        lo, hi = queries.utc(since), queries.utc(until) or now
        assert lo is not None and hi is not None
        if hi <= lo:
            raise InvalidRequest("'until' must be after 'since'", param="until")
        step = _step_for(hi - lo)
    else:
        span, step = RANGES[range_]
        hi = now
        lo = hi - span
    data = await queries.timeseries(session=db, tenant_id=s.tenant_id, since=lo, until=hi, step_s=step,
                                    offset_s=offset_s)
    cats = await categories.list_categories(session=db, tenant_id=s.tenant_id)
    data["category_names"] = {c.slug: c.name for c in cats}
    data["range"] = range_
    return data


def _filter(since: datetime | None, until: datetime | None, flagged: bool | None, direction: str | None,
            category: str | None, q: str | None) -> LogFilter:
    return LogFilter(since=since, until=until, flagged=flagged, direction=direction, category=category or None,
                     q=q or None)


@router.get("/judgements")
async def list_judgements(
    s: TenantSessionDep, db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
    since: datetime | None = None, until: datetime | None = None, flagged: bool | None = None,
    direction: Literal["input", "output"] | None = None, category: CategoryQ = None, q: TextQ = None,
) -> dict[str, Any]:
    """A keyset page of the filtered log, newest first."""
    assert s.tenant_id is not None
    f = _filter(since, until, flagged, direction, category, q)
    rows, nxt = await queries.page_judgements(session=db, tenant_id=s.tenant_id, f=f, limit=limit, cursor=cursor)
    return {"items": [judgement_dict(j) for j in rows], "next_cursor": nxt}


@router.get("/judgements.csv")
async def export_judgements(
    s: TenantSessionDep, request: Request,
    since: datetime | None = None, until: datetime | None = None, flagged: bool | None = None,
    direction: Literal["input", "output"] | None = None, category: CategoryQ = None, q: TextQ = None,
) -> StreamingResponse:
    """The filtered log as CSV, streamed."""
    assert s.tenant_id is not None
    f = _filter(since, until, flagged, direction, category, q)
    return csv_response(get_services(request).sessions, s.tenant_id, f)


@router.get("/judgements/{judgement_id}")
async def get_judgement(judgement_id: str, s: TenantSessionDep, db: SessionDep) -> dict[str, Any]:
    """One judgement with every score and the reason."""
    assert s.tenant_id is not None
    j = await queries.get_judgement(session=db, tenant_id=s.tenant_id, judgement_id=judgement_id)
    if j is None:
        raise NotFound(f"no judgement {judgement_id!r}", param="judgement_id", code="judgement_not_found")
    return judgement_dict(j)


@router.get("/categories")
async def list_categories(s: TenantSessionDep, db: SessionDep) -> dict[str, Any]:
    """The tenant's categories (defaults as overridden, and its own)."""
    assert s.tenant_id is not None
    t = await get_tenant(session=db, tenant_id=s.tenant_id)
    cats = await categories.list_categories(session=db, tenant_id=s.tenant_id)
    return {"items": [categories.to_read(c) for c in cats], "version": t.category_version}


@router.post("/categories", status_code=201, response_model=CategoryRead)
async def create_category(body: CategoryCreate, s: TenantSessionDep, db: SessionDep, request: Request
                          ) -> CategoryRead:
    """Add a custom category."""
    assert s.tenant_id is not None
    svc = get_services(request)
    c = await categories.create_category(session=db, tenant_id=s.tenant_id, body=body, actor=s.actor,
                                         max_custom=svc.settings.max_custom_categories)
    await db.commit()
    await svc.contexts.invalidate_tenant(s.tenant_id)
    return categories.to_read(c)


@router.patch("/categories/{category_id}", response_model=CategoryRead)
async def update_category(category_id: str, body: CategoryUpdate, s: TenantSessionDep, db: SessionDep,
                          request: Request) -> CategoryRead:
    """Edit a category: name, definition, threshold, enabled, examples."""
    assert s.tenant_id is not None
    c = await categories.update_category(session=db, tenant_id=s.tenant_id, slug=category_id, body=body,
                                         actor=s.actor)
    await db.commit()
    await get_services(request).contexts.invalidate_tenant(s.tenant_id)
    return categories.to_read(c)


@router.delete("/categories/{category_id}", status_code=204)
async def delete_category(category_id: str, s: TenantSessionDep, db: SessionDep, request: Request) -> None:
    """Delete a custom category (defaults can only be disabled)."""
    assert s.tenant_id is not None
    await categories.delete_category(session=db, tenant_id=s.tenant_id, slug=category_id, actor=s.actor)
    await db.commit()
    await get_services(request).contexts.invalidate_tenant(s.tenant_id)


@router.post("/playground")
async def try_draft(body: playground.PlaygroundRequest, s: TenantSessionDep, db: SessionDep, request: Request
                    ) -> dict[str, Any]:
    """Judge a test text and the category's examples against a draft, beside the saved definition."""
    assert s.tenant_id is not None
    saved = None
    if body.category_id is not None:
        saved = await categories.get_category(session=db, tenant_id=s.tenant_id, slug=body.category_id)
    return await playground.run(get_services(request).judge, saved, body)


@router.get("/keys")
async def list_keys(s: TenantSessionDep, db: SessionDep) -> dict[str, Any]:
    """The tenant's keys (prefixes only)."""
    assert s.tenant_id is not None
    return {"items": [key_dict(k) for k in await keys.list_keys(session=db, tenant_id=s.tenant_id)],
            "current_key_id": s.key_id}


@router.post("/keys", status_code=201)
async def issue_key(body: ApiKeyCreate, s: TenantSessionDep, db: SessionDep) -> dict[str, Any]:
    """Issue a key; the secret is in this response only."""
    assert s.tenant_id is not None
    k, secret = await keys.issue_key(session=db, tenant_id=s.tenant_id, kind=body.kind, name=body.name,
                                     actor=s.actor)
    await db.commit()
    await db.refresh(k)
    return {**key_dict(k), "key": secret}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, s: TenantSessionDep, db: SessionDep, request: Request) -> dict[str, Any]:
    """Revoke a key; it stops working at once."""
    assert s.tenant_id is not None
    k = await keys.revoke_key(session=db, tenant_id=s.tenant_id, key_id=key_id, actor=s.actor)
    await db.commit()
    await get_services(request).contexts.forget_key_id(k.id, s.tenant_id)
    return key_dict(k)
