"""/dashboard: the management dashboard (a static single-page app) and its JSON API under /dashboard/api.

    GET  /dashboard                  the page (Japanese UI, English toggle)
    GET  /dashboard/static/{path}    its scripts, styles and the vendored Chart.js
         /dashboard/api/...          session, sign-in/out, tenant choice (auth.py); overview, log explorer,
                                     CSV export, categories + playground, API keys (api.py)
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from guardrail.dashboard import api, auth
from guardrail.dashboard.http import SECURITY_HEADERS, STATIC, DashboardRoute, static_file

router = APIRouter(tags=["dashboard"], include_in_schema=False, route_class=DashboardRoute)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get("/dashboard/", response_class=RedirectResponse)
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=308)


@router.get("/dashboard/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    return static_file(path, request)


router.include_router(auth.router)
router.include_router(api.router)
