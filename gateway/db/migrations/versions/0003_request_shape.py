"""Ledger: the endpoint each request called and what it needed (for policy simulation).

``endpoint`` is the API the client called (chat, completions, embeddings, messages, responses);
``needs`` is a sorted JSON array of what the request used beyond it (tools, vision, json_schema,
stream, unscannable), NULL for none. Rows written before this revision keep NULL in both: the
simulation plans them as chat requests that needed nothing more.

Revision ID: 0003_request_shape
Revises: 0002_finance
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_request_shape"
down_revision: str | None = "0002_finance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("endpoint", sa.String(16), nullable=True))
    op.add_column("usage_records", sa.Column("needs", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("needs")
        batch.drop_column("endpoint")
