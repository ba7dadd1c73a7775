"""Finance: key roles and project scopes, ledger attribution, daily rollups (three), budget alerts, dashboard sessions.

Existing ledger rows are rolled up here, in the migration's transaction, so that from the first
start on this revision the rollups equal the rows (the ledger writer keeps them so afterwards).

Revision ID: 0002_finance
Revises: 0001_initial
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_finance"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 10).with_variant(sa.BigInteger(), "sqlite")
TS = sa.DateTime(timezone=True)
MEASURES = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd")
DAILY = ("project", "key_id", "model", "route", "deployment", "provider", "locality", "task", "sensitivity")
PROJECT_DAILY = ("project", "locality")
ATTRIBUTION = ("project", "end_user", "project_tag", "key_tags")
# rollup column -> ledger column
SOURCE = {"model": "requested_model"}


def _measure_columns() -> list[sa.Column]:
    return [
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
    ]


def _dims(names: Sequence[str]) -> list[sa.Column]:
    return [sa.Column("day", sa.String(10), primary_key=True)] + [sa.Column(n, sa.String(), primary_key=True) for n in names]


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("role", sa.String(16), nullable=False, server_default="app"))
    op.add_column("api_keys", sa.Column("projects", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
    op.add_column("api_keys", sa.Column("alert_thresholds", sa.JSON(), nullable=True))
    op.add_column("projects", sa.Column("alert_thresholds", sa.JSON(), nullable=True))
    for name in ("end_user", "key_tags", "project_tag"):
        op.add_column("usage_records", sa.Column(name, sa.String(), nullable=True))

    op.create_table("usage_daily", *_measure_columns(), *_dims(DAILY))
    op.create_index("ix_usage_daily_project_day", "usage_daily", ["project", "day"])
    op.create_table("usage_project_daily", *_measure_columns(), *_dims(PROJECT_DAILY))
    op.create_table("usage_daily_attribution", *_measure_columns(), *_dims(ATTRIBUTION))
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("subject_name", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("window_id", sa.String(16), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("budget_usd", MONEY, nullable=False),
        sa.Column("spend_usd", MONEY, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.UniqueConstraint("subject_kind", "subject_id", "window_id", "threshold", name="uq_budget_alerts_once"),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(36), nullable=True),
        sa.Column("master_fp", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
    )
    _backfill("usage_daily", DAILY)
    _backfill("usage_project_daily", PROJECT_DAILY)
    _backfill("usage_daily_attribution", ATTRIBUTION)


def _backfill(table: str, dims: Sequence[str]) -> None:
    """Roll up the rows already in the ledger (the same groups the writer builds, see gateway/ledger/rollups.py)."""
    if op.get_bind().dialect.name == "postgresql":
        day = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    else:
        day = "substr(ts, 1, 10)"
    keys = [day] + [f"COALESCE({SOURCE.get(d, d)}, '')" for d in dims]
    op.execute(
        f"INSERT INTO {table} (day, {', '.join(dims)}, {', '.join(MEASURES)}) "  # noqa: S608 - constants only
        f"SELECT {', '.join(keys)}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
        "SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), SUM(cost_usd) "
        f"FROM usage_records GROUP BY {', '.join(keys)}"
    )


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    op.drop_table("budget_alerts")
    op.drop_table("usage_daily_attribution")
    op.drop_table("usage_project_daily")
    op.drop_index("ix_usage_daily_project_day", table_name="usage_daily")
    op.drop_table("usage_daily")
    with op.batch_alter_table("usage_records") as batch:
        for name in ("project_tag", "key_tags", "end_user"):
            batch.drop_column(name)
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("alert_thresholds")
    with op.batch_alter_table("api_keys") as batch:
        for name in ("alert_thresholds", "projects", "role"):
            batch.drop_column(name)
