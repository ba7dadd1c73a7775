"""Throw-away databases for tests and benchmarks (never used by the running gateway).

async with scratch_postgres() as url:      # CREATE DATABASE switchyard_test_<random> ... DROP
    db = Database(url)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get("SWITCHYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def postgres_available(dsn: str = ADMIN_DSN) -> bool:
    """True when the admin DSN accepts a connection within two seconds."""
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@asynccontextmanager
async def scratch_postgres(dsn: str = ADMIN_DSN, prefix: str = "switchyard_test") -> AsyncIterator[str]:
    """Create an empty database, yield its ``postgresql://`` URL, drop it (with its sessions) after."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = dsn.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(dsn, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
