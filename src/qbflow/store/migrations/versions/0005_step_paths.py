"""Workflows beyond a straight line: ledger paths for nested steps, and runs that wait.

- step_results.step_id holds a step execution's ledger path ("each_line[3].create_customer"), up to 500
  characters (was 100: a step id).
- runs.status may be "waiting": a `wait` step; due again at next_attempt_at, like waiting_retry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_OLD = "status IN ('queued', 'running', 'succeeded', 'failed', 'waiting_retry', 'cancelled')"
_NEW = "status IN ('queued', 'running', 'succeeded', 'failed', 'waiting_retry', 'cancelled', 'waiting')"


def upgrade() -> None:
    with op.batch_alter_table("step_results") as batch:
        batch.alter_column("step_id", existing_type=sa.String(100), type_=sa.String(500), existing_nullable=False)
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint("status", _NEW)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint("status", _OLD)
    with op.batch_alter_table("step_results") as batch:
        batch.alter_column("step_id", existing_type=sa.String(500), type_=sa.String(100), existing_nullable=False)
