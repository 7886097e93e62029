"""/admin/v1/tenants: create (platform admin), list, read, update settings; audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from guardrail import audit
from guardrail.deps import AdminDep, SessionDep, get_services
from guardrail.errors import ADMIN_ERROR_RESPONSES
from guardrail.tenants import service
from guardrail.tenants.service import tenant_dict

router = APIRouter(prefix="/admin/v1/tenants", tags=["tenants"], responses=ADMIN_ERROR_RESPONSES)


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    fail_mode: Literal["open", "closed"] = "closed"
    log_text_mode: Literal["full", "masked", "hash"] = "full"
    cache_enabled: bool = True


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    fail_mode: Literal["open", "closed"] | None = None
    log_text_mode: Literal["full", "masked", "hash"] | None = None
    cache_enabled: bool | None = None


@router.get("")
async def list_tenants(who: AdminDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                       offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Tenants visible to the caller (a tenant admin sees only its own)."""
    rows, total = await service.list_tenants(session=session, limit=limit, offset=offset, only=who.tenant_id)
    return {"items": [tenant_dict(t) for t in rows], "total": total, "limit": limit, "offset": offset}


@router.post("", status_code=201)
async def create_tenant(body: TenantCreate, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Create a tenant with the eight default categories (platform admin only)."""
    who.require_platform()
    t = await service.create_tenant(session=session, actor=who.actor, **body.model_dump())
    await session.flush()
    await session.refresh(t)
    return tenant_dict(t)


@router.get("/{tenant_id}")
async def get_tenant(tenant_id: str, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """One tenant's settings."""
    who.check(tenant_id)
    return tenant_dict(await service.get_tenant(session=session, tenant_id=tenant_id))


@router.patch("/{tenant_id}")
async def update_tenant(tenant_id: str, body: TenantUpdate, who: AdminDep, session: SessionDep,
                        request: Request) -> dict[str, Any]:
    """Change a tenant's name, fail mode, log text mode or cache opt-out."""
    who.check(tenant_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    t = await service.update_tenant(session=session, tenant_id=tenant_id, actor=who.actor, changes=changes)
    await session.commit()
    await get_services(request).contexts.invalidate_tenant(tenant_id)
    return tenant_dict(t)


@router.get("/{tenant_id}/audit")
async def list_audit(tenant_id: str, who: AdminDep, session: SessionDep,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100,
                     before_id: Annotated[int | None, Query(description="Cursor: entries older than this id")] = None
                     ) -> dict[str, Any]:
    """Configuration changes, newest first."""
    who.check(tenant_id)
    await service.get_tenant(session=session, tenant_id=tenant_id)
    rows = await audit.list_entries(session=session, tenant_id=tenant_id, limit=limit, before_id=before_id)
    items = [{"id": a.id, "actor": a.actor, "action": a.action, "target": a.target, "before": a.before,
              "after": a.after, "created_at": a.created_at.isoformat()} for a in rows]
    return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}
