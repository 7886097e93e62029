"""/admin/v1/tenants/{tenant_id}/api-keys: issue (shown once), list, revoke."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from guardrail.apikeys import service
from guardrail.db.models import ApiKey
from guardrail.deps import AdminDep, SessionDep, get_services
from guardrail.errors import ADMIN_ERROR_RESPONSES
from guardrail.tenants.service import get_tenant

router = APIRouter(prefix="/admin/v1/tenants/{tenant_id}/api-keys", tags=["api-keys"],
                   responses=ADMIN_ERROR_RESPONSES)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200)
    kind: Literal["judge", "admin"] = Field("judge", description="`judge` for /v1, `admin` for /admin/v1.")


def key_dict(k: ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "kind": k.kind, "prefix": k.prefix, "revoked": k.revoked_at is not None,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}


@router.post("", status_code=201)
async def issue(tenant_id: str, body: ApiKeyCreate, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Issue a key. The `key` field is shown only in this response; store it now."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    k, secret = await service.issue_key(session=session, tenant_id=tenant_id, kind=body.kind, name=body.name,
                                        actor=who.actor)
    await session.refresh(k)
    return {**key_dict(k), "key": secret}


@router.get("")
async def list_keys(tenant_id: str, who: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Keys of the tenant (prefixes only; secrets are never shown again)."""
    who.check(tenant_id)
    await get_tenant(session=session, tenant_id=tenant_id)
    return {"items": [key_dict(k) for k in await service.list_keys(session=session, tenant_id=tenant_id)]}


@router.delete("/{key_id}")
async def revoke(tenant_id: str, key_id: str, who: AdminDep, session: SessionDep, request: Request
                 ) -> dict[str, Any]:
    """Revoke a key; it stops working at once on this instance."""
    who.check(tenant_id)
    k = await service.revoke_key(session=session, tenant_id=tenant_id, key_id=key_id, actor=who.actor)
    await session.commit()
    await get_services(request).contexts.forget_key_id(k.id, tenant_id)
    return key_dict(k)

