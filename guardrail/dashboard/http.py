"""HTTP details of the dashboard: security headers on every response, and its static files.

The page is a static single-page app; it loads scripts, styles and the vendored chart library only
from /dashboard/static (never a CDN), and the Content-Security-Policy forbids anything else,
including inline scripts: attacker-controlled log text can never run as code even if it reached
the DOM unescaped.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute

from guardrail.errors import NotFound

STATIC = Path(__file__).resolve().parent / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".md": "text/plain; charset=utf-8", ".svg": "image/svg+xml"}


class DashboardRoute(APIRoute):
    """Adds the security headers, and `no-store` to data answers (an issued key must not be cached)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            response = await handler(request)
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return wrapped


def _index_files() -> dict[str, Path]:
    return {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}


_FILES = _index_files()


def static_file(path: str, request: Request) -> Response:
    """One file of the static folder (only files that are there: no path can walk out of it)."""
    f = _FILES.get(path)
    if f is None:
        raise NotFound("no such file", code="not_found")
    st = f.stat()
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media = _TYPES.get(f.suffix) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
    return FileResponse(f, media_type=media, headers=headers)
