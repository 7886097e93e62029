"""API keys: issue (shown once), list, revoke, and resolve a presented key to its tenant."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail import audit
from guardrail.db.models import ApiKey, Category, Tenant, utcnow
from guardrail.errors import NotFound
from guardrail.security import KeyKind, hash_key, new_key, visible_prefix
from guardrail.tenants.context import CategoryConf, TenantContext

LAST_USED_RESOLUTION = timedelta(minutes=1)


async def issue_key(*, session: AsyncSession, tenant_id: str, kind: KeyKind, name: str, actor: str
                    ) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned here and never stored or shown again."""
    secret = new_key(kind)
    key = ApiKey(tenant_id=tenant_id, kind=kind, name=name, prefix=visible_prefix(secret), key_hash=hash_key(secret))
    session.add(key)
    await session.flush()
    audit.record(session, tenant_id=tenant_id, actor=actor, action="api_key.issue", target=key.id,
                 after={"kind": kind, "name": name, "prefix": key.prefix})
    return key, secret


async def list_keys(*, session: AsyncSession, tenant_id: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at, ApiKey.id)
    return list((await session.scalars(q)).all())


async def revoke_key(*, session: AsyncSession, tenant_id: str, key_id: str, actor: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFound(f"no API key {key_id!r}", param="key_id", code="api_key_not_found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(session, tenant_id=tenant_id, actor=actor, action="api_key.revoke", target=key_id,
                     before={"revoked": False}, after={"revoked": True})
    return key


async def find_key(*, session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The active key with this hash, or None (unknown or revoked)."""
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    return key if key is not None and key.revoked_at is None else None


async def touch(*, session: AsyncSession, key: ApiKey) -> None:
    """Record use of a key, at most once per LAST_USED_RESOLUTION (no write per request)."""
    now = utcnow()
    last = key.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite hands back naive UTC datetimes
        last = last.replace(tzinfo=now.tzinfo)
    if last is None or last < now - LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))


async def load_context(*, session: AsyncSession, key: ApiKey) -> TenantContext:
    tenant = await session.get(Tenant, key.tenant_id)
    if tenant is None:
        raise NotFound("tenant of this key is gone")
    cats = (await session.scalars(select(Category).where(Category.tenant_id == tenant.id)
                                  .order_by(Category.is_default.desc(), Category.pk))).all()
    await touch(session=session, key=key)
    return TenantContext(
        tenant_id=tenant.id, api_key_id=key.id, fail_mode=tenant.fail_mode, cache_enabled=tenant.cache_enabled,
        log_text_mode=tenant.log_text_mode, version=tenant.category_version,
        categories=tuple(CategoryConf(c.slug, c.name, c.definition, c.threshold, c.enabled) for c in cats),
    )
