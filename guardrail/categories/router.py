"""/admin/v1/tenants/{tenant_id}/categories[/{category_id}]: list, create, read, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from guardrail.categories import service
from guardrail.categories.schemas import CategoryCreate, CategoryRead, CategoryUpdate
from guardrail.deps import AdminDep, SessionDep, get_services
from guardrail.errors import ADMIN_ERROR_RESPONSES
from guardrail.tenants.service import get_tenant

router = APIRouter(prefix="/admin/v1/tenants/{tenant_id}/categories", tags=["categories"],
                   responses=ADMIN_ERROR_RESPONSES)


@router.get("")
async def list_categories(tenant_id: str, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """The tenant's categories: the eight defaults (as overridden) and its own."""
    who.check(tenant_id)
    t = await get_tenant(session=session, tenant_id=tenant_id)
    cats = await service.list_categories(session=session, tenant_id=tenant_id)
    return {"items": [service.to_read(c) for c in cats], "version": t.category_version}


@router.post("", status_code=201, response_model=CategoryRead)
async def create_category(tenant_id: str, body: CategoryCreate, who: AdminDep, session: SessionDep,
                          request: Request) -> CategoryRead:
    """Add a custom category written in plain Japanese; it is judged from the next request on."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    svc = get_services(request)
    c = await service.create_category(session=session, tenant_id=tenant_id, body=body, actor=who.actor,
                                      max_custom=svc.settings.max_custom_categories)
    await session.commit()
    await svc.contexts.invalidate_tenant(tenant_id)
    return service.to_read(c)


@router.get("/{category_id}", response_model=CategoryRead)
async def get_category(tenant_id: str, category_id: str, who: AdminDep, session: SessionDep) -> CategoryRead:
    """One category."""
    who.check(tenant_id)
    return service.to_read(await service.get_category(session=session, tenant_id=tenant_id, slug=category_id))


@router.patch("/{category_id}", response_model=CategoryRead)
async def update_category(tenant_id: str, category_id: str, body: CategoryUpdate, who: AdminDep,
                          session: SessionDep, request: Request) -> CategoryRead:
    """Override a default's definition/threshold, disable it, or edit a custom category."""
    who.check(tenant_id)
    c = await service.update_category(session=session, tenant_id=tenant_id, slug=category_id, body=body,
                                      actor=who.actor)
    await session.commit()
    await get_services(request).contexts.invalidate_tenant(tenant_id)
    return service.to_read(c)


@router.delete("/{category_id}", status_code=204)
async def delete_category(tenant_id: str, category_id: str, who: AdminDep, session: SessionDep,
                          request: Request) -> None:
    """Delete a custom category (defaults can only be disabled)."""
    who.check(tenant_id)
    await service.delete_category(session=session, tenant_id=tenant_id, slug=category_id, actor=who.actor)
    await session.commit()
    await get_services(request).contexts.invalidate_tenant(tenant_id)
