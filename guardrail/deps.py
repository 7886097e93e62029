"""Request-scoped dependencies and their aliases (`SessionDep`, `TenantDep`, `AdminDep`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from guardrail.apikeys.service import find_key, load_context, touch
from guardrail.errors import AuthenticationError, ModelUnavailable, NotFound, PermissionDenied
from guardrail.observability import CONFIG_FALLBACK, log
from guardrail.security import bearer_token, hash_key, same_secret
from guardrail.tenants.context import TenantContext

if TYPE_CHECKING:
    from guardrail.app import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services




async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_services(request).sessions() as session:
        yield session
        await session.commit()


# scope="function": the commit runs before the response is sent. With the default (request) scope
# FastAPI finishes the dependency after responding, so a client could read before the write landed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_AUTH_DOC = "Bearer <API key>"


async def tenant_context(request: Request,
                         authorization: Annotated[str | None, Header(description=_AUTH_DOC)] = None
                         ) -> TenantContext:
    """Resolve the judge API key to its tenant's context (cached; last known if the DB is down)."""
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    svc = get_services(request)
    h = hash_key(token)
    ctx = await svc.contexts.fresh(h)
    if ctx is not None:
        return ctx
    try:
        async with svc.sessions() as session:
            key = await find_key(session=session, key_hash=h)
            if key is None or key.kind != "judge":
                await svc.contexts.forget_key(h)
                raise AuthenticationError("invalid or revoked API key")
            ctx = await load_context(session=session, key=key)
            await session.commit()
    except (SQLAlchemyError, OSError) as exc:
        stale = svc.contexts.last_known(h)
        if stale is None:
            raise ModelUnavailable("the configuration database is unavailable; retry later",
                                   code="config_unavailable", retry_after=5) from exc
        CONFIG_FALLBACK.inc()
        log.warning("database unavailable; serving the last known category set",
                    extra={"fields": {"tenant_id": stale.tenant_id}})
        return stale
    await svc.contexts.put(h, ctx)
    return ctx


TenantDep = Annotated[TenantContext, Depends(tenant_context)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls the management API: the platform admin, or one tenant's admin key."""

    tenant_id: str | None  # None: platform admin (every tenant)
    actor: str

    def check(self, tenant_id: str) -> None:
        # Another tenant's objects answer 404, exactly like objects that do not exist.
        if self.tenant_id is not None and self.tenant_id != tenant_id:
            raise NotFound(f"no tenant {tenant_id!r}", param="tenant_id", code="tenant_not_found")

    def require_platform(self) -> None:
        if self.tenant_id is not None:
            raise PermissionDenied("only the platform admin may do this", code="platform_admin_only")


async def admin_principal(request: Request, session: SessionDep,
                          authorization: Annotated[str | None, Header(description="Bearer <admin token>")] = None
                          ) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError("missing admin credentials: send 'Authorization: Bearer <token>'",
                                  code="missing_api_key")
    admin = get_services(request).settings.admin_token
    if admin is not None and same_secret(token, admin.get_secret_value()):
        return Principal(None, "platform-admin")
    key = await find_key(session=session, key_hash=hash_key(token))
    if key is None:
        raise AuthenticationError("invalid or revoked admin credentials")
    if key.kind != "admin":
        raise PermissionDenied("a judge API key cannot use the management API; use a tenant admin key",
                               code="wrong_key_kind")
    await touch(session=session, key=key)
    return Principal(key.tenant_id, f"key:{key.id}")


AdminDep = Annotated[Principal, Depends(admin_principal)]
