"""Async engine and session factory, and the Alembic upgrade run at start-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, pool_timeout=5)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class DatabaseConfigError(RuntimeError):
    """The database settings cannot work (e.g. Cloud SQL selected without its connector installed)."""


def cloudsql_target(database_url: str | None) -> tuple[str, str | None, str]:
    """(user, password, database) from a URL like postgresql://sa-name@/guardrail for the Cloud SQL connector."""
    from sqlalchemy.engine import make_url

    if not database_url:
        raise DatabaseConfigError("GUARDRAIL_CLOUDSQL_INSTANCE needs GUARDRAIL_DATABASE_URL=postgresql://<user>@/<db>")
    url = make_url(database_url)
    if not url.username or not url.database:
        raise DatabaseConfigError("GUARDRAIL_DATABASE_URL must name the user and the database for Cloud SQL")
    return url.username, url.password, url.database


async def open_database(settings: Any) -> tuple[AsyncEngine, Callable[[], Awaitable[None]]]:
    """The service's engine and a closer: Cloud SQL through its connector when configured, else by URL.

    The connector (IAM auth, private IP, TLS without managing certificates) needs the `gcp` extra.
    `refresh_strategy="lazy"` fetches certificates on demand, which suits Cloud Run's CPU
    throttling outside requests.
    """
    if not settings.cloudsql_instance:
        engine = make_engine(settings.sqlalchemy_url)
        return engine, engine.dispose
    user, password, db = cloudsql_target(settings.database_url)
    try:
        from google.cloud.sql.connector import Connector
    except ImportError as exc:
        raise DatabaseConfigError("GUARDRAIL_CLOUDSQL_INSTANCE is set but the Cloud SQL connector is not installed "
                                  "(pip install 'guardrail[gcp]')") from exc
    import asyncio

    connector = Connector(loop=asyncio.get_running_loop(), ip_type=settings.cloudsql_ip_type,
                          enable_iam_auth=settings.cloudsql_iam_auth, refresh_strategy="lazy")

    async def connect() -> Any:
        kwargs: dict[str, Any] = {"user": user, "db": db}
        if password and not settings.cloudsql_iam_auth:
            kwargs["password"] = password
        return await connector.connect_async(settings.cloudsql_instance, "asyncpg", **kwargs)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect, pool_size=10, max_overflow=10,
                                 pool_pre_ping=True, pool_timeout=5)

    async def close() -> None:
        await engine.dispose()
        await connector.close_async()

    return engine, close


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Alembic upgrade over an already-built engine (so Cloud SQL connections work for migrations too)."""
    from alembic import command

    def run(conn: Any) -> None:
        cfg = alembic_config(engine.url.render_as_string(hide_password=True))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` to `revision` (blocking; call before serving)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
