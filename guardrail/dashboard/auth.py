"""/dashboard/api: session state, sign-in with a tenant admin key or the platform token, sign-out, tenant choice."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail.apikeys.service import find_key, touch
from guardrail.dashboard import session as sess
from guardrail.dashboard.http import DashboardRoute
from guardrail.dashboard.session import DashSessionDep, SessionData
from guardrail.deps import SessionDep, get_services
from guardrail.errors import AuthenticationError, NotFound, PermissionDenied
from guardrail.observability import log
from guardrail.security import hash_key, same_secret
from guardrail.tenants import service as tenants

router = APIRouter(prefix="/dashboard/api", include_in_schema=False, route_class=DashboardRoute)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential: str = Field(min_length=1, max_length=512, description="A tenant admin key or the platform token.")
    tenant_id: str | None = Field(None, max_length=32, description="Platform admin only: the tenant to show.")


class TenantChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(min_length=1, max_length=32)


async def _tenant_view(db: AsyncSession, tenant_id: str | None) -> dict[str, Any] | None:
    if tenant_id is None:
        return None
    t = await tenants.get_tenant(session=db, tenant_id=tenant_id)
    return {"id": t.id, "name": t.name}


def _signed_in(request: Request, data: SessionData, tenant: dict[str, Any] | None) -> JSONResponse:
    resp = JSONResponse(sess.session_view(data, tenant), headers={"Cache-Control": "no-store"})
    sess.set_session_cookie(request, resp, data)
    return resp


@router.get("/session")
async def session_state(request: Request, response: Response, db: SessionDep) -> dict[str, Any]:
    """Who is signed in (and the CSRF token for changes); otherwise the sign-in form's CSRF token."""
    response.headers["Cache-Control"] = "no-store"
    try:
        data = await sess.current_session(request, db)
    except AuthenticationError as exc:
        return {"signed_in": False, "reason": exc.code, "csrf": sess.prelogin_token(request, response)}
    return sess.session_view(data, await _tenant_view(db, data.tenant_id))


@router.post("/login")
async def sign_in(body: SignIn, request: Request, db: SessionDep) -> JSONResponse:
    """Sign in with a tenant admin key (`gra-…`) or the platform admin token (then a tenant is chosen)."""
    sess.check_prelogin_csrf(request)
    settings = get_services(request).settings
    credential = body.credential.strip()
    if settings.admin_token is not None and same_secret(credential, settings.admin_token.get_secret_value()):
        tenant_id = body.tenant_id
        if tenant_id is None:  # the first tenant; the header's tenant switcher changes it
            rows, _ = await tenants.list_tenants(session=db, limit=1, offset=0)
            tenant_id = rows[0].id if rows else None
        tenant = await _tenant_view(db, tenant_id)
        data = sess.new_session(request, role="platform_admin", tenant_id=tenant_id, admin_token=credential)
        log.info("dashboard sign-in", extra={"fields": {"role": "platform_admin", "tenant_id": tenant_id}})
        return _signed_in(request, data, tenant)
    key = await find_key(session=db, key_hash=hash_key(credential))
    if key is None:
        log.info("dashboard sign-in refused", extra={"fields": {"reason": "unknown_key"}})
        raise AuthenticationError("unknown or revoked key")
    if key.kind != "admin":
        raise PermissionDenied("a judge API key cannot sign in; use a tenant admin key (gra-…)",
                               code="wrong_key_kind")
    if body.tenant_id is not None and body.tenant_id != key.tenant_id:
        raise NotFound(f"no tenant {body.tenant_id!r}", param="tenant_id", code="tenant_not_found")
    await touch(session=db, key=key)
    data = sess.new_session(request, role="tenant_admin", tenant_id=key.tenant_id, key_id=key.id)
    log.info("dashboard sign-in", extra={"fields": {"role": "tenant_admin", "tenant_id": key.tenant_id,
                                                     "key_id": key.id}})
    return _signed_in(request, data, await _tenant_view(db, key.tenant_id))


@router.post("/logout")
async def sign_out(request: Request) -> JSONResponse:
    """Drop the session cookie; a live session must present its CSRF token (no forced sign-out)."""
    token = request.cookies.get(sess.SESSION_COOKIE)
    data = sess.verify(token, sess.secret_of(request)) if token else None
    if data is not None:
        header = request.headers.get(sess.CSRF_HEADER)
        if not header or not same_secret(header, data.csrf):
            raise PermissionDenied("missing or wrong CSRF token; reload the page", code="csrf_failed")
    resp = JSONResponse({"signed_in": False}, headers={"Cache-Control": "no-store"})
    sess.clear_session_cookie(request, resp)
    return resp


@router.get("/tenants")
async def list_tenants(data: DashSessionDep, db: SessionDep) -> dict[str, Any]:
    """Tenants the signed-in principal may show (the platform admin: all; a tenant admin: its own)."""
    only = None if data.role == "platform_admin" else data.tenant_id
    rows, total = await tenants.list_tenants(session=db, limit=500, offset=0, only=only)
    return {"items": [{"id": t.id, "name": t.name} for t in rows], "total": total}


@router.post("/tenant")
async def choose_tenant(body: TenantChoice, request: Request, data: DashSessionDep, db: SessionDep) -> JSONResponse:
    """The platform admin switches the tenant the dashboard shows (a new session, a new CSRF token)."""
    if data.role != "platform_admin":
        raise PermissionDenied("only the platform admin may switch tenants", code="platform_admin_only")
    t = await tenants.get_tenant(session=db, tenant_id=body.tenant_id)
    # Same expiry as before: switching tenants must not extend a session.
    new = replace(data, tenant_id=t.id, csrf=secrets.token_urlsafe(32))
    return _signed_in(request, new, {"id": t.id, "name": t.name})
