"""Alembic environment.

``Database.migrate()`` hands in a live connection through ``config.attributes["connection"]``.
Run by the ``alembic`` command instead (e.g. to write a new revision), it connects to
``SWITCHYARD_DATABASE_URL`` (or the ``sqlalchemy.url`` option) with the async driver.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import gateway.db.models  # noqa: F401 - registers the tables on SQLModel.metadata

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table copies to ALTER
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    from gateway.db.engine import Database

    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await db.aclose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
else:
    url = os.environ.get("SWITCHYARD_DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set SWITCHYARD_DATABASE_URL to the database to migrate")
    asyncio.run(_run_standalone(url))
