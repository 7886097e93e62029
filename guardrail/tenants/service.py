"""Tenants: creation from the default categories, settings, the bootstrap tenant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail import audit
from guardrail.categories.defaults import DEFAULT_CATEGORIES
from guardrail.db.models import ApiKey, Category, Tenant
from guardrail.errors import NotFound
from guardrail.security import hash_key, visible_prefix

BOOTSTRAP_TENANT_NAME = "default"


def tenant_dict(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "fail_mode": t.fail_mode, "log_text_mode": t.log_text_mode,
            "cache_enabled": t.cache_enabled, "category_version": t.category_version,
            "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat()}


async def create_tenant(*, session: AsyncSession, name: str, actor: str, fail_mode: str = "closed",
                        log_text_mode: str = "full", cache_enabled: bool = True) -> Tenant:
    """A new tenant starting from the eight default categories."""
    tenant = Tenant(name=name, fail_mode=fail_mode, log_text_mode=log_text_mode, cache_enabled=cache_enabled)
    session.add(tenant)
    await session.flush()
    for d in DEFAULT_CATEGORIES:
        session.add(Category(tenant_id=tenant.id, slug=d.id, name=d.name, definition=d.definition,
                             threshold=d.threshold, enabled=d.enabled, is_default=True, examples={}))
    audit.record(session, tenant_id=tenant.id, actor=actor, action="tenant.create", target=tenant.id,
                 after={"name": name})
    return tenant


async def get_tenant(*, session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}", param="tenant_id", code="tenant_not_found")
    return tenant


async def list_tenants(*, session: AsyncSession, limit: int, offset: int, only: str | None = None
                       ) -> tuple[list[Tenant], int]:
    q = select(Tenant)
    cq = select(func.count()).select_from(Tenant)
    if only is not None:
        q, cq = q.where(Tenant.id == only), cq.where(Tenant.id == only)
    rows = (await session.scalars(q.order_by(Tenant.created_at, Tenant.id).limit(limit).offset(offset))).all()
    return list(rows), int(await session.scalar(cq) or 0)


async def update_tenant(*, session: AsyncSession, tenant_id: str, actor: str, changes: dict[str, Any]) -> Tenant:
    tenant = await get_tenant(session=session, tenant_id=tenant_id)
    before = {k: getattr(tenant, k) for k in changes}
    for k, v in changes.items():
        setattr(tenant, k, v)
    tenant.category_version += 1  # settings such as fail_mode shape verdicts too
    audit.record(session, tenant_id=tenant_id, actor=actor, action="tenant.update", target=tenant_id,
                 before=before, after=changes)
    return tenant


async def bump_version(*, session: AsyncSession, tenant_id: str) -> None:
    await session.execute(update(Tenant).where(Tenant.id == tenant_id)
                          .values(category_version=Tenant.category_version + 1))


async def ensure_bootstrap(*, session: AsyncSession, api_key: str) -> tuple[Tenant, bool]:
    """The tenant that accepts `api_key`, creating tenant and key when absent.

    Returns:
        (tenant, created) — created is True when a new tenant was made.
    """
    h = hash_key(api_key)
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == h))
    if key is not None:
        if key.revoked_at is not None:
            key.revoked_at = None
        return await get_tenant(session=session, tenant_id=key.tenant_id), False
    tenant = await session.scalar(select(Tenant).where(Tenant.name == BOOTSTRAP_TENANT_NAME).limit(1))
    created = tenant is None
    if tenant is None:
        tenant = await create_tenant(session=session, name=BOOTSTRAP_TENANT_NAME, actor="bootstrap")
    session.add(ApiKey(tenant_id=tenant.id, kind="judge", name="bootstrap", prefix=visible_prefix(api_key),
                       key_hash=h))
    return tenant, created
