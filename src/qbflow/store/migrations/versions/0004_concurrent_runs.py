"""Runs in parallel: each run's order key (its record) and lane (its company), qbflow's own writes, and why a
workflow was paused.

- runs.order_key: "realm|entity|Id" of the event's record; runs of one workflow with the same key run in the
  order of their events (an Updated run never overtakes an earlier one for the same record).
- runs.lane: the connection the run's trigger polls (the company whose limits it uses).
- own_writes: (company, entity, Id, SyncToken) that a qbflow step wrote, so the change does not start the
  workflow that made it again.
- workflows.paused_reason: set when the loop breaker (or anything else) turned a workflow off, and why.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("order_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lane", sa.String(100), nullable=True))
    op.create_index("ix_runs_order_key_workflow_id_id", "runs", ["order_key", "workflow_id", "id"])
    op.create_index("ix_runs_status_lane_id", "runs", ["status", "lane", "id"])
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))
    op.create_table(
        "own_writes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("realm_id", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("sync_token", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], name=op.f("fk_own_writes_workflow_id_workflows"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_own_writes")),
        sa.UniqueConstraint("realm_id", "entity", "record_id", "sync_token",
                            name=op.f("uq_own_writes_realm_id_entity_record_id_sync_token")),
    )
    op.create_index("ix_own_writes_written_at", "own_writes", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_own_writes_written_at", table_name="own_writes")
    op.drop_table("own_writes")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("paused_reason")
    op.drop_index("ix_runs_status_lane_id", table_name="runs")
    op.drop_index("ix_runs_order_key_workflow_id_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lane")
        batch.drop_column("order_key")
