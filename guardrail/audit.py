"""Audit log of configuration changes: who changed what, with the before and after."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail.db.models import AuditEntry


def record(session: AsyncSession, *, tenant_id: str, actor: str, action: str, target: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    """Add an audit entry to the caller's transaction (committed with the change itself)."""
    session.add(AuditEntry(tenant_id=tenant_id, actor=actor, action=action, target=target,
                           before=before, after=after))


async def list_entries(*, session: AsyncSession, tenant_id: str, limit: int, before_id: int | None
                       ) -> list[AuditEntry]:
    q = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if before_id is not None:
        q = q.where(AuditEntry.id < before_id)
    return list((await session.scalars(q.order_by(AuditEntry.id.desc()).limit(limit))).all())
