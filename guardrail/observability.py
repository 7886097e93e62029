"""Metrics, JSON logs and request ids.

Metrics live in the process-wide Prometheus registry and are served at /metrics. Logs are one
JSON object per line with the request id; judged text never goes into a log line.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REQUEST_LATENCY = Histogram("guardrail_request_seconds", "HTTP request latency", ["route", "method", "status"],
                            buckets=_BUCKETS)
MODEL_LATENCY = Histogram("guardrail_model_call_seconds", "Judge model call latency", ["op"], buckets=_BUCKETS)
CACHE_EVENTS = Counter("guardrail_verdict_cache_total", "Per-category verdict cache lookups", ["result"])
CACHE_ERRORS = Counter("guardrail_cache_errors_total", "Cache operations that failed (served uncached)")
VERDICTS = Counter("guardrail_verdicts_total", "Per-category verdicts", ["category", "flagged"])
PUBLISH_QUEUE = Gauge("guardrail_log_queue_depth", "Judgement events waiting to be written or published")
SPOOL_DEPTH = Gauge("guardrail_log_spool_depth", "Judgement events spooled on disk awaiting delivery")
LOG_DELIVERED = Counter("guardrail_log_events_delivered_total",
                        "Judgement events handed on by the publisher (sink: database or pubsub)", ["sink"])
SUBSCRIBER_EVENTS = Counter("guardrail_subscriber_events_total",
                            "Events seen by the log subscriber (stored, duplicate, poison)", ["result"])
LOG_DELIVERY_ERRORS = Counter("guardrail_log_delivery_errors_total", "Failed judgement-log delivery attempts", ["sink"])
CONFIG_FALLBACK = Counter("guardrail_config_fallback_total",
                          "Judgements served from the last known category set because the database failed")

log = logging.getLogger("guardrail")


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, remembered: the request path asks for the same few children each time."""
    return metric.labels(*values)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("guardrail")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RequestContextMiddleware:
    """Request id in a contextvar and the X-Request-ID header; latency histogram per route.

    Also enforces the body-size limit before any JSON is parsed (413 in the error envelope).
    Pure ASGI rather than BaseHTTPMiddleware: it sits on the hot path of cache-hit judgements.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:64]
        rid = incoming if incoming and incoming.isprintable() else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit():
                if int(length) > self.max_body:
                    await _too_large(send_wrapper, self.max_body)
                    return
                await self.app(scope, receive, send_wrapper)
                return
            # No declared length (chunked upload): read it here, bounded, then replay it.
            body = await _read_bounded(receive, self.max_body)
            if body is None:
                await _too_large(send_wrapper, self.max_body)
                return
            await self.app(scope, _replay(body, receive), send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            labelled(REQUEST_LATENCY, path, scope["method"], str(status)).observe(time.perf_counter() - t0)
            REQUEST_ID.reset(token)


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def inner() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return inner


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"type": "invalid_request_error",
                                 "message": f"request body exceeds {limit} bytes",
                                 "param": None, "code": "payload_too_large"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def install_ops_routes(app: Any, ready: Any) -> None:
    """/healthz (alive), /readyz (answered by `ready(request)`) and /metrics, the same on every service."""
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "a dependency the service needs is down"}})
    async def readyz(request: Request) -> JSONResponse:
        """Whether the service's dependencies are reachable (200 `degraded` when it can still serve)."""
        result: JSONResponse = await ready(request)
        return result

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
