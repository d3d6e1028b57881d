"""pacer_realms and pacer_requests: Intuit's per-company limits shared by every worker.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "pacer_realms",
        sa.Column("realm_id", sa.String(64), nullable=False),
        sa.Column("paused_until", sa.Double(), nullable=False),
        sa.Column("throttles", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("realm_id", name=op.f("pk_pacer_realms")),
    )
    op.create_table(
        "pacer_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("realm_id", sa.String(64), nullable=False),
        sa.Column("batch", sa.Boolean(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("admitted_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacer_requests")),
    )
    op.create_index("ix_pacer_requests_realm_id_ended_at", "pacer_requests", ["realm_id", "ended_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pacer_requests_realm_id_ended_at", table_name="pacer_requests")
    op.drop_table("pacer_requests")
    op.drop_table("pacer_realms")
