"""Inbound webhooks of `kind: webhook` workflows.

- hooks: one per webhook workflow: its URL's random id and its secret (encrypted, like connections' tokens).
- hook_deliveries: the newest accepted deliveries of each hook (new event and run, or a duplicate delivery id).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hooks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hook_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], name=op.f("fk_hooks_workflow_id_workflows"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hooks")),
        sa.UniqueConstraint("hook_id", name=op.f("uq_hooks_hook_id")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_hooks_workflow_id")),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hook_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["hook_id"], ["hooks.id"], name=op.f("fk_hook_deliveries_hook_id_hooks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
    )
    op.create_index("ix_hook_deliveries_hook_id_id", "hook_deliveries", ["hook_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_hook_deliveries_hook_id_id", table_name="hook_deliveries")
    op.drop_table("hook_deliveries")
    op.drop_table("hooks")
