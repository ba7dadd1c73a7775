"""Projects: synced from the config file, or created through the admin API.

A project named in ``projects:`` is owned by the config (``source='config'``): every sync
overwrites its budget, limits and floor, even if the admin API created it first. Projects the
API created and the config never mentions are left alone; a project removed from the config
stays in the database (its keys and ledger rows still refer to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from gateway.config import ProjectConfig
from gateway.db.engine import Database
from gateway.db.models import Project, ProjectCreate
from gateway.db.types import utcnow


class ProjectNotFound(LookupError):
    """No project has this name."""


class ProjectExists(ValueError):
    """A project with this name already exists."""


def _config_values(project: ProjectConfig) -> dict[str, Any]:
    return {
        "name": project.name,
        "budget_usd": project.budget.usd if project.budget else None,
        "budget_period": project.budget.period if project.budget else "monthly",
        "rpm": project.limits.rpm,
        "tpm": project.limits.tpm,
        "sensitivity_floor": project.sensitivity_floor,
        "alert_thresholds": project.budget.alert_thresholds if project.budget else None,
        "source": "config",
    }


async def sync_projects(db: Database, projects: Sequence[ProjectConfig]) -> list[str]:
    """Upsert the config's projects (one atomic upsert per project, safe under concurrent replicas)."""
    if not projects:
        return []
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    table = Project.__table__  # type: ignore[attr-defined]
    now = utcnow()
    async with db.session() as session:
        for project in projects:
            values = _config_values(project)
            stmt = insert(table).values(**values, created_at=now, updated_at=now)
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={k: v for k, v in values.items() if k != "name"} | {"updated_at": now},
            )
            await session.execute(stmt)
        await session.commit()
    return [p.name for p in projects]


async def create_project(db: Database, spec: ProjectCreate) -> Project:
    """Insert an API-owned project; raise :class:`ProjectExists` if the name is taken."""
    async with db.session() as session:
        if (await session.exec(select(Project).where(Project.name == spec.name))).first() is not None:
            raise ProjectExists(spec.name)
        project = Project.model_validate(spec, update={"source": "api"})
        session.add(project)
        try:
            await session.commit()
        except Exception as exc:  # a concurrent insert of the same name lost the race to us
            await session.rollback()
            if (await session.exec(select(Project).where(Project.name == spec.name))).first() is not None:
                raise ProjectExists(spec.name) from exc
            raise
        return project


async def get_project(db: Database, name: str) -> Project:
    """The project called ``name``; raise :class:`ProjectNotFound` otherwise."""
    async with db.session() as session:
        project = (await session.exec(select(Project).where(Project.name == name))).first()
    if project is None:
        raise ProjectNotFound(name)
    return project


async def list_projects(db: Database) -> list[Project]:
    """Every project, by name."""
    async with db.session() as session:
        return list((await session.exec(select(Project).order_by(Project.name))).all())
