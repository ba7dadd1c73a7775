"""Projects: synced from the config file, created through the API."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gateway.config import Budget, Limits, ProjectConfig
from gateway.db import (
    Database,
    ProjectCreate,
    ProjectExists,
    ProjectNotFound,
    create_project,
    get_project,
    list_projects,
    sync_projects,
)


def _cfg(name: str, usd: str | None = "100", period: str = "monthly", rpm: int | None = 600) -> ProjectConfig:
    budget = Budget(usd=Decimal(usd), period=period) if usd is not None else None  # type: ignore[arg-type]
    return ProjectConfig(name=name, budget=budget, limits=Limits(rpm=rpm, tpm=None), sensitivity_floor="internal")


async def test_sync_inserts_then_updates_config_projects(database: Database) -> None:
    await sync_projects(database, [_cfg("default"), _cfg("research", usd=None, rpm=None)])
    default = await get_project(database, "default")
    assert (default.budget_usd, default.budget_period, default.rpm, default.source) == (Decimal(100), "monthly", 600, "config")
    assert default.sensitivity_floor == "internal"
    assert (await get_project(database, "research")).budget_usd is None

    await sync_projects(database, [_cfg("default", usd="12.5", period="daily", rpm=None)])  # a reload
    default2 = await get_project(database, "default")
    assert (default2.budget_usd, default2.budget_period, default2.rpm) == (Decimal("12.5"), "daily", None)
    assert default2.id == default.id and default2.created_at == default.created_at
    assert [p.name for p in await list_projects(database)] == ["default", "research"]  # nothing deleted


async def test_sync_leaves_api_projects_alone_and_config_takes_over_a_name(database: Database) -> None:
    await create_project(database, ProjectCreate(name="from-api", budget_usd=Decimal(5)))
    await create_project(database, ProjectCreate(name="shared", rpm=10))
    await sync_projects(database, [_cfg("shared", usd="1")])
    api = await get_project(database, "from-api")
    assert (api.source, api.budget_usd) == ("api", Decimal(5))
    shared = await get_project(database, "shared")
    assert (shared.source, shared.budget_usd, shared.rpm) == ("config", Decimal(1), 600)


async def test_concurrent_syncs_from_many_replicas_do_not_conflict(database: Database) -> None:
    projects = [_cfg(f"p{i}") for i in range(5)]
    await asyncio.gather(*(sync_projects(database, projects) for _ in range(4)))
    assert len(await list_projects(database)) == 5


async def test_create_refuses_a_taken_name_and_get_reports_unknown(database: Database) -> None:
    await create_project(database, ProjectCreate(name="web"))
    with pytest.raises(ProjectExists):
        await create_project(database, ProjectCreate(name="web"))
    with pytest.raises(ProjectNotFound):
        await get_project(database, "nope")
