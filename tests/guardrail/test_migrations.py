"""The same Alembic migrations upgrade and downgrade on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from guardrail.db.models import Base
from guardrail.db.session import downgrade, upgrade
from tests.guardrail.pg import create_database, drop_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away database on the real PostgreSQL."""
    name, url = create_database("gr_mig")
    yield url
    drop_database(name)


def _tables(url: str) -> set[str]:
    async def go() -> set[str]:
        eng = create_async_engine(url)
        try:
            async with eng.connect() as c:
                names = await c.run_sync(lambda sc: sa.inspect(sc).get_table_names())
        finally:
            await eng.dispose()
        return set(names) - {"alembic_version"}

    return asyncio.run(go())


def _roundtrip(url: str) -> None:
    upgrade(url)
    assert _tables(url) == set(Base.metadata.tables)
    downgrade(url, "base")
    assert _tables(url) == set()
    upgrade(url)
    assert _tables(url) == set(Base.metadata.tables)


def test_sqlite_upgrade_downgrade(tmp_path: Path) -> None:
    _roundtrip(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


def test_postgres_upgrade_downgrade(pg_url: str) -> None:
    _roundtrip(pg_url)
