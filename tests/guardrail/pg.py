"""A fresh database on the real PostgreSQL (127.0.0.1:5432) per test session."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

PG_HOST = "postgresql://postgres@127.0.0.1:5432"


async def admin_sql(sql: str, db: str = "postgres") -> None:
    conn = await asyncpg.connect(f"{PG_HOST}/{db}")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str) -> tuple[str, str]:
    """Returns (database name, SQLAlchemy async URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
