"""Persistence: tables, the async database handle, migrations and project sync."""

from gateway.db.engine import Database, async_url
from gateway.db.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyPublic,
    Project,
    ProjectCreate,
    ProjectPublic,
    UsageRecord,
    UsageRecordCreate,
)
from gateway.db.projects import (
    ProjectExists,
    ProjectNotFound,
    create_project,
    get_project,
    list_projects,
    sync_projects,
)

__all__ = [
    "ApiKey",
    "ApiKeyCreate",
    "ApiKeyPublic",
    "Database",
    "Project",
    "ProjectCreate",
    "ProjectExists",
    "ProjectNotFound",
    "ProjectPublic",
    "UsageRecord",
    "UsageRecordCreate",
    "async_url",
    "create_project",
    "get_project",
    "list_projects",
    "sync_projects",
]
