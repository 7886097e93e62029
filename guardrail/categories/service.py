"""Per-tenant categories: the defaults (overridable, not deletable) and the tenant's own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail import audit
from guardrail.categories.defaults import DEFAULT_IDS
from guardrail.categories.schemas import CategoryCreate, CategoryExamples, CategoryRead, CategoryUpdate
from guardrail.db.models import Category
from guardrail.errors import Conflict, InvalidRequest, LimitExceeded, NotFound
from guardrail.tenants.service import bump_version


def to_read(c: Category) -> CategoryRead:
    return CategoryRead(id=c.slug, name=c.name, definition=c.definition, threshold=c.threshold, enabled=c.enabled,
                        default=c.is_default, examples=CategoryExamples(**(c.examples or {})),
                        created_at=c.created_at, updated_at=c.updated_at)


def _snapshot(c: Category) -> dict[str, Any]:
    return {"name": c.name, "definition": c.definition, "threshold": c.threshold, "enabled": c.enabled,
            "examples": c.examples}


async def list_categories(*, session: AsyncSession, tenant_id: str) -> list[Category]:
    q = select(Category).where(Category.tenant_id == tenant_id).order_by(Category.is_default.desc(), Category.pk)
    return list((await session.scalars(q)).all())


async def get_category(*, session: AsyncSession, tenant_id: str, slug: str) -> Category:
    c = await session.scalar(select(Category).where(Category.tenant_id == tenant_id, Category.slug == slug))
    if c is None:
        raise NotFound(f"no category {slug!r}", param="category_id", code="category_not_found")
    return c


async def create_category(*, session: AsyncSession, tenant_id: str, body: CategoryCreate, actor: str,
                          max_custom: int) -> Category:
    if body.id in DEFAULT_IDS:
        raise Conflict(f"{body.id!r} is a default category id; edit it with PATCH instead", param="id",
                       code="category_exists")
    existing = await session.scalar(
        select(Category.pk).where(Category.tenant_id == tenant_id, Category.slug == body.id))
    if existing is not None:
        raise Conflict(f"category {body.id!r} already exists", param="id", code="category_exists")
    n_custom = await session.scalar(select(func.count()).select_from(Category)
                                    .where(Category.tenant_id == tenant_id, Category.is_default.is_(False)))
    if int(n_custom or 0) >= max_custom:
        raise LimitExceeded(f"a tenant may define at most {max_custom} custom categories", param="id",
                            code="too_many_categories")
    c = Category(tenant_id=tenant_id, slug=body.id, name=body.name.strip(), definition=body.definition.strip(),
                 threshold=body.threshold, enabled=body.enabled, is_default=False,
                 examples=(body.examples or CategoryExamples()).model_dump())
    session.add(c)
    await session.flush()
    await bump_version(session=session, tenant_id=tenant_id)
    audit.record(session, tenant_id=tenant_id, actor=actor, action="category.create", target=body.id,
                 after=_snapshot(c))
    return c


async def update_category(*, session: AsyncSession, tenant_id: str, slug: str, body: CategoryUpdate, actor: str
                          ) -> Category:
    c = await get_category(session=session, tenant_id=tenant_id, slug=slug)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidRequest("nothing to change: send at least one field", code="empty_update")
    if any(v is None for v in changes.values()):
        raise InvalidRequest("fields may not be null", param=next(k for k, v in changes.items() if v is None))
    before = _snapshot(c)
    for k, v in changes.items():
        setattr(c, k, v.strip() if isinstance(v, str) else v)
    if "examples" in changes:
        c.examples = (body.examples or CategoryExamples()).model_dump()
    await bump_version(session=session, tenant_id=tenant_id)
    audit.record(session, tenant_id=tenant_id, actor=actor, action="category.update", target=slug,
                 before=before, after=_snapshot(c))
    return c


async def delete_category(*, session: AsyncSession, tenant_id: str, slug: str, actor: str) -> None:
    c = await get_category(session=session, tenant_id=tenant_id, slug=slug)
    if c.is_default:
        raise InvalidRequest(f"{slug!r} is a default category: disable it (enabled=false) instead of deleting",
                             param="category_id", code="default_category")
    before = _snapshot(c)
    await session.delete(c)
    await bump_version(session=session, tenant_id=tenant_id)
    audit.record(session, tenant_id=tenant_id, actor=actor, action="category.delete", target=slug, before=before)
