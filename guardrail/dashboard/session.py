"""Dashboard sign-in state: HMAC-signed session cookies, their re-validation, and CSRF checks.

A session is a cookie holding `base64url(json) . base64url(HMAC-SHA256)` with an absolute expiry,
the signed-in principal (a tenant admin key's id, or the platform admin with a chosen tenant) and a
random CSRF token. The key itself is never in the cookie. Every request re-validates the principal:
a revoked admin key or a changed platform token ends its sessions at once, not at expiry.

Cookies are HttpOnly, SameSite=Strict, Path=/dashboard, and Secure when configured (default: in
production). State-changing requests must echo the CSRF token in `X-CSRF-Token`; before sign-in a
separate random token, double-submitted against its own cookie, protects the sign-in form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from guardrail.db.models import ApiKey
from guardrail.deps import SessionDep, get_services
from guardrail.errors import AuthenticationError, InvalidRequest, PermissionDenied
from guardrail.security import same_secret

SESSION_COOKIE = "gr_dash_session"
PRELOGIN_COOKIE = "gr_dash_prelogin"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/dashboard"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class SessionData:
    role: str  # "tenant_admin" | "platform_admin"
    tenant_id: str | None  # the tenant the dashboard shows (chosen by the platform admin)
    key_id: str | None  # the tenant admin key that signed in
    admin_fp: str | None  # fingerprint of the platform token that signed in
    csrf: str
    iat: int
    exp: int

    @property
    def actor(self) -> str:
        who = f"key:{self.key_id}" if self.key_id else "platform-admin"
        return f"{who}@dashboard"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def secret_of(request: Request) -> bytes:
    """The signing key: configured, or drawn once per app (sessions then end when the process does)."""
    configured = get_services(request).settings.dashboard_session_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    state = request.app.state
    if getattr(state, "dashboard_secret", None) is None:
        state.dashboard_secret = secrets.token_bytes(32)
    key: bytes = state.dashboard_secret
    return key


def sign(data: SessionData, secret: bytes) -> str:
    body = _b64(json.dumps(asdict(data), separators=(",", ":")).encode())
    mac = hmac.new(secret, b"gr-dash-v1." + body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(token: str, secret: bytes, now: float | None = None) -> SessionData | None:
    """The session in a cookie value, or None when forged, malformed or expired."""
    body, _, mac = token.partition(".")
    if not body or not mac:
        return None
    want = hmac.new(secret, b"gr-dash-v1." + body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(want, _unb64(mac)):
            return None
        data = SessionData(**json.loads(_unb64(body)))
    except (ValueError, TypeError):
        return None
    return data if data.exp > (time.time() if now is None else now) else None


def admin_fingerprint(secret: bytes, admin_token: str) -> str:
    return hmac.new(secret, b"admin-token." + admin_token.encode(), hashlib.sha256).hexdigest()[:32]


def new_session(request: Request, *, role: str, tenant_id: str | None, key_id: str | None = None,
                admin_token: str | None = None) -> SessionData:
    now = int(time.time())
    ttl = get_services(request).settings.dashboard_session_ttl_s
    fp = admin_fingerprint(secret_of(request), admin_token) if admin_token is not None else None
    return SessionData(role=role, tenant_id=tenant_id, key_id=key_id, admin_fp=fp, csrf=secrets.token_urlsafe(32),
                       iat=now, exp=now + ttl)


def _secure(request: Request) -> bool:
    s = get_services(request).settings
    return s.dashboard_cookie_secure if s.dashboard_cookie_secure is not None else s.environment == "production"


def set_session_cookie(request: Request, response: Response, data: SessionData) -> None:
    response.set_cookie(SESSION_COOKIE, sign(data, secret_of(request)), max_age=max(0, data.exp - int(time.time())),
                        path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(PRELOGIN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=_secure(request))


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=_secure(request))


def prelogin_token(request: Request, response: Response) -> str:
    """The sign-in form's CSRF token (double-submit: the same value in an HttpOnly cookie)."""
    token = request.cookies.get(PRELOGIN_COOKIE)
    if not token or len(token) < 32:
        token = secrets.token_urlsafe(32)
        response.set_cookie(PRELOGIN_COOKIE, token, max_age=3600, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=_secure(request))
    return token


def check_prelogin_csrf(request: Request) -> None:
    cookie, header = request.cookies.get(PRELOGIN_COOKIE), request.headers.get(CSRF_HEADER)
    if not cookie or not header or not same_secret(cookie, header):
        raise PermissionDenied("missing or wrong CSRF token; reload the page", code="csrf_failed")


async def current_session(request: Request, db: SessionDep) -> SessionData:
    """The signed-in session, re-validated against the current credentials; 401 otherwise."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise AuthenticationError("not signed in", code="not_signed_in")
    secret = secret_of(request)
    data = verify(token, secret)
    if data is None:
        raise AuthenticationError("the session has expired or is invalid; sign in again", code="session_expired")
    if data.role == "tenant_admin":
        key = await db.get(ApiKey, data.key_id) if data.key_id else None
        if key is None or key.revoked_at is not None or key.kind != "admin" or key.tenant_id != data.tenant_id:
            raise AuthenticationError("the key of this session was revoked; sign in again", code="session_revoked")
    else:
        admin = get_services(request).settings.admin_token
        if admin is None or data.admin_fp is None or not same_secret(
                data.admin_fp, admin_fingerprint(secret, admin.get_secret_value())):
            raise AuthenticationError("the platform admin token changed; sign in again", code="session_revoked")
    if request.method not in _SAFE_METHODS:
        header = request.headers.get(CSRF_HEADER)
        if not header or not same_secret(header, data.csrf):
            raise PermissionDenied("missing or wrong CSRF token; reload the page", code="csrf_failed")
    return data


DashSessionDep = Annotated[SessionData, Depends(current_session)]


async def tenant_session(data: DashSessionDep) -> SessionData:
    """A session with a tenant to show (a platform admin chooses one first)."""
    if data.tenant_id is None:
        raise InvalidRequest("choose a tenant first", param="tenant_id", code="tenant_required")
    return data


TenantSessionDep = Annotated[SessionData, Depends(tenant_session)]


def session_view(data: SessionData, tenant: dict[str, Any] | None) -> dict[str, Any]:
    return {"signed_in": True, "role": data.role, "tenant": tenant, "csrf": data.csrf, "expires_at": data.exp}
