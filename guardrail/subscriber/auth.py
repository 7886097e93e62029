"""Verification of Pub/Sub push requests: the OIDC token Pub/Sub signs for the push service account.

Pub/Sub sends `Authorization: Bearer <Google-signed ID token>` whose audience is the one set on
the push subscription and whose `email` is the push service account. The signing certificates
are fetched (async) from `certs_url` and cached; an unknown key id triggers one refresh, which is
how Google's key rotation is followed.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from google.auth import exceptions as gexc
from google.auth import jwt as gjwt

from guardrail.errors import AuthenticationError, PermissionDenied

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


class PushVerifier:
    def __init__(self, *, audience: str, service_account: str | None, certs_url: str = GOOGLE_CERTS_URL,
                 certs_ttl_s: float = 3600.0) -> None:
        self.audience = audience
        self.service_account = service_account
        self._url = certs_url
        self._ttl = certs_ttl_s
        self._certs: dict[str, str] = {}
        self._fetched = 0.0
        self._http = httpx.AsyncClient(timeout=5.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _load_certs(self, *, force: bool) -> dict[str, str]:
        if force or not self._certs or time.monotonic() - self._fetched > self._ttl:
            try:
                r = await self._http.get(self._url)
                r.raise_for_status()
                self._certs = dict(r.json())
            except (httpx.HTTPError, ValueError) as exc:
                if not self._certs:
                    raise AuthenticationError("cannot fetch the push token signing certificates; retry later",
                                              code="certs_unavailable") from exc
            self._fetched = time.monotonic()
        return self._certs

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims when it is a valid push token for this service.

        Raises:
            AuthenticationError: no bearer token, or a token that is expired, forged or for another audience.
            PermissionDenied: a valid Google token of another identity than the push service account.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("push request without a bearer token", code="missing_token")
        try:
            kid = gjwt.decode_header(token).get("kid")
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise AuthenticationError("push token is not a JWT", code="invalid_token") from exc
        certs = await self._load_certs(force=False)
        if kid not in certs:
            certs = await self._load_certs(force=True)
        try:
            claims: dict[str, Any] = gjwt.decode(token, certs=certs, audience=self.audience, clock_skew_in_seconds=10)
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise AuthenticationError(f"push token rejected: {str(exc)[:120]}", code="invalid_token") from exc
        if claims.get("iss") not in _ISSUERS:
            raise AuthenticationError("push token was not issued by Google", code="invalid_token")
        if self.service_account and (claims.get("email") != self.service_account
                                     or not claims.get("email_verified")):
            raise PermissionDenied("push token belongs to another service account", code="wrong_push_identity")
        return claims
