"""App factory of the log subscriber: `create_subscriber_app(settings, pull=...)`.

Push mode (Cloud Run): Pub/Sub posts each event to /pubsub/push. Pull mode (local use): a
background task pulls `GUARDRAIL_PUBSUB_SUBSCRIPTION`. Both feed the same idempotent writer that
the embedded default uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guardrail import __version__
from guardrail.adapters.pubsub import PubSubClient
from guardrail.config import Settings
from guardrail.db.session import make_sessionmaker, migrate, open_database
from guardrail.errors import install_error_handlers
from guardrail.logs.writer import JudgementWriter
from guardrail.observability import RequestContextMiddleware, configure_logging, install_ops_routes, log
from guardrail.subscriber.auth import PushVerifier
from guardrail.subscriber.pull import pull_forever
from guardrail.subscriber.router import router as push_router
from guardrail.subscriber.store import BatchingStore, EventStore


@dataclass
class SubscriberState:
    sessions: async_sessionmaker[AsyncSession]
    batcher: BatchingStore
    verifier: PushVerifier | None
    max_attempts: int


def create_subscriber_app(settings: Settings, *, pull: bool = False) -> FastAPI:
    """The log-subscriber service; with `pull`, it also pulls `settings.pubsub_subscription`."""
    if pull and not settings.pubsub_subscription:
        raise ValueError("pull mode needs GUARDRAIL_PUBSUB_SUBSCRIPTION")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        engine, close_db = await open_database(settings)
        if settings.migrate_on_start:
            await migrate(engine)
        sessions = make_sessionmaker(engine)
        store = EventStore(JudgementWriter(sessions))
        batcher = BatchingStore(store, max_batch=settings.log_batch_size)
        batcher.start()
        verifier = None
        if settings.pubsub_push_audience:
            verifier = PushVerifier(audience=settings.pubsub_push_audience,
                                    service_account=settings.pubsub_push_service_account,
                                    certs_url=settings.pubsub_push_certs_url)
        app.state.subscriber = SubscriberState(sessions, batcher, verifier, settings.pubsub_max_delivery_attempts)
        client: PubSubClient | None = None
        puller: asyncio.Task[None] | None = None
        if pull:
            client = PubSubClient(project=settings.pubsub_project, emulator_host=settings.pubsub_emulator_host,
                                  timeout_s=settings.pubsub_timeout_s)
            puller = asyncio.create_task(pull_forever(
                client, settings.pubsub_subscription or "", store, max_messages=settings.log_batch_size,
                max_attempts=settings.pubsub_max_delivery_attempts), name="log-subscriber-pull")
        log.info("log subscriber ready", extra={"fields": {"mode": "pull" if pull else "push",
                                                           "push_auth": verifier is not None}})
        try:
            yield
        finally:
            if puller is not None:
                puller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await puller
            await batcher.stop()
            if client is not None:
                await client.aclose()
            if verifier is not None:
                await verifier.aclose()
            await close_db()

    app = FastAPI(title="Guardrail log subscriber", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(push_router)

    async def ready(request: Request) -> JSONResponse:
        state: SubscriberState = request.app.state.subscriber
        try:
            async with state.sessions() as s:
                await s.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "checks": {"database": f"error: {exc.__class__.__name__}"}},
                                status_code=503)
        return JSONResponse({"status": "ready", "checks": {"database": "ok"}})

    install_ops_routes(app, ready)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
